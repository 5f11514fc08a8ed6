"""``genbench.summary``: the report's table as a frame for a notebook.

    table = genbench.summary(df)               # the report's wide table; bold in Jupyter
    numbers = genbench.summary(df, long=True)  # its numbers: mean, std, n_seeds, stderr

It takes the tidy frame of :func:`genbench.interfaces.api.load_results` and formats it with the
report's own table code. pandas loads on first use, as in :mod:`genbench.interfaces.api`.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

from genbench.errors import GenbenchError

if TYPE_CHECKING:
    import pandas as pd

# the long summary's group: a row per (configuration, metric, observation model, feature space)
GROUP = ("dataset", "variant", "preset", "model", "label", "config_id", "metric", "observation",
         "feature_space")


def summary(df: pd.DataFrame, *, long: bool = False, bookkeeping: bool = False) -> pd.DataFrame:
    """The report's table as a frame: one row per (dataset, variant, preset, model row), one
    column per metric, each cell formatted as the report does ("mean ± sd (s.e. x)", bits/dim
    beside a log-likelihood, ⚠ for an AIS that did not converge), with the report's bold
    (a confidence set for the best) in its HTML view (a DataFrame subclass whose
    ``_repr_html_`` marks them; ``.long`` holds the numbers).

    ``long=True`` gives the numbers instead, one row per dataset, variant, preset, model,
    configuration (``label``, ``config_id``) and metric: the ``mean`` over seeds, their
    ``std`` (ddof=1; NaN for one seed), ``n_seeds``, and ``stderr`` (the estimator's own
    standard error, averaged over seeds), with ``higher_is_better`` and, for
    log-likelihoods, ``nll`` and ``bits_per_dim``.

    Only finished runs count, as in the report, and an older run of a configuration and seed
    that was run again is left out (a warning says so). Sample-quality numbers are kept
    apart by ``feature_space`` and likelihoods by ``observation``. Bookkeeping keys (AIS
    acceptance rates, schedule lengths, BDMC's bounds, timings: the report's diagnostics
    sections, "Other recorded values" and "Cost") are left out unless ``bookkeeping=True``.
    """

    missing = [c for c in ("status", "metric", "value") if c not in df]
    if missing:
        raise GenbenchError(f"summary() needs the frame genbench.load_results() returns "
                            f"(missing columns: {', '.join(missing)})")
    fin = df[(df["status"] == "finished") & df["metric"].notna() & df["value"].notna()]
    if "superseded" in fin and fin["superseded"].astype(bool).any():
        # an older run of a configuration and seed that was run again: never a second seed
        old = fin.loc[fin["superseded"].astype(bool), "run_dir"].nunique()
        warnings.warn(f"{old} older run(s) of a configuration and seed that was run again are left "
                      "out (the newest counts; see the `superseded` column)", stacklevel=2)
        fin = fin[~fin["superseded"].astype(bool)]
    fin = fin.copy()
    for col in ("label", "config_id"):  # a frame from an older genbench: one configuration
        if col not in fin:
            fin[col] = fin["model"] if col == "label" else ""
    shown = fin if bookkeeping else fin[fin["metric"].isin(_reported_keys())]
    if long:
        return _long_summary(shown.copy())
    na = df[(df["status"] == "finished") & df["metric"].notna() & df["value"].isna()]
    if "superseded" in na:
        na = na[~na["superseded"].astype(bool)]
    return _wide_summary(fin, na, sorted(set(shown["metric"])), _long_summary(shown.copy()))


def _reported_keys() -> set[str]:
    """The metrics of the report's main tables (not its diagnostics, "Other recorded values"
    or "Cost")."""
    from genbench.report import glossary

    return {k for section in glossary.SECTIONS if not section.diagnostic for k in section.keys}


def _long_summary(fin: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    cols = [*GROUP, "mean", "std", "n_seeds", "stderr", "higher_is_better", "nll", "bits_per_dim"]
    if fin.empty:
        return pd.DataFrame(columns=cols)
    for col in ("observation", "feature_space"):
        fin[col] = fin[col].fillna("")
    grouped = fin.groupby(list(GROUP), sort=True, dropna=False)
    out = grouped.agg(mean=("value", "mean"), std=("value", lambda v: v.std(ddof=1)),
                      n_seeds=("value", "count"), stderr=("stderr", "mean"),
                      higher_is_better=("higher_is_better", "first"),
                      nll=("nll", "mean"), bits_per_dim=("bits_per_dim", "mean")).reset_index()
    for col in ("observation", "feature_space"):
        out[col] = out[col].replace("", None)
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out[cols]


def _wide_summary(fin: pd.DataFrame, na: pd.DataFrame, shown: list[str], long: pd.DataFrame
                  ) -> pd.DataFrame:
    """The report's comparison table per (dataset, variant, preset), stacked: the same cells,
    made by the report's own :func:`genbench.report.tables.comparison_table` from every
    recorded key of ``fin`` (flags, bits/dim) and ``na``'s reasons; columns ``shown``."""
    import pandas as pd

    from genbench.report import glossary, tables

    frame_class = _summary_frame_class()
    index = ["dataset", "variant", "preset", "model"]
    if fin.empty:
        return frame_class(pd.DataFrame(columns=[*index, "seeds"]).set_index(index))
    # one row per run, as the report reads the store: value, <key>_stderr, <key>_bpd columns
    runs = fin.pivot_table(index=["run_dir", "dataset", "variant", "preset", "label"],
                           columns="metric", values="value", aggfunc="first")
    ses = fin.dropna(subset=["stderr"]).pivot_table(
        index=["run_dir", "dataset", "variant", "preset", "label"], columns="metric",
        values="stderr", aggfunc="first").add_suffix("_stderr")
    runs = runs.join(ses)
    if not na.empty and "na_reason" in na:
        reasons = na.assign(label=na["label"] if "label" in na else na["model"]).pivot_table(
            index=["run_dir", "dataset", "variant", "preset", "label"], columns="metric",
            values="na_reason", aggfunc="first").add_prefix("na:")
        runs = runs.join(reasons, how="outer")
    runs = runs.reset_index().rename(columns={"label": "model"})
    runs["status"] = "finished"
    runs["conditional"] = runs["model"].map(_conditional_labels(fin))
    rows, bold = [], set()
    known = [k for s in glossary.SECTIONS for k in s.keys]
    keys = [k for k in known if k in shown] + [k for k in shown if k not in known]
    for (dataset, variant, preset), group in runs.groupby(["dataset", "variant", "preset"], sort=True):
        table = tables.comparison_table(group, [k for k in keys if k in group])
        if table is None:
            continue
        names = [_key_of(c) for c in table.columns[2:]]
        for row in table.rows:
            if row[1].text == "—":  # the floor row of a sample-quality table
                continue
            record = {"dataset": dataset, "variant": variant, "preset": preset,
                      "model": row[0].text, "seeds": int(row[1].text)}
            for key, cell in zip(names, row[2:], strict=True):
                record[key] = cell.text
                if cell.best:
                    bold.add(((dataset, variant, preset, row[0].text), key))
            rows.append(record)
    frame = frame_class(pd.DataFrame(rows).set_index(index))
    frame.attrs["bold"] = sorted(bold)
    frame.attrs["long"] = long
    return frame


