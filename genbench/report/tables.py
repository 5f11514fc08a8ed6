"""Results -> comparison tables: mean +- std over seeds, best marked, n/a and failures shown.

Pure pandas on the frame :func:`genbench.store.load_results` returns (plus two columns
read from config.json). A table never mixes presets, data variants or feature spaces.

Bold marks the models that could be the best: a 95% confidence set for the best
(:func:`best_set`). A model is left out only when another is better by more than z standard
errors of their difference (one-sided, Bonferroni over the column's comparisons), the
difference taken paired on the same test images where both runs stored per-image estimates
(``per_image.json``), and from the estimators' standard errors and the seed-to-seed spread
otherwise. So a bold value is never significantly worse than a plain one; a noisy model may be
bold beside precise ones known to be worse than the best. When every model could be the best,
none is bold. An AIS number is ranked only when BDMC certified it (``ais_certified = 1``); one
that converged without a certificate, or did not converge (``ais_converged = 0``, or stopped
by the pilot), is flagged with the reason.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import pandas as pd

from genbench.errors import GenbenchError
from genbench.registry import MODELS
from genbench.report import adversarial, configs, glossary, published
from genbench.report.document import Cell, Table
from genbench.store import load_results, read_config, read_json

META = {"dataset", "model", "preset", "variant", "seed", "run_dir", "status", "reason",
        "feature_space", "latent_dim", "conditional", "conditional_model", "external",
        "model_description", configs.NAME, configs.KEY,
        configs.SETTINGS, configs.SUPERSEDED}
# run bookkeeping the runner records beside the metrics: shown as cost, never ranked
COST = ("epochs", "train_seconds", "eval_seconds")
MODEL_ORDER = ("vae", "ae", "gan", "dcgan", "vaegan", "cvae", "m2")
GroupKey = tuple[str, str, str]  # (dataset, variant, preset)


def _conditional_class(model: str, config: dict) -> bool:
    """Conditional by class (CVAE): recorded in config.json as ``conditional_model``, or for
    a run recorded before that, by the registered class."""
    by_class = config.get("conditional_model")
    if by_class is None:
        by_class = bool(getattr(MODELS[model].cls, "conditional", False)) if model in MODELS else False
    return bool(by_class)


def _description(model: str, config: dict) -> str:
    """The model's registered one-line description, as its run recorded it (for a run
    recorded before that, the registry's, where the model is registered)."""
    recorded = config.get("model_description")
    if isinstance(recorded, str):
        return recorded
    return MODELS[model].description if model in MODELS else ""


def load(results: Path) -> pd.DataFrame:
    """The store's results frame plus ``latent_dim`` and ``conditional`` from each run's config,
    grouped by configuration (:mod:`genbench.report.configs`): ``model`` is the row label
    (``vae (latent_dim=2)`` where a model has several configurations), ``model_name`` the
    registry name. Older runs of a (configuration, seed) measured again are dropped; their
    notes are in ``df.attrs["superseded"]`` as (dataset, variant, preset, note)."""
    df = load_results(results)
    if df.empty:
        return df
    cfgs = [read_config(Path(d)) for d in df["run_dir"]]  # checked by load_results
    df["latent_dim"] = [c.get("model_config", {}).get("latent_dim") for c in cfgs]
    df["command"] = [c.get("command") for c in cfgs]
    df["external"] = [bool(c.get("external", False)) for c in cfgs]  # `genbench score` samples
    df["reference_row"] = [c.get("reference_row") for c in cfgs]  # an adversary's declaration
    df["games"] = [tuple(c.get("games") or ()) for c in cfgs]
    df["model_description"] = [_description(m, c) for m, c in zip(df["model"], cfgs, strict=True)]
    # a model is conditional by class (CVAE) or by its config (a PixelCNN with conditional=true)
    df["conditional_model"] = [_conditional_class(m, c) for m, c in zip(df["model"], cfgs, strict=True)]
    by_config = [bool(c.get("model_config", {}).get("conditional", False)) for c in cfgs]
    df["conditional"] = [a or b for a, b in zip(df["conditional_model"], by_config, strict=True)]
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
    skipped = df.attrs.get("skipped", [])
    df = configs.annotate(df, cfgs)
    notes = [(str(k[0]), str(k[1]), str(k[2]), n) for k, sub in df.groupby(["dataset", "variant", "preset"])
             for n in configs.superseded_notes(sub)]
    df = df[~df[configs.SUPERSEDED]].reset_index(drop=True)
    df.attrs = {"skipped": skipped, "superseded": notes}
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
    """Row order: the survey's models first, then the others by name; the configurations of
    one model (``vae (latent_dim=2)``, ``vae (latent_dim=20)``) together, by label."""
    def rank(label: str) -> tuple[int, str, str]:
        base = label.split(" (", 1)[0]
        return (MODEL_ORDER.index(base) if base in MODEL_ORDER else len(MODEL_ORDER), base, label)

    return sorted(set(models), key=rank)


