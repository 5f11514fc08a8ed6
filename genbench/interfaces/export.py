"""``genbench export``: the tidy results frame as CSV or Parquet, for spreadsheets and
other languages (R, Julia, DuckDB). One row per run and metric, the columns of
:func:`genbench.interfaces.api.load_results`."""

from __future__ import annotations

import warnings
from pathlib import Path

from genbench.errors import GenbenchError, GenbenchWarning

FORMATS = ("csv", "parquet")


def export_results(results: str | Path = "results", format: str = "csv",
                   out: str | Path | None = None) -> Path:
    """Write the tidy frame of ``results`` to ``out`` (default: ``results/results.<format>``)."""
    from genbench.interfaces.api import load_results

    if format not in FORMATS:
        raise GenbenchError(f"unknown --format {format!r}; use {' or '.join(FORMATS)}")
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise GenbenchError('parquet needs pyarrow: pip install "genbench[parquet]" '
                                "(or use --format csv)") from None
    if out is not None:
        from genbench.store import check_output_file

        check_output_file(Path(out))
    _not_a_run(Path(results))
    df = load_results(results)
    if df.empty:
        raise GenbenchError(f"no runs under {results}; nothing to export")
    if df["superseded"].any():  # kept, marked: a reader filters them as summary() does
        old = df.loc[df["superseded"], "run_dir"].nunique()
        warnings.warn(GenbenchWarning(
            f"{old} older run(s) of a configuration and seed that was run again are exported with "
            "superseded=True; the newest run of each counts (drop the others before averaging)"),
            stacklevel=2)
    path = Path(out) if out is not None else Path(results) / f"results.{format}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if format == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        tmp.replace(path)  # atomic: a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _not_a_run(results: Path) -> None:
    """A run folder (a trained one or outside samples) given for the results folder: one line
    naming the folder to export instead."""
    from genbench.store import CONFIG, read_config, results_root

    if (results / CONFIG).is_file():
        config = read_config(results)
        kind = "outside samples scored by `genbench score`" if config.get("external") else "one run"
        root = results_root(results, config)
        where = f"`genbench export {root}`" if root is not None else "`genbench export RESULTS`"
        raise GenbenchError(f"{results} is a run folder ({kind}), not a results folder; export "
                            f"the results folder that holds it: {where}")