def _conditional_labels(fin: pd.DataFrame) -> dict[str, bool]:
    """Row label -> conditional model (its likelihood is log p(x|y): never ranked with log p(x))."""
    from genbench.registry import MODELS

    return {lab: bool(getattr(getattr(MODELS.get(m), "cls", None), "conditional", False))
            for lab, m in zip(fin["label"], fin["model"], strict=True)}


def _key_of(header: str) -> str:
    """A table header ("IWAE ↑") back to its result key (test_iwae)."""
    from genbench.report import glossary

    plain = header.removesuffix(" ↑").removesuffix(" ↓")
    for section in glossary.SECTIONS:
        for key in section.keys:
            if glossary.label(key) == plain:
                return key
    return plain


@functools.lru_cache(maxsize=1)
def _summary_frame_class() -> type:  # pandas loads on first use: the class is made then
    import pandas as pd

    class SummaryFrame(pd.DataFrame):
        """The wide summary: a DataFrame of formatted cells whose HTML view (Jupyter) marks
        the report's bold cells; ``.long`` is the numbers (``summary(df, long=True)``)."""

        @property
        def _constructor(self):
            return SummaryFrame

        @property
        def long(self) -> pd.DataFrame:
            return self.attrs.get("long", pd.DataFrame())

        def _repr_html_(self) -> str:
            bold = {(tuple(row), key) for row, key in self.attrs.get("bold", [])}

            def mark(col: pd.Series) -> list[str]:
                return ["font-weight:bold;background:#e8f5e9" if (tuple(i), col.name) in bold else ""
                        for i in col.index]

            styled = self.style.apply(mark, axis=0).set_caption(
                "Bold: the models that could be the best (a 95% confidence set, as in the report).")
            return styled.to_html()

    return SummaryFrame
