"""Seaborn plots for the report: small PNGs, one function per figure.

Each function takes a group's runs (one dataset, variant and preset) and returns the path
it wrote, or None when there is nothing to draw. Figures are saved at a low dpi and
quantized to a 256-colour palette so a committed reference report stays small.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from genbench.figures import save_figure  # noqa: E402
from genbench.registry import ResultKey  # noqa: E402
from genbench.report import glossary, tables  # noqa: E402
from genbench.store import HISTORY  # noqa: E402

DPI = 72
HISTORY_SKIP = {"epoch", "seconds", "images_per_s", "step", "steps", "time", "lr"}

sns.set_theme(style="whitegrid", context="paper")


def save_small(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    """Save at the report's dpi as a palette PNG (see :func:`genbench.figures.save_figure`)."""
    return save_figure(fig, path, dpi=DPI, tight=tight)


def palette(models: list[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per model, the same in every figure of a group, distinct for up to 20
    models: tab10's ten, then tab20's ten lighter shades (tab10 alone repeats at eleven)."""
    tab20 = sns.color_palette("tab20", 20)
    colours = tab20[0::2] + tab20[1::2]
    if len(models) > len(colours):
        colours = sns.color_palette("husl", len(models))
    return dict(zip(models, colours[:len(models)], strict=True))


def long_metrics(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per (run, metric): model, seed, metric label, value."""
    runs = tables.finished(runs)
    cols = [k for k in keys if k in runs]
    if not cols:
        return pd.DataFrame(columns=["model", "seed", "metric", "value"])
    df = runs[["model", "seed", *cols]].melt(id_vars=["model", "seed"], var_name="metric",
                                               value_name="value")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df = df.dropna(subset=["value"])
    df["metric"] = df["metric"].map(lambda k: glossary.label(k) + {True: " ↑", False: " ↓",
                                                                   None: ""}[glossary.direction(k)])
    return df


def _grid(n: int, width: float = 2.6, height: float = 2.1) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def seed_values(runs: pd.DataFrame, key: str) -> dict[str, list[float]]:
    """Each model's per-seed values of ``key`` (finished runs)."""
    fin = tables.finished(runs)
    if key not in fin:
        return {}
    vals = pd.to_numeric(fin[key], errors="coerce")
    return {m: v.dropna().tolist() for m, v in vals.groupby(fin["model"]) if v.notna().any()}


def point_with_seeds(ax: plt.Axes, x: float, runs: pd.DataFrame, model: str, key: str, colour,
                     marker: str = "o", sign: float = 1.0, label: str | None = None) -> bool:
    """The model's mean of ``key`` with an error bar of its standard error (the estimators'
    s.e. and the seed spread over the seeds), and each seed as a small dot beside it."""
    s = tables.stats(runs[runs["model"] == model], key)
    if s is None:
        return False
    se = tables.mean_stderr(s)
    seeds = seed_values(runs[runs["model"] == model], key).get(model, [])
    ax.scatter([x + 0.12] * len(seeds), [sign * v for v in seeds], s=9, color=colour, alpha=0.6,
               linewidths=0, zorder=3)
    ax.errorbar(x, sign * s.mean, yerr=se if math.isfinite(se) else None, fmt=marker, color=colour,
                capsize=3, markersize=5, zorder=4, label=label)
    return True


def metric_panels(runs: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Each metric per model: the mean with an error bar of its standard error (see
    :func:`point_with_seeds`), every seed a dot beside it.

    Drawn with matplotlib's errorbar: seaborn's catplot costs ~20x more for the same picture,
    and the report should take seconds.
    """
    fin = tables.finished(runs)
    keys = [k for k in keys if seed_values(fin, k)]
    if not keys:
        return None
    order = tables.model_order(set(fin["model"]))
    colours = palette(order)
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys, strict=True):
        for x, model in enumerate(order):
            point_with_seeds(ax, x, fin, model, key, colours[model])
        ax.set_xticks(range(len(order)), order, rotation=45, fontsize=7, ha="right")
        ax.set_xlim(-0.5, len(order) - 0.5)
        arrow = {True: " ↑", False: " ↓", None: ""}[glossary.direction(key)]
        ax.set_title(glossary.label(key) + arrow, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return save_small(fig, path, tight=False)


def read_history(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's history.csv in long form: model, seed, epoch, term, value."""
    frames = []
    for r in runs.itertuples():
        path = Path(r.run_dir) / HISTORY
        if not path.exists():
            continue
        try:
            h = pd.read_csv(path)
        except (UnicodeDecodeError, ValueError, OSError) as err:  # a foreign or damaged file
            _skip_part(f"{path} is unreadable ({type(err).__name__}); its training curves are "
                       "left out")
            continue
        if "epoch" not in h:
            h["epoch"] = range(1, len(h) + 1)
        terms = [c for c in h.columns if c not in HISTORY_SKIP and pd.api.types.is_numeric_dtype(h[c])]
        h = h[["epoch", *terms]].melt(id_vars="epoch", var_name="term", value_name="value")
        frames.append(h.assign(model=r.model, seed=r.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _skip_part(message: str) -> None:
    import warnings

    from genbench.errors import GenbenchWarning

    warnings.warn(message, GenbenchWarning, stacklevel=3)


def training_curves(runs: pd.DataFrame, path: Path) -> Path | None:
    """One panel per loss term (ELBO terms; D and G losses), a line per model, band = seeds."""
    df = read_history(runs)
    if df.empty:
        return None
    order = tables.model_order(set(df["model"]))
    colours = palette(order)
    stats = df.groupby(["term", "model", "epoch"])["value"].agg(["mean", "std"]).reset_index()
    terms = list(dict.fromkeys(df["term"]))
    fig, axes = _grid(len(terms), height=1.9)
    for ax, term in zip(axes, terms, strict=True):
        for model in order:
            part = stats[(stats["term"] == term) & (stats["model"] == model)]
            if part.empty:
                continue
            ax.plot(part["epoch"], part["mean"], marker="o", markersize=2.5, color=colours[model],
                    label=model)
            std = part["std"].fillna(0)
            ax.fill_between(part["epoch"], part["mean"] - std, part["mean"] + std,
                            color=colours[model], alpha=0.2, linewidth=0)
        ax.set_title(term, fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", label=m) for m in order]
    axes[-1].set_xlabel("epoch", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    return save_small(fig, path, tight=False)


KIND_MARKER = {"exact": "*", "own": "o", "shared": "s", "legacy": "x"}  # by ResultKey.family
_FAMILIES = tuple(KIND_MARKER)


def estimators() -> list[tuple[str, str, str]]:
    """(key, legend label, family) of every declared estimate of log p(x): exact, then the
    model's own p(x|z), the shared family and the legacy Parzen window, the loosest of a
    family first (ELBO, IWAE, AIS), as their metrics declare them."""
    keys = sorted(glossary.estimators(), key=lambda k: (_FAMILIES.index(k.family), -k.stands_for))
    return [(k.name, k.label or k.name, k.family) for k in keys]


def likelihood_estimators(runs: pd.DataFrame, path: Path) -> Path | None:
    """Every log-likelihood estimate side by side per model, marked by kind: exact (★), under
    the model's own p(x|z) (●: ELBO <= IWAE <= AIS), under the shared family (■: the GANs'
    AIS), Parzen (×); the BDMC gap under each name."""
    fin = tables.finished(runs)
    present = [(k, lab, kind) for k, lab, kind in estimators() if seed_values(fin, k)]
    if not present:
        return None
    order = [m for m in tables.model_order(set(fin["model"]))
             if any(m in seed_values(fin, k) for k, _, _ in present)]
    colours = dict(zip([k for k, _, _ in present], sns.color_palette("tab10", len(present)),
                       strict=True))
    names = []
    for m in order:
        gaps = [f"{tag} {tables.fmt_number(s.mean)}" for key, tag in (("bdmc_gap", "BDMC"),
                                                                      ("bdmc_gap_shared", "BDMC sh."))
                if (s := tables.stats(fin[fin["model"] == m], key))]
        names.append("\n".join([tables.model_label(m, fin), *gaps]))  # † conditional: log p(x | y)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(order), 3.4))
    width = 0.7 / len(present)
    for i, (key, lab, kind) in enumerate(present):
        drawn = False
        for x, m in enumerate(order):
            drawn |= point_with_seeds(ax, x - 0.35 + width * (i + 0.5), fin, m, key, colours[key],
                                      marker=KIND_MARKER[kind], label=None if drawn else lab)
    ax.set_xticks(range(len(order)), names, fontsize=7)
    ax.set(xlabel="", ylabel="log p(x), nats (higher is better)")
    ax.legend(fontsize=7, ncol=2)
    return save_small(fig, path)


def nll_source_order() -> list[tuple[str, str, str]]:
    """(key, kind, family) of the estimates that may stand for a model's log-likelihood on the
    quality plane, the preferred first (``ResultKey.stands_for``): "exact", "own AIS", ...,
    "shared-family IWAE", "own ELBO"."""
    keys = sorted((k for k in glossary.estimators() if k.stands_for), key=lambda k: k.stands_for)
    return [(k.name, _source_kind(k), k.family) for k in keys]


def _source_kind(key: ResultKey) -> str:
    """ "exact", or the family and the estimator's own label ("shared-family AIS")."""
    if key.family == "exact":
        return "exact"
    own = glossary.label(key.variant_of) if key.variant_of else key.label
    return f"{'shared-family' if key.family == 'shared' else key.family} {own}"


def nll_sources(runs: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """model -> (key, kind) of the log-likelihood the quality plane uses for it: exact, else
    its own AIS, IWAE, else the shared family's AIS, IWAE, else its ELBO."""
    out = {}
    order = nll_source_order()
    for m in tables.model_order(set(runs["model"])):
        part = runs[runs["model"] == m]
        for key, kind, _ in order:
            if tables.stats(part, key) is not None:
                out[m] = (key, kind)
                break
    return out


def quality_vs_nll(runs: pd.DataFrame, path: Path, space: str | None) -> tuple[Path, str] | None:
    """Sample quality (FID, else KID) against NLL, one point per model with every log-likelihood
    genbench has for it (own, shared-family or exact, marked), seeds as dots, error bars of
    the standard errors; returns the path and a caption true of the plot."""
    fin = tables.in_space(tables.finished(runs), space)
    q = next((k for k in ("fid", "kid") if k in fin and fin[k].notna().any()), None)
    sources = {m: src for m, src in nll_sources(fin).items()
               if q is not None and tables.stats(fin[fin["model"] == m], q) is not None}
    if q is None or not sources:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    colours = palette(list(sources))
    order = nll_source_order()
    marker = {kind: KIND_MARKER[family] for _, kind, family in order}
    loose = []  # models whose NLL is an AIS that BDMC did not certify: drawn hollow
    for m, (key, kind) in sources.items():
        part = fin[fin["model"] == m]
        sl, sq = tables.stats(part, key), tables.stats(part, q)
        pairs = part[[key, q]].apply(pd.to_numeric, errors="coerce").dropna()
        ax.scatter(-pairs[key], pairs[q], s=9, color=colours[m], alpha=0.6, linewidths=0)
        ex, ey = tables.mean_stderr(sl), tables.mean_stderr(sq)
        hollow = tables.uncertified(part, key)
        loose += [m] if hollow else []
        ax.errorbar(-sl.mean, sq.mean, xerr=ex if math.isfinite(ex) else None,
                    yerr=ey if math.isfinite(ey) else None, fmt=marker[kind], color=colours[m],
                    markerfacecolor="none" if hollow else colours[m], capsize=2,
                    markersize=7 if kind == "exact" else 5,
                    label=f"{m} ({kind}{', not certified' if hollow else ''})")
    ax.set(xlabel="NLL, nats (lower is better)", ylabel=f"{glossary.label(q)} (lower is better)")
    ax.legend(fontsize=6, loc="best")
    kinds = sorted({k for _, k in sources.values()}, key=[k for _, k, _ in order].index)
    caption = (f"Sample quality ({glossary.label(q)}) against NLL for every model with both, "
               f"{len(sources)} in all: each model's NLL is the best estimate it has "
               f"({', '.join(kinds)}; ● own p(x|z), ■ shared family, ★ exact); small dots are seeds, "
               "bars standard errors. Own-model and shared-family NLLs are under different "
               "observation models, so compare them with care.")
    if loose:
        caption += (f" Hollow: an AIS that BDMC did not certify ({', '.join(loose)}), a lower bound "
                    "of unknown looseness, so its NLL may sit too far right.")
    missing = sorted(set(fin["model"]) - set(sources))
    if missing:
        caption += f" Not shown (no log-likelihood or no {glossary.label(q)}): {', '.join(missing)}."
    return save_small(fig, path), caption


def precision_recall(runs: pd.DataFrame, path: Path, space: str | None) -> Path | None:
    """Precision against recall per model (fidelity against diversity), seeds as dots, with
    the real-versus-real floor (train against test images) as a star: the best a model
    can be expected to reach."""
    fin = tables.in_space(tables.finished(runs), space)
    models = [m for m in tables.model_order(set(fin["model"]))
              if all(tables.stats(fin[fin["model"] == m], k) for k in ("precision", "recall"))]
    if not models:
        return None
    colours = palette(tables.model_order(set(fin["model"])))
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for m in models:
        part = fin[fin["model"] == m]
        pairs = part[["recall", "precision"]].apply(pd.to_numeric, errors="coerce").dropna()
        ax.scatter(pairs["recall"], pairs["precision"], s=9, color=colours[m], alpha=0.6, linewidths=0)
        sp, sr = tables.stats(part, "precision"), tables.stats(part, "recall")
        ep, er = tables.mean_stderr(sp), tables.mean_stderr(sr)
        ax.errorbar(sr.mean, sp.mean, xerr=er if math.isfinite(er) else None,
                    yerr=ep if math.isfinite(ep) else None, fmt="o", color=colours[m], capsize=2,
                    markersize=5, label=m)
    floor = tables.floor_from_metrics(fin)
    if "precision" in floor and "recall" in floor:
        ax.scatter([floor["recall"]], [floor["precision"]], marker="*", s=120, color="black",
                   label="real vs real (floor)", zorder=5)
    ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel="recall (diversity) ↑",
           ylabel="precision (fidelity) ↑")
    ax.legend(fontsize=6, loc="best")
    return save_small(fig, path)


def paired_keys() -> list[str]:
    """The comparisons a paired plot can show, in the order their metrics declare
    (``ResultKey.paired``): the first with two models wins."""
    return [k.name for k in sorted((k for k in glossary.estimators() if k.paired), key=lambda k: k.paired)]


def paired_images(runs: pd.DataFrame, path: Path) -> tuple[Path, str] | None:
    """The headline comparison image by image: log p(x) of the best model (A) against the
    runner-up (B) on the same test images, and the histogram of A - B, from per_image.json.
    Conditional models (log p(x|y)) are left out, as in the headlines. Returns the path and
    its caption, or None when no estimator has per-image values for two models."""
    fin = tables.finished(runs)
    pool = fin[~fin["conditional"].astype(bool)] if "conditional" in fin else fin
    for key in paired_keys():
        per = {m: p for m in tables.model_order(set(pool["model"]))
               if (p := tables.per_image(pool[pool["model"] == m], key))}
        if len(per) < 2:
            continue
        a, b = sorted(per, key=lambda m: -sum(per[m].values()) / len(per[m]))[:2]
        common = sorted(set(per[a]) & set(per[b]))
        if len(common) < 2:
            continue
        xa, xb = [per[a][i] for i in common], [per[b][i] for i in common]
        diff = tables.difference(pool, key, a, b)
        fig, (left, right) = plt.subplots(1, 2, figsize=(7.4, 3.2))
        left.scatter(xb, xa, s=6, alpha=0.5, linewidths=0)
        lo, hi = min(xa + xb), max(xa + xb)
        left.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
        left.set(xlabel=f"B: {glossary.label(key)} per image (nats)",
                 ylabel=f"A: {glossary.label(key)} per image (nats)")
        right.hist([u - v for u, v in zip(xa, xb, strict=True)], bins=30, color="tab:blue", alpha=0.8)
        right.axvline(0, color="grey", linewidth=0.8)
        right.set(xlabel="A - B per image (nats)", ylabel="images")
        fig.suptitle(f"A = {a},  B = {b}", fontsize=8)
        fig.tight_layout()
        caption = (f"{glossary.label(key)} of A = {a} against B = {b} on the same {len(common)} test "
                   "images (points above the diagonal favour A) and the histogram of A - B: the "
                   f"mean difference is {diff.text() if diff else '?'} nats, paired.")
        return save_small(fig, path), caption
    return None