def is_conditional(runs: pd.DataFrame, model: str) -> bool:
    return "conditional" in runs and bool(runs.loc[runs["model"] == model, "conditional"].astype(bool).any())


def model_label(name: str, df: pd.DataFrame) -> str:
    if "external" in df and bool(df.loc[df["model"] == name, "external"].astype(bool).any()):
        return f"{name} (outside samples)"
    if (note := adversarial.reference_note(df, name)) is not None:
        return f"{name} — reference row, {note}"
    return f"{name} †" if is_conditional(df, name) else name


def trained(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of models genbench trained: outside samples never get a likelihood row."""
    return runs[~runs["external"].astype(bool)] if "external" in runs else runs


def metric_keys(df: pd.DataFrame) -> list[str]:
    """Result keys with at least one number or n/a, known sections first, then plugin extras.

    ``*_bpd`` keys are shown inside their nats cell, not as columns of their own.
    """
    present = {c for c in df.columns if c not in META and c not in COST
               and not c.startswith(("_", "floor_", "na:")) and not c.endswith(("_stderr", "_bpd"))
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
    """Models holding the best mean for ``key`` (ties all marked); none for a non-ranking key.

    The plain ordering of means, without uncertainty: :func:`significant_best` is what marks
    a table."""
    higher = glossary.direction(key)
    if higher is None or len(means) < 2 or len(set(means.values())) == 1:
        return set()  # alone in a column, or all tied: nothing to point at
    target = max(means.values()) if higher else min(means.values())
    return {m for m, v in means.items() if v == target}


PER_IMAGE = "per_image.json"  # written by genbench.metrics.likelihood
Z = 2.0  # a difference is real when it exceeds Z standard errors


_TRUST_ORDER = ("not converged", "converged", "certified")


def ais_status(runs: pd.DataFrame, key: str) -> str | None:
    """"certified", "converged" or "not converged" for an AIS column over these runs: the
    worst of their seeds by :meth:`ResultKey.trust` (the rule the closing table of
    ``genbench run`` reads too); None for any other column, or runs that recorded no flag.
    A run without flags beside runs with them counts as not converged.
    """
    declared = glossary.declared(key)
    if declared is None or key not in runs:
        return None
    measured = runs[pd.to_numeric(runs[key], errors="coerce").notna()]
    seen = [declared.trust(row) for row in measured.to_dict("records")]
    if not any(seen):
        return None
    return min((s or "not converged" for s in seen), key=_TRUST_ORDER.index)


def uncertified(runs: pd.DataFrame, key: str) -> bool:
    """True when these runs recorded an AIS for ``key`` that is not certified: never ranked."""
    return ais_status(runs, key) in ("converged", "not converged")


def uncertified_reason(runs: pd.DataFrame, key: str) -> str:
    """Why an AIS is not certified, from the recorded numbers: stopped by the pilot (its gap
    and what it would take), or the BDMC gap above the tolerance, or no BDMC at all."""
    suffix = key[len("test_ais"):]

    def num(col: str) -> float | None:
        s = stats(runs, col)
        return s.mean if s is not None and math.isfinite(s.mean) else None

    def gap_text(col: str) -> str:
        g, se = num(col), num(f"{col}_stderr")
        if g is None:
            return "?"
        return fmt_number(g, se if se is not None else math.nan) + (
            f" ± {fmt_number(se, se)}" if se is not None else "")

    tol = num(f"certify_tolerance{suffix}")
    tol_text = fmt_number(tol) if tol is not None else "the tolerance"
    if (num(f"ais_pilot_stopped{suffix}") or 0) > 0:
        steps, needed = num(f"ais_pilot_distributions{suffix}"), num(f"ais_needed_distributions{suffix}")
        return (f"stopped by the pilot: BDMC gap {gap_text(f'ais_pilot_gap{suffix}')} at "
                f"{fmt_number(steps)} distributions; about {_count(needed)} needed to reach "
                f"{tol_text}: run `--preset paper` on a GPU")
    if num(f"bdmc_gap{suffix}") is not None:
        return f"BDMC gap {gap_text(f'bdmc_gap{suffix}')}: gap + 2 s.e. > {tol_text}"
    return "no BDMC run to certify it"


def _count(n: float | None) -> str:
    return "?" if n is None else f"{n:,.0f}"


@functools.lru_cache(maxsize=4096)
def _per_image_file(run_dir: str, mtime: float) -> dict[str, dict[int, float]]:
    out = {}
    try:
        data = read_json(Path(run_dir) / PER_IMAGE)
    except GenbenchError:
        return out
    for key, rec in data.items():
        if isinstance(rec, dict) and all(isinstance(rec.get(f), list) for f in ("indices", "values")):
            out[key] = {int(i): float(v) for i, v in zip(rec["indices"], rec["values"], strict=False)}
    return out


def per_image(runs: pd.DataFrame, key: str) -> dict[int, float]:
    """Per-image values of ``key`` averaged over these runs' seeds, on the images all of them
    scored ({} when any run lacks them)."""
    maps = []
    for d in runs.get("run_dir", pd.Series(dtype=object)):
        path = Path(str(d)) / PER_IMAGE
        if not path.exists():
            return {}
        m = _per_image_file(str(d), path.stat().st_mtime).get(key)
        if not m:
            return {}
        maps.append(m)
    if not maps:
        return {}
    common = set.intersection(*(set(m) for m in maps))
    return {i: sum(m[i] for m in maps) / len(maps) for i in sorted(common)}


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) for one metric, with its standard error (nan: unknown)."""

    value: float
    stderr: float
    paired_images: int  # images the difference was paired on (0: unpaired)

    def significant(self) -> bool:
        return math.isfinite(self.stderr) and abs(self.value) > Z * self.stderr

    def text(self) -> str:
        se = fmt_number(self.stderr, self.stderr) if math.isfinite(self.stderr) else "?"
        return f"{fmt_number(abs(self.value), self.stderr)} ± {se}"


def difference(runs: pd.DataFrame, key: str, a: str, b: str, key_b: str | None = None
               ) -> Difference | None:
    """Model a's ``key`` minus model b's (b's ``key_b``, if given), with the uncertainty of
    the difference.

    Paired on the same test images where both stored per-image values: the standard error
    of the mean per-image difference, plus each model's seed spread (std^2 / seeds; with one
    seed it is unknown and left out, and the report says so). Otherwise each mean's own
    variance (:func:`_mean_variance`) in quadrature, unknown (nan) when either is unknown.
    """
    key_b = key_b or key
    ra, rb = runs[runs["model"] == a], runs[runs["model"] == b]
    sa, sb = stats(ra, key), stats(rb, key_b)
    if sa is None or sb is None:
        return None
    seed_var = sum(s.std**2 / s.n for s in (sa, sb) if math.isfinite(s.std))
    pa, pb = per_image(ra, key), per_image(rb, key_b)
    common = sorted(set(pa) & set(pb))
    if len(common) >= 2:
        d = [pa[i] - pb[i] for i in common]
        mean = sum(d) / len(d)
        var = sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)
        return Difference(mean, math.sqrt(var + seed_var), len(common))
    # unknown when either side's is: a lone estimate without a standard error may be far off
    return Difference(sa.mean - sb.mean, math.sqrt(sum(_mean_variance(s) for s in (sa, sb))), 0)


