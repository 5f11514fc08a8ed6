"""Results -> comparison tables: mean +- std over seeds, best marked, n/a and failures shown.

Pure pandas on the frame :func:`genbench.store.load_results` returns (plus two columns
read from config.json). A table never mixes presets, data variants or feature spaces.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from genbench.registry import MODELS
from genbench.report import glossary, published
from genbench.report.document import Cell, Table
from genbench.store import CONFIG, load_results, read_json

META = {"dataset", "model", "preset", "variant", "seed", "run_dir", "status", "reason",
        "feature_space", "latent_dim", "conditional"}
# run bookkeeping the runner records beside the metrics: shown as cost, never ranked
COST = ("epochs", "train_seconds", "eval_seconds")
MODEL_ORDER = ("vae", "ae", "gan", "dcgan", "vaegan", "cvae", "m2")
GroupKey = tuple[str, str, str]  # (dataset, variant, preset)


def load(results: Path) -> pd.DataFrame:
    """The store's results frame plus ``latent_dim`` and ``conditional`` from each run's config."""
    df = load_results(results)
    if df.empty:
        return df
    configs = [read_json(Path(d) / CONFIG) for d in df["run_dir"]]
    df["latent_dim"] = [c.get("model_config", {}).get("latent_dim") for c in configs]
    df["command"] = [c.get("command") for c in configs]
    df["conditional"] = [bool(getattr(MODELS[m].cls, "conditional", False)) if m in MODELS else False
                         for m in df["model"]]
    if "status" not in df:
        df["status"] = None
    if "reason" not in df:
        df["reason"] = None
    missing = df["status"].isna()  # no metrics.json yet (or a foreign one): never averaged in
    df.loc[missing, "reason"] = "metrics.json has no status (not written yet?)"
    df["status"] = df["status"].fillna("unknown")
    for col in ("variant", "preset"):
        df[col] = df[col].fillna("?")
    if "eval_preset" in df:  # `genbench eval --preset P` on a run trained with another preset
        other = df["eval_preset"].notna() & (df["eval_preset"] != df["preset"])
        df.loc[other, "preset"] = df["preset"] + " evaluated " + df["eval_preset"].astype(str)
    return df


def groups(df: pd.DataFrame) -> Iterator[tuple[GroupKey, pd.DataFrame]]:
    """(dataset, variant, preset) groups: the unit of comparison."""
    if df.empty:
        return
    for key, sub in df.groupby(["dataset", "variant", "preset"], sort=True):
        yield (str(key[0]), str(key[1]), str(key[2])), sub


def finished(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "finished"]


def model_order(models: list[str] | set[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(set(models) - set(known))


def is_conditional(runs: pd.DataFrame, model: str) -> bool:
    return "conditional" in runs and bool(runs.loc[runs["model"] == model, "conditional"].astype(bool).any())


def model_label(name: str, df: pd.DataFrame) -> str:
    return f"{name} †" if is_conditional(df, name) else name


def metric_keys(df: pd.DataFrame) -> list[str]:
    """Result keys with at least one number or n/a, known sections first, then plugin extras."""
    present = {c for c in df.columns if c not in META and c not in COST
               and not c.startswith(("_", "floor_", "na:")) and not c.endswith("_stderr")
               and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()}
    known = [k for s in glossary.SECTIONS for k in s.keys]
    return [k for k in known if k in present] + sorted(present - set(known))


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float  # over seeds (ddof=1); nan for one seed
    n: int
    stderr: float  # the estimator's own standard error, mean over seeds; nan if none


def stats(runs: pd.DataFrame, key: str) -> Stats | None:
    if key not in runs:
        return None
    vals = pd.to_numeric(runs[key], errors="coerce").dropna()
    if vals.empty:
        return None
    se = runs.get(f"{key}_stderr")
    se_mean = float(pd.to_numeric(se, errors="coerce").dropna().mean()) if se is not None else math.nan
    std = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
    return Stats(float(vals.mean()), std, len(vals), se_mean)


def na_reason(runs: pd.DataFrame, key: str) -> str | None:
    col = f"na:{key}"
    if col not in runs:
        return None
    reasons = sorted({str(r) for r in runs[col].dropna()})
    return "; ".join(reasons) or None


def _decimals(spread: float) -> int:
    """Enough decimals to show two significant digits of the spread."""
    if not spread or not math.isfinite(spread):
        return 2
    return int(min(6, max(0, 1 - math.floor(math.log10(abs(spread))))))


def fmt_number(x: float, spread: float = math.nan) -> str:
    if not math.isfinite(x):
        return str(x)
    if not math.isfinite(spread) and float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))  # counts: epochs, active units, classes covered
    if not math.isfinite(spread) and abs(x) < 1:
        return f"{x:.3g}"
    return f"{x:.{_decimals(spread if math.isfinite(spread) else abs(x) / 100)}f}"


def fmt_stats(s: Stats, seeds: int) -> str:
    spread = s.std if math.isfinite(s.std) else s.stderr
    text = fmt_number(s.mean, spread)
    if math.isfinite(s.std):
        text += f" ± {fmt_number(s.std, s.std)}"
    if math.isfinite(s.stderr):
        text += f" (s.e. {fmt_number(s.stderr, s.stderr)})"
    if s.n < seeds:
        text += f" [n={s.n}]"
    return text


def best_models(means: dict[str, float], key: str) -> set[str]:
    """Models holding the best mean for ``key`` (ties all marked); none for a non-ranking key."""
    higher = glossary.direction(key)
    if higher is None or len(means) < 2 or len(set(means.values())) == 1:
        return set()  # alone in a column, or all tied: nothing to point at
    target = max(means.values()) if higher else min(means.values())
    return {m for m, v in means.items() if v == target}


LIKELIHOOD_KEYS = frozenset({"test_elbo", "test_iwae", "test_ais", "parzen", "test_recon_term"})


def comparison_table(runs: pd.DataFrame, keys: list[str], caption: str = "",
                     floor: dict[str, float] | None = None, rank: bool = True) -> Table | None:
    """Models as rows, ``keys`` as columns; None when no model has any of the keys."""
    runs = finished(runs)
    models = model_order(set(runs["model"]))
    cells: dict[tuple[str, str], Cell] = {}
    used = []
    for key in keys:
        per = {m: stats(runs[runs["model"] == m], key) for m in models}
        means = {m: s.mean for m, s in per.items() if s is not None}
        # log p(x | y) is easier than log p(x): conditional models are never "best" on likelihood
        ranked = {m: v for m, v in means.items() if not (key in LIKELIHOOD_KEYS and is_conditional(runs, m))}
        best = best_models(ranked, key) if rank else set()
        reasons = {m: na_reason(runs[runs["model"] == m], key) for m in models}
        if not means:  # nobody measured it: a column of n/a teaches nothing
            continue
        used.append(key)
        for m in models:
            seeds = int((runs["model"] == m).sum())
            s = per[m]
            text = fmt_stats(s, seeds) if s else (f"n/a — {reasons[m]}" if reasons[m] else "—")
            cells[m, key] = Cell(text, best=m in best)
    if not used:
        return None
    columns = ["model", "seeds"] + [_header(k) if rank else k for k in used]
    rows = [[Cell(model_label(m, runs)), Cell(str(int((runs["model"] == m).sum())))]
            + [cells[m, k] for k in used] for m in models]
    if floor and any(k in floor for k in used):
        rows.append([Cell("real vs real (floor)"), Cell("—")]
                    + [Cell(fmt_number(floor[k]) if k in floor else "") for k in used])
    return Table(columns, rows, caption)


def _header(key: str) -> str:
    arrow = {True: " ↑", False: " ↓", None: ""}[glossary.direction(key)]
    return glossary.label(key) + arrow


def feature_spaces(runs: pd.DataFrame) -> list[str | None]:
    """The feature spaces sample quality was measured in (None: not recorded)."""
    if "feature_space" not in runs:
        return [None]
    spaces = sorted({str(f) for f in runs["feature_space"].dropna()})
    return spaces or [None]


def in_space(runs: pd.DataFrame, space: str | None) -> pd.DataFrame:
    if space is None or "feature_space" not in runs:
        return runs
    return runs[runs["feature_space"].astype(str) == space]


def floor_from_metrics(runs: pd.DataFrame) -> dict[str, float]:
    """``floor_<metric>`` keys recorded beside a run's sample-quality numbers, averaged."""
    out = {}
    for col in runs.columns:
        if col.startswith("floor_") and not col.endswith("_stderr"):
            vals = pd.to_numeric(runs[col], errors="coerce").dropna()
            if not vals.empty:
                out[col[len("floor_"):]] = float(vals.mean())
    return out


