"""Seaborn plots for the report: small PNGs, one function per figure.

Each function takes a group's runs (one dataset, variant and preset) and returns the path
it wrote, or None when there is nothing to draw. Figures are saved at a low dpi and
quantized to a 256-colour palette so a committed reference report stays small.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from genbench.figures import save_figure  # noqa: E402
from genbench.report import glossary, tables  # noqa: E402
from genbench.store import HISTORY  # noqa: E402

DPI = 72
HISTORY_SKIP = {"epoch", "seconds", "images_per_s", "step", "steps", "time", "lr"}
LIKELIHOOD = ("test_elbo", "test_iwae", "test_ais", "parzen")

sns.set_theme(style="whitegrid", context="paper")


def save_small(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    """Save at the report's dpi as a palette PNG (see :func:`genbench.figures.save_figure`)."""
    return save_figure(fig, path, dpi=DPI, tight=tight)


def palette(models: list[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per model, the same in every figure of a group."""
    return dict(zip(models, sns.color_palette("tab10", len(models)), strict=True))


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


def metric_panels(runs: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Each metric per model, mean with seed standard-deviation error bars.

    Drawn with matplotlib's errorbar from a pandas groupby: seaborn's catplot costs ~20x more
    for the same picture, and the report should take seconds.
    """
    df = long_metrics(runs, keys)
    if df.empty:
        return None
    order = tables.model_order(set(df["model"]))
    colours = palette(order)
    stats = df.groupby(["metric", "model"])["value"].agg(["mean", "std"]).reset_index()
    metrics = list(dict.fromkeys(df["metric"]))  # first-seen order = the tables' order
    fig, axes = _grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        part = stats[stats["metric"] == metric].set_index("model")
        for x, model in enumerate(order):
            if model in part.index:
                row = part.loc[model]
                ax.errorbar(x, row["mean"], yerr=0 if pd.isna(row["std"]) else row["std"], fmt="o",
                            color=colours[model], capsize=3)
        ax.set_xticks(range(len(order)), order, rotation=45, fontsize=7)
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_title(metric, fontsize=8)
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


def likelihood_estimators(runs: pd.DataFrame, path: Path) -> Path | None:
    """ELBO <= IWAE <= AIS (and Parzen) side by side per model; BDMC gap under each name."""
    df = long_metrics(runs, list(LIKELIHOOD))
    if df.empty:
        return None
    fin = tables.finished(runs)
    order = tables.model_order(set(df["model"]))
    names = []
    for m in order:
        s = tables.stats(fin[fin["model"] == m], "bdmc_gap")
        label = tables.model_label(m, fin)  # † conditional: log p(x | y)
        names.append(f"{label}\nBDMC {tables.fmt_number(s.mean)}" if s else label)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(order), 3))
    sns.pointplot(df, x="model", y="value", hue="metric", order=order, errorbar="sd",
                  dodge=0.4 if df["metric"].nunique() > 1 else False,
                  capsize=0.1, linestyle="none", ax=ax)
    ax.set_xticks(range(len(order)), names)
    ax.set(xlabel="", ylabel="log p(x), nats (higher is better)")
    ax.legend(title="", fontsize=7)
    return save_small(fig, path)


def quality_vs_nll(runs: pd.DataFrame, path: Path, space: str | None) -> Path | None:
    """Sample quality (FID, else KID) against NLL, one point per run: the survey's trade-off."""
    fin = tables.in_space(tables.finished(runs), space)
    ll = next((k for k in ("test_ais", "test_iwae", "test_elbo") if k in fin and fin[k].notna().any()), None)
    q = next((k for k in ("fid", "kid") if k in fin and fin[k].notna().any()), None)
    if ll is None or q is None:
        return None
    df = pd.DataFrame({"model": fin["model"], "NLL": -pd.to_numeric(fin[ll], errors="coerce"),
                       q: pd.to_numeric(fin[q], errors="coerce")}).dropna()
    if df.empty:
        return None
    fig, ax = plt.subplots(figsize=(4, 3))
    order = tables.model_order(set(df["model"]))
    sns.scatterplot(df, x="NLL", y=q, hue="model", hue_order=order, palette=palette(order), s=50, ax=ax)
    ax.set(xlabel=f"NLL from {glossary.label(ll)} (nats, lower is better)",
           ylabel=f"{glossary.label(q)} (lower is better)")
    ax.legend(fontsize=7)
    return save_small(fig, path)