def mean_stderr(s: Stats) -> float:
    """The standard error of a model's mean over its seeds (nan when unknown): the error bar
    of the report's plots."""
    return math.sqrt(_mean_variance(s))


def _mean_variance(s: Stats) -> float:
    """The variance of a mean over seeds: the seed spread already holds each estimate's own
    noise, so std^2 / n, but never below the estimators' stderr^2 / n (two seeds that agree
    by chance do not make a mean exact); stderr^2 for one seed; nan when neither is known."""
    own = s.stderr**2 if math.isfinite(s.stderr) else math.nan
    if math.isfinite(s.std):
        return max(s.std**2, own if math.isfinite(own) else 0.0) / s.n
    return own / s.n if math.isfinite(own) else math.nan


LEVEL = 0.95  # the confidence of the bold set: the best model is in it with this probability


def critical_z(models: int, level: float = LEVEL) -> float:
    """One-sided z that leaves a model out of a ``level`` confidence set for the best among
    ``models``: Bonferroni over the models - 1 others that may beat it (1.64 for two
    models, 2.39 for seven, 2.54 for ten)."""
    return NormalDist().inv_cdf(1 - (1 - level) / max(1, models - 1))


def best_set(runs: pd.DataFrame, key: str, means: dict[str, float], level: float = LEVEL) -> set[str]:
    """The models that could be the best on ``key``: a ``level`` confidence set (multiple
    comparisons with the best, Hsu 1981, with Bonferroni's z).

    A model is left out when some model with a better mean beats it by more than z standard
    errors of their :func:`difference`. Hence no member is significantly worse than a
    non-member (it would have been left out). Empty when every model is a member (nobody
    stands out), and when a model could be left out only through a comparison whose
    uncertainty is unknown (one seed of a metric without a standard error): bolding it, or
    not, would claim what the data cannot say.
    """
    higher = glossary.direction(key)
    if higher is None or len(means) < 2:
        return set()
    z = critical_z(len(means), level)
    members = set()
    for m, value in means.items():
        unknown, out = False, False
        for other, better in means.items():
            if other == m or not (better > value if higher else better < value):
                continue
            diff = difference(runs, key, other, m)
            if diff is None or not math.isfinite(diff.stderr):
                unknown = True
                continue
            if abs(diff.value) > z * diff.stderr:
                out = True
                break
        if out:
            continue
        if unknown:
            return set()
        members.add(m)
    return members if len(members) < len(means) else set()