def failures_table(df: pd.DataFrame) -> Table | None:
    bad = df[df["status"] != "finished"]
    if bad.empty:
        return None
    rows = [[Cell(str(r.model)), Cell(str(r.seed)), Cell(str(r.status)),
             Cell(str(getattr(r, "reason", "") if isinstance(getattr(r, "reason", ""), str) else "")),
             Cell(f"`{Path(r.run_dir).name}`")]
            for r in bad.sort_values(["model", "seed"]).itertuples()]
    return Table(["model", "seed", "status", "reason", "run"], rows,
                 "Runs that did not finish: never hidden, never averaged in.")


def published_table(runs: pd.DataFrame, key: GroupKey) -> Table | None:
    """genbench's number beside the published one, for runs that followed the protocol."""
    dataset, variant, preset = key
    runs = finished(runs)
    rows = []
    for pub in published.PUBLISHED:
        sel = runs[[published.matches(pub, model=m, dataset=dataset, variant=variant, preset=preset,
                                      latent_dim=_int(d))
                     for m, d in zip(runs["model"], runs["latent_dim"], strict=True)]]
        s = stats(sel, pub.metric) if not sel.empty else None
        if s is None:
            continue
        err = s.std if math.isfinite(s.std) else (s.stderr if math.isfinite(s.stderr) else 0.0)
        ok = published.within(s.mean, err, pub)
        verdict = "no stated error" if ok is None else ("yes" if ok else "no")
        pub_text = fmt_number(pub.value) + (f" ± {pub.error}" if pub.error is not None else "")
        rows.append([Cell(f"{pub.model} ({pub.note})" if pub.note else pub.model),
                     Cell(glossary.label(pub.metric)), Cell(fmt_stats(s, s.n)), Cell(pub_text),
                     Cell(f"{s.mean - pub.value:+.2f}"), Cell(verdict), Cell(pub.source)])
    if not rows:
        return None
    return Table(["model", "metric", "genbench", "published", "difference", "within error", "source"],
                 rows, "Published figures for runs that followed the published protocol.")


