"""User-facing errors: the CLI prints their message as one line, never a traceback."""


class GenbenchError(Exception):
    """A problem the user can fix; the message says what to do."""


class UnknownName(GenbenchError):
    """A model, dataset, metric, preset or --set key that is not registered."""


class ContractError(GenbenchError, TypeError):
    """A model plugin breaks the model contract (e.g. a preset sets an evaluation budget):
    a TypeError for the plugin's author, one line for the command line."""


class DataMissing(GenbenchError):
    """A dataset's files are absent or corrupt; the message says where we looked."""


class Diverged(Exception):
    """Raised by a model (or the runner) when training has blown up; the run is marked failed."""


class GenbenchWarning(UserWarning):
    """Something genbench repaired or worked around (a corrupt cache rebuilt, a run skipped);
    the CLI prints the message as one ``warning:`` line."""


# what the user can do about an OS error, by errno name (the rest: the OS's own words)
_OS_ADVICE = {
    "ENOSPC": "the disk is full; free some space (or pass another folder) and run the command "
              "again: what was written before is intact",
    "EDQUOT": "the disk quota is used up; free some space and run the command again",
    "ENAMETOOLONG": "a file or folder name is too long; pass a shorter path",
    "ENOTDIR": "a file stands where a folder is needed; pass a folder path",
    "EISDIR": "a folder stands where a file is needed; pass a file path",
    "EACCES": "permission denied; pass a folder you can write, or fix its permissions",
    "EPERM": "operation not permitted; pass a folder you can write",
    "EROFS": "the file system is read-only; pass a writable folder",
    "ENOENT": "no such file or folder; check the path",
    "EMFILE": "too many open files; raise `ulimit -n` and run the command again",
    "ENOMEM": "out of memory; use a smaller preset or fewer images",
}


def os_error_line(err: OSError) -> str:
    """One line for any OS error of any command: what failed, on which path, what to do.

    The CLI's single error handler uses it, so a full disk, a too-long name, a file where a
    folder should be or a permission problem reads the same in every command.
    """
    import errno as errno_names

    name = errno_names.errorcode.get(err.errno or -1, "")
    what = err.strerror or str(err) or type(err).__name__
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    where = f" ({paths[:300]})" if paths else ""
    advice = _OS_ADVICE.get(name)
    return f"{what}{where}" + (f": {advice}" if advice else "")