def bold_caption(models: int, level: float = LEVEL) -> str:
    """The sentence that says what bold means in a table of ``models`` ranked rows."""
    return (f"Bold: the models that could be the best, a {level:.0%} confidence set: a model is "
            f"not bold only when another beats it by more than z standard errors of their "
            f"difference (one-sided, Bonferroni over its comparisons; z = {critical_z(models, level):.2f} "
            f"with {models} ranked models), paired on the same test images where both stored "
            "them. A bold value is never significantly worse than a plain one.")


def significant_best(runs: pd.DataFrame, key: str, means: dict[str, float]) -> set[str]:
    """The models a table marks bold on ``key``: :func:`best_set` (kept under this name for
    callers of the earlier rule)."""
    return best_set(runs, key, means)


def fmt_flag(runs: pd.DataFrame, key: str) -> str:
    """A 0/1 record over seeds as "k of n" (1 of 2 converged), not "0.50 ± 0.71"."""
    vals = pd.to_numeric(runs[key], errors="coerce").dropna()
    return f"{int((vals != 0).sum())} of {len(vals)}"


def _bpd_text(runs: pd.DataFrame, key: str) -> str:
    s = stats(runs, f"{key}_bpd")
    return f" · {s.mean:.3f} bpd" if s is not None else ""


def comparison_table(runs: pd.DataFrame, keys: list[str], caption: str = "",
                     floor: dict[str, float] | None = None, rank: bool = True) -> Table | None:
    """Models as rows, ``keys`` as columns; None when no model has any of the keys."""
    runs = finished(runs)
    models = model_order(set(runs["model"]))
    columns = {key: col for key in keys if (col := _column(runs, models, key, rank)) is not None}
    if not columns:
        return None
    used = list(columns)
    cells = _said_once({(m, k): col.cells[m] for k, col in columns.items() for m in models}, models, used)
    if any(col.flagged for col in columns.values()):
        caption = (caption + " " if caption else "") + CERTIFIED_CAPTION
    if any(adversarial.GAMED in c.text for c in cells.values()):
        caption = (caption + " " if caption else "") + adversarial.GAMED_CAPTION
    ranked_rows = max(col.ranked_rows for col in columns.values())  # the bold caption states its z
    if ranked_rows:
        caption = (caption + " " if caption else "") + bold_caption(ranked_rows)
    headers = ["model", "seeds"] + [_header(k) if rank else k for k in used]
    rows = [[Cell(model_label(m, runs)), Cell(str(int((runs["model"] == m).sum())))]
            + [cells[m, k] for k in used] for m in models]
    if floor and any(k in floor for k in used):
        rows.append([Cell("real vs real (floor)"), Cell("—")]
                    + [Cell(fmt_number(floor[k]) if k in floor else "") for k in used])
    return Table(headers, rows, caption)