def _int(x: object) -> int | None:
    try:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else int(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


HEADLINES = (("test_ais", "highest log-likelihood (AIS)"), ("test_iwae", "highest IWAE bound"),
             ("test_elbo", "highest ELBO"), ("fid", "lowest FID"), ("test_error", "lowest test error"))


def headlines(runs: pd.DataFrame, floor: dict[str, float] | None = None,
              space: str | None = None) -> list[str]:
    """One sentence per headline metric: who is best, by how much, and the floor if known.

    Conditional models are left out of the likelihood sentences: log p(x | y) is easier
    than log p(x), so "best" would compare different quantities.
    """
    fin = finished(runs)
    out, said_ll = [], False
    for key, what in HEADLINES:
        likelihood = key.startswith("test_") and key != "test_error"
        if likelihood and said_ll:
            continue
        if likelihood:
            pool = fin[~fin["conditional"].astype(bool)]
        else:  # sample quality only within one feature space
            pool = in_space(fin, space) if key == "fid" else fin
        means = {m: s for m in set(pool["model"]) if (s := stats(pool[pool["model"] == m], key))}
        best = best_models({m: s.mean for m, s in means.items()}, key)
        if not best:
            continue
        ranked = sorted(means.items(), key=lambda kv: kv[1].mean, reverse=glossary.direction(key) is True)
        (m1, s1), (m2, s2) = ranked[0], ranked[1]
        text = (f"{what[0].upper()}{what[1:]}: **{m1}** at {fmt_stats(s1, s1.n)}, then {m2} at "
                f"{fmt_stats(s2, s2.n)}.")
        if floor and key in floor:
            text += f" The real-vs-real floor is {fmt_number(floor[key])}."
        out.append(text)
        said_ll |= likelihood
    return out


def sanity_notes(runs: pd.DataFrame) -> list[str]:
    """Warnings a careful reader would raise: bounds out of order, loose AIS, a model below the floor.

    ELBO <= IWAE <= log p(x) holds in expectation, and AIS is a stochastic lower bound too, so
    the larger of two lower bounds is the better estimate; an AIS below IWAE means AIS was
    run too short (Wu et al. 2017 use 10,000 intermediate distributions). AIS sees fewer
    test images than IWAE, so where the paired difference on AIS's images was recorded
    (``ais_minus_iwae``) it is the one compared, with its standard error.
    """
    fin, notes = finished(runs), []
    for m in model_order(set(fin["model"])):
        part = fin[fin["model"] == m]
        ais, iwae, elbo = (stats(part, k) for k in ("test_ais", "test_iwae", "test_elbo"))
        paired, bound = stats(part, "ais_minus_iwae"), iwae or elbo
        if paired:  # AIS and IWAE on the same images: the comparison that is not confounded
            if paired.mean < -2 * max(paired.stderr, 0.0):
                notes.append(f"{m}: on the same test images AIS is {fmt_number(-paired.mean)} nats below "
                             "the IWAE bound; both are lower bounds, so AIS was run too short for this "
                             "model (raise `ais_steps`).")
        elif ais and bound and ais.mean < bound.mean:
            name = "IWAE" if iwae else "ELBO"
            notes.append(f"{m}: AIS ({fmt_number(ais.mean)}) is below the {name} bound "
                         f"({fmt_number(bound.mean)}); both are lower bounds, so AIS was run too short "
                         "for this model (raise `ais_steps`).")
        if iwae and elbo and iwae.mean < elbo.mean - 3 * max(iwae.stderr, elbo.stderr, 0.0):
            notes.append(f"{m}: IWAE ({fmt_number(iwae.mean)}) is below the ELBO ({fmt_number(elbo.mean)}), "
                         "which it cannot be in expectation; check the estimator settings.")
        gap = stats(part, "bdmc_gap")
        if gap and gap.mean > 1.0:
            notes.append(f"{m}: BDMC gap {fmt_number(gap.mean)} nats: on data simulated from the model "
                         "the truth lies up to that far above AIS; treat this model's AIS as loose.")
    return notes
