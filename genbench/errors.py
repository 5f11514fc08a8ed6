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