CERTIFIED_CAPTION = (
    "✓ certified: the BDMC gap (+ 2 s.e.) on data simulated from the model, with the AIS's "
    "own start and schedule, is within `certify_tol`; only certified AIS numbers are ranked. "
    "⚠ converged, not certified: two AIS runs, the second with twice the distributions, "
    "agreed, but BDMC did not certify them. ⚠ not converged: they disagreed by more than "
    "the tolerance up to `ais_max_steps`, or the pilot stopped AIS early, or AIS ran once at "
    "the schedule the pilot chose and BDMC did not certify it. An uncertified "
    "number is a lower bound of unknown looseness and is not ranked.")


@dataclass(frozen=True)
class _Column:
    cells: dict[str, Cell]  # model -> its cell
    ranked_rows: int  # rows ranked when some are bold, else 0
    flagged: bool  # some cell carries an uncertified AIS's warning


def _column(runs: pd.DataFrame, models: list[str], key: str, rank: bool) -> _Column | None:
    """One column of a comparison table; None when nobody measured ``key`` (a column of n/a
    teaches nothing). Log p(x | y) is easier than log p(x): conditional models are never
    "best" on a likelihood; an AIS that BDMC did not certify is never ranked."""
    per = {m: stats(runs[runs["model"] == m], key) for m in models}
    means = {m: s.mean for m, s in per.items() if s is not None}
    if not means:
        return None
    status = {m: ais_status(runs[runs["model"] == m], key) for m in means}
    stalled = {m for m in means if status[m] in ("converged", "not converged")}
    references = adversarial.references(runs)  # a reference row (an adversary) is never ranked
    ranked = {m: v for m, v in means.items()
              if not (glossary.given_label_is_easier(key) and is_conditional(runs, m)) and m not in stalled
              and m not in references}
    best = significant_best(runs, key, ranked) if rank else set()
    cells = {}
    for m in models:
        part = runs[runs["model"] == m]
        text = _cell_text(part, key, per[m], int((runs["model"] == m).sum()))
        if m in stalled:
            text += f" ⚠ {status[m]}, not certified: {uncertified_reason(part, key)}"
        elif status.get(m) == "certified":
            text += " ✓ certified"
        if per[m] is not None and key in adversarial.gamed(runs, m):
            text += f" {adversarial.GAMED}"
        cells[m] = Cell(text, best=m in best)
    return _Column(cells, len(ranked) if best else 0, bool(stalled))


def _cell_text(part: pd.DataFrame, key: str, s: Stats | None, seeds: int) -> str:
    """A model's number on ``key``: its flag count, mean and spread, or why there is none."""
    if s is None:
        reason = na_reason(part, key)
        return f"n/a — {reason}" if reason else "—"
    return fmt_flag(part, key) if glossary.is_flag(key) else fmt_stats(s, seeds) + _bpd_text(part, key)


def _said_once(cells: dict[tuple[str, str], Cell], models: list[str],
               used: list[str]) -> dict[tuple[str, str], Cell]:
    """A reason repeated along a row is said once, at its first cell."""
    for m in models:
        last = None
        for key in used:
            text = cells[m, key].text
            reason = text if text.startswith("n/a — ") else None
            if reason is not None and reason == last:
                cells[m, key] = Cell("n/a (same reason)")
            last = reason
    return cells


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
        names = runs[configs.NAME] if configs.NAME in runs else runs["model"]
        sel = runs[[published.matches(pub, model=m, dataset=dataset, variant=variant, preset=preset,
                                      latent_dim=_int(d))
                     for m, d in zip(names, runs["latent_dim"], strict=True)]]
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


def headlines(runs: pd.DataFrame, floor: dict[str, float] | None = None,
              space: str | None = None) -> list[str]:
    """One sentence per headline group: who is best, by how much, with the uncertainty.

    The groups and their sentences are declared with the keys (``ResultKey.best_text``,
    :func:`glossary.headline_sentences`). Conditional models are left out of the likelihood
    sentences: log p(x | y) is easier than log p(x), so "best" would compare different
    quantities. An AIS that BDMC did not certify is never named: the certified ones compete
    if two remain (else the next estimator speaks), and one sentence says who was left out
    and why. When the top two are within two standard errors the sentence says they are
    indistinguishable.
    """
    fin = finished(runs)
    out, said = [], set()
    skipped_ais: list[tuple[str, list[tuple[str, str, str]]]] = []
    if (lone := exact_beside_bounds(fin)) is not None:
        out.append(lone)
        said.add("exact")
    for key, what, group in glossary.headline_sentences():
        if group in said:
            continue
        pool = _headline_pool(fin, key, space)
        means = {m: s for m in set(pool["model"]) if (s := stats(pool[pool["model"] == m], key))}
        if len(means) < 2:
            continue
        stalled = sorted(m for m in means if uncertified(pool[pool["model"] == m], key))
        if stalled:  # an uncertified AIS is never named: the others compete if two remain
            skipped_ais.append((key, [(m, ais_status(pool[pool["model"] == m], key) or "",
                                       uncertified_reason(pool[pool["model"] == m], key)) for m in stalled]))
            means = {m: s for m, s in means.items() if m not in stalled}
            if len(means) < 2:
                continue
        out.append(_best_sentence(pool, key, what, means, floor))
        said.add(group)
    out += [_left_out_sentence(key, stalled) for key, stalled in skipped_ais]
    if out and not fin.empty and int(fin.groupby("model").size().max()) == 1:
        out.append("One seed per model: the seed-to-seed spread is unknown, so differences are judged "
                   "against the estimators' own errors only.")
    return out


def _headline_pool(fin: pd.DataFrame, key: str, space: str | None) -> pd.DataFrame:
    """The runs a headline ranks on ``key``: no conditional model on a likelihood (log p(x | y)
    is easier), and sample quality only within one feature space (FIDs in two are no ranking);
    never a reference row (an adversary of the metrics)."""
    fin = fin[~fin["model"].isin(adversarial.references(fin))]
    if glossary.given_label_is_easier(key):
        return fin[~fin["conditional"].astype(bool)]
    return in_space(fin, space) if glossary.section_of(key) == "Sample quality" else fin


def _best_sentence(pool: pd.DataFrame, key: str, what: str, means: dict[str, Stats],
                   floor: dict[str, float] | None) -> str:
    """Who leads on ``key`` and by how much, said only as strongly as the paired difference
    of the top two allows (unknown, indistinguishable, or ahead)."""
    higher = glossary.direction(key) is True
    (m1, s1), (m2, s2) = sorted(means.items(), key=lambda kv: kv[1].mean, reverse=higher)[:2]
    diff = difference(pool, key, m1, m2)
    where = f" (paired on {diff.paired_images} test images)" if diff and diff.paired_images else ""
    head = f"{what[0].upper()}{what[1:]}"
    if diff is None or not math.isfinite(diff.stderr):
        text = (f"{head}: {m1} at {fmt_stats(s1, s1.n)}, then {m2} at {fmt_stats(s2, s2.n)}; "
                "the uncertainty of the difference is unknown, so neither is called best.")
    elif not diff.significant():
        text = (f"{head}: {m1} ({fmt_stats(s1, s1.n)}) and {m2} ({fmt_stats(s2, s2.n)}) are "
                f"indistinguishable: they differ by {diff.text()}{where}.")
    else:
        below = "below" if higher else "above"
        text = (f"{head}: **{m1}** at {fmt_stats(s1, s1.n)}; {m2} is {diff.text()} {below} it{where}.")
    if floor and key in floor:
        text += f" The real-vs-real floor is {fmt_number(floor[key])}."
    return text


def _left_out_sentence(key: str, stalled: list[tuple[str, str, str]]) -> str:
    """Why the uncertified AIS numbers of ``stalled`` (model, status, reason) were not ranked:
    stopped by the pilot, not converged, or converged without a certificate."""
    parts = []
    for verb, pick in (("the pilot stopped it early for", lambda st, why: why.startswith("stopped")),
                       ("it did not converge for",
                        lambda st, why: st == "not converged" and not why.startswith("stopped")),
                       ("it converged but is not certified for", lambda st, why: st == "converged")):
        who = [f"{m} ({why.removeprefix('stopped by the pilot: ')})" for m, st, why in stalled
               if pick(st, why)]
        if who:
            parts.append(f"{verb} {'; '.join(who)}")
    return (f"{glossary.label(key)} ranks certified numbers only: {'; '.join(parts)} "
            "(flagged in the table).")


def exact_beside_bounds(fin: pd.DataFrame) -> str | None:
    """One sentence for a lone model with an exact log-likelihood (PixelCNN among VAEs and
    GANs): its number beside the best IWAE bound of the others, paired on the same images.

    The AIS and IWAE headlines rank only the models those estimators apply to, so without
    this sentence a reader would see "highest AIS estimate: vae" and miss that an exact
    model sits above it. A bound understates its model's log p(x): the gap shown is the most
    the exact model can lead by, not a ranking.
    """
    pool = fin[~fin["conditional"].astype(bool)]
    exact = {m: s for m in set(pool["model"]) if (s := stats(pool[pool["model"] == m], "test_exact"))}
    bounds = {m: s for m in set(pool["model"]) - set(exact)
              if (s := stats(pool[pool["model"] == m], "test_iwae"))}
    if len(exact) != 1 or not bounds:
        return None
    ((m1, s1),) = exact.items()
    m2, s2 = max(bounds.items(), key=lambda kv: kv[1].mean)
    diff = difference(pool, "test_exact", m1, m2, key_b="test_iwae")
    where = f" (paired on {diff.paired_images} test images)" if diff and diff.paired_images else ""
    side = "above" if s1.mean >= s2.mean else "below"
    gap = diff.text() if diff is not None else fmt_number(abs(s1.mean - s2.mean))
    lead = ("the most it can lead by, since a bound understates its model's log p(x)"
            if side == "above" else "and a bound only understates its model's log p(x)")
    return (f"Exact log-likelihood: {m1} at {fmt_stats(s1, s1.n)}, {gap} {side} the best IWAE "
            f"bound of the other models ({m2}, {fmt_stats(s2, s2.n)}){where}: {lead}.")


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
                             "model (raise `ais_max_steps`).")
        elif ais and bound and ais.mean < bound.mean:
            name = "IWAE" if iwae else "ELBO"
            notes.append(f"{m}: AIS ({fmt_number(ais.mean)}) is below the {name} bound "
                         f"({fmt_number(bound.mean)}); both are lower bounds, so AIS was run too short "
                         "for this model (raise `ais_max_steps`).")
        if iwae and elbo and iwae.mean < elbo.mean - 3 * max(iwae.stderr, elbo.stderr, 0.0):
            notes.append(f"{m}: IWAE ({fmt_number(iwae.mean)}) is below the ELBO ({fmt_number(elbo.mean)}), "
                         "which it cannot be in expectation; check the estimator settings.")
        for suffix, which in (("", ""), ("_shared", " (shared family)")):
            gap = stats(part, f"bdmc_gap{suffix}")
            if gap and gap.mean > 1.0:
                se = f" ± {fmt_number(gap.stderr, gap.stderr)}" if math.isfinite(gap.stderr) else ""
                notes.append(f"{m}: BDMC gap{which} {fmt_number(gap.mean)}{se} nats: on data simulated from "
                             "the model the truth lies up to that far above AIS; treat this model's AIS "
                             "as loose.")
        shared = stats(part, "ais_minus_iwae_shared")
        if shared and shared.mean < -2 * max(shared.stderr, 0.0):
            notes.append(f"{m}: under the shared family, on the same test images AIS is "
                         f"{fmt_number(-shared.mean)} nats below the IWAE bound: AIS was run too short.")
    return notes
