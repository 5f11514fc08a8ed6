"""``genbench report``: results/ -> report.md + index.html + small PNGs.

It reads only the store (config.json, metrics.json, history.csv, sample PNGs, and the
galleries drawn where the models were loaded); it never loads a checkpoint or trains. One
section per (dataset, variant, preset):
the unit inside which numbers are comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from genbench import store
from genbench.errors import GenbenchError
from genbench.report import configs, glossary, plots, tables
from genbench.report.document import (
    Bullets,
    Cell,
    Document,
    Heading,
    Image,
    Para,
    Table,
    contents,
    to_html,
    to_markdown,
)
from genbench.report.floors import floor_values

READING = (
    "How to read the tables: each cell is the mean ± standard deviation over seeds (the `seeds` "
    "column counts finished runs; `[n=2]` marks a metric measured on fewer of them); `(s.e. x)` "
    "is the estimator's own standard error, averaged over seeds; **bold** marks the models that "
    "could be the best of their column, a 95% confidence set stated under each table (↑ higher "
    "is better, ↓ lower); `n/a — reason` says which capability a model "
    "lacks; † marks a conditional model. Log-likelihoods are in nats per image (NLL = -value).")


@dataclass
class ReportSummary:
    out: Path
    runs: int
    groups: int
    failed: int
    seconds: float
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    superseded: list[tuple[str, str, str, str]] = field(default_factory=list)
    say: Callable[[str], None] = field(default=lambda _: None, repr=False)  # progress lines


def build_report(results: Path, out: Path, galleries: bool = True,
                 progress: Callable[[str], None] | None = None) -> ReportSummary:
    """Write ``out/report.md``, ``out/index.html`` and ``out/img/*.png`` from ``results``.

    Models are looked up in the registry (conditional or not, their descriptions): the caller
    loads the plugins first, as ``genbench report`` does. ``progress`` is told one line per
    group, table set, figure and gallery as each is made (a report takes a minute or two).
    """
    start = time.perf_counter()
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise GenbenchError(f"results folder {results} does not exist; run `genbench run ...` first "
                            "or pass --results DIR")
    df = tables.load(results)
    skipped = list(df.attrs.get("skipped", []))  # runs whose config/metrics.json is unreadable
    if df.empty:
        raise GenbenchError(f"no {'readable ' if skipped else ''}runs under {results} (expected "
                            f"{results}/<dataset>/<model>/<run>/config.json)"
                            + (f"; skipped {len(skipped)}: {skipped[0]}" if skipped else
                               "; run `genbench run ...` first"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        what = "is a file" if out.is_file() else f"cannot be created ({err.strerror or err})"
        raise GenbenchError(f"--out {out} {what}; pass a folder") from None
    doc = Document("genbench report")
    summary = ReportSummary(out, len(df), 0, int((df["status"] != "finished").sum()), 0.0)
    if progress is not None:
        summary.say = progress
    summary.superseded = list(df.attrs.get("superseded", []))
    if summary.superseded:
        summary.notes.append(f"{len(summary.superseded)} (configuration, seed) pair(s) were run more "
                             "than once: the newest run counts (see the report's 'Runs measured twice')")
    doc.add(Para(f"Made by `genbench report --results {results.as_posix()} --out {out.as_posix()}` "
                 f"on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {len(df)} runs."))
    if skipped:
        summary.notes += [f"skipped {len(skipped)} run(s) whose files are unreadable", *skipped]
        doc.add(Para(f"Skipped {len(skipped)} run(s) whose files could not be read:"),
                Bullets(tuple(skipped)))
    commands = run_commands(df)
    if commands:
        doc.add(Para("The runs were made by:"), Bullets(tuple(f"`{c}`" for c in commands)))
    doc.add(Para(READING), overview_table(df))
    opening = len(doc.blocks)
    keys = [k for k, _ in tables.groups(df)]
    for key, runs in tables.groups(df):
        summary.groups += 1
        summary.say(f"group {summary.groups}/{len(keys)}: {' · '.join(key)} ({len(runs)} runs)")
        add_group(doc, key, runs, results, out, galleries, summary)
    add_glossary(doc, df)
    doc.blocks.insert(opening, contents(doc))  # after the opening paragraphs and the runs table
    store.atomic_write_bytes(out / "report.md", to_markdown(doc).encode())
    store.atomic_write_bytes(out / "index.html", to_html(doc, out).encode())
    summary.seconds = time.perf_counter() - start
    return summary


def run_commands(df: pd.DataFrame) -> list[str]:
    """The distinct ``genbench run`` commands recorded in the runs' configs, in model order:
    what a reader types to make the same results folder again."""
    if "command" not in df:
        return []
    order = {m: i for i, m in enumerate(tables.model_order(set(df["model"])))}
    ranked = df.dropna(subset=["command"]).assign(rank=df["model"].map(order))
    ranked = ranked.sort_values(["rank", "command"])
    return list(dict.fromkeys(ranked["command"]))


def overview_table(df: pd.DataFrame) -> Table:
    counts = df.assign(ok=df["status"] == "finished").groupby(["dataset", "variant", "preset", "model"])
    rows = [[*(Cell(str(v)) for v in k), Cell(str(int(g["ok"].sum()))), Cell(str(int((~g["ok"]).sum())))]
            for k, g in counts]
    return Table(["dataset", "variant", "preset", "model", "finished", "not finished"], rows, "Runs found.")


def _slug(key: tables.GroupKey) -> str:
    """A folder name for a group: safe in a file system and in a markdown link."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in "-".join(key))


def add_group(doc: Document, key: tables.GroupKey, runs: pd.DataFrame, results: Path, out: Path,
              galleries: bool, summary: ReportSummary) -> None:
    dataset, variant, preset = key
    doc.add(Heading(2, f"{dataset} · {variant} · preset {preset}"))
    add_configurations(doc, key, runs, summary)
    if failures := tables.failures_table(runs):
        doc.add(Heading(3, "Runs that did not finish"), failures)
        add_failure_strips(doc, runs, out / "img" / _slug(key) / "failed", out, summary)
    if tables.finished(runs).empty:
        doc.add(Para("No finished runs in this group."))
        return
    space = tables.feature_spaces(tables.finished(runs))[0]
    floor = floor_values(tables.in_space(runs, space), results, dataset, variant, space)
    if lines := tables.headlines(runs, floor, space):
        doc.add(Bullets(tuple(lines)))
    started = time.perf_counter()
    add_tables(doc, key, runs, results)
    summary.say(f"  tables ({time.perf_counter() - started:.1f} s)")
    if notes := tables.sanity_notes(runs):
        doc.add(Heading(3, "Read with care"), Bullets(tuple(notes)))
    img = out / "img" / _slug(key)
    add_plots(doc, runs, img, out, summary)
    from genbench.report.compression import add_compression

    add_compression(doc, runs, img, out, summary.images)
    if galleries:
        from genbench.report.galleries import add_galleries

        add_galleries(doc, runs, results, img / "galleries", out, summary)


def add_configurations(doc: Document, key: tables.GroupKey, runs: pd.DataFrame,
                       summary: ReportSummary) -> None:
    """Say which rows are configurations of one model (and how they differ), and which runs
    were measured again and are not pooled as seeds."""
    rows = configs.differences_rows(runs) if configs.NAME in runs else []
    if rows:
        doc.add(Para("Some models ran in more than one configuration; each is its own row, pooled "
                     "over seeds only with runs of exactly the same settings. What differs:"),
                Table(["row", "resolved settings that differ"],
                      [[Cell(lab), Cell(diff)] for lab, diff in rows],
                      "Configurations of one model in this group."))
    notes = [n for *k, n in summary.superseded if tuple(k) == key]
    if notes:
        doc.add(Heading(3, "Runs measured twice"), Bullets(tuple(notes)))


def add_failure_strips(doc: Document, runs: pd.DataFrame, img: Path, out: Path,
                       summary: ReportSummary) -> None:
    """A failed run's fixed-noise grids up to its last epoch: what diverging looked like."""
    from genbench.report.epochs import progress_strip
    from genbench.report.galleries import folder_name

    for r in runs[runs["status"] == "failed"].itertuples():
        name = folder_name(f"{r.model}-{Path(r.run_dir).name}")
        path = progress_strip(Path(r.run_dir), store.inside(out, img / f"{name}.png", "an image path"))
        if path is not None:
            summary.images.append(path)
            doc.add(Image(path.relative_to(out), f"{r.model} seed {r.seed} (failed): its samples "
                          "epoch by epoch until it stopped.", zoom=2))


def add_tables(doc: Document, key: tables.GroupKey, runs: pd.DataFrame, results: Path) -> None:
    keys = tables.metric_keys(tables.finished(runs))
    known = {k for s in glossary.SECTIONS for k in s.columns(keys)}
    for section in glossary.SECTIONS:
        cols = section.columns(keys)
        if not cols:
            continue
        if section.title != "Sample quality":
            part = tables.trained(runs)  # outside samples have sample quality only
            part = given_y_beside_conditional(part) if section.title == glossary.GIVEN_Y else part
            if table := tables.comparison_table(part, cols, section.intro):
                doc.add(Heading(3, section.title), table)
            if section.title == "Likelihood" and (pub := tables.published_table(runs, key)):
                doc.add(pub)
            continue
        for space in tables.feature_spaces(tables.finished(runs)):
            sub = tables.in_space(runs, space)
            floor = floor_values(sub, results, key[0], key[1], space)
            intro = section.intro
            if space and not space.startswith("cnn"):  # a literature network, not the evaluator
                intro = (f"Measured in the features of {space.split(':')[0]} (the library's own "
                         "network and weights, as papers report; see the README), not the "
                         "evaluator classifier's; the real-versus-real floor row is the best a "
                         "metric can say.")
            if table := tables.comparison_table(sub, cols, intro, floor):
                where = f" — feature space `{space}`" if space else ""
                doc.add(Heading(3, f"Sample quality{where}"), table)
    from genbench.report.compression import owns

    extra = [k for k in keys if k not in known and not owns(k)]  # compression: its own section
    if extra and (table := tables.comparison_table(
            runs, extra, "Diagnostics recorded beside the standard metrics (not ranked).", rank=False)):
        doc.add(Heading(3, "Other recorded values"), table)
    if table := tables.comparison_table(runs, list(tables.COST), "What each run cost (this machine; "
                                        "times are wall-clock seconds).", rank=False):
        doc.add(Heading(3, "Cost"), table)


def given_y_beside_conditional(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a conditional model's (†) IWAE bound, already log p(x|y), in the
    ``test_iwae_given_y`` column too, so that JMVAE's log p(x|y) is read beside CVAE's."""
    cond = runs["conditional"].astype(bool) if "conditional" in runs else pd.Series(False, runs.index)
    runs = runs.copy()
    for suffix in ("", "_stderr", "_bpd", "_bpd_stderr"):
        src, dst = f"test_iwae{suffix}", f"test_iwae_given_y{suffix}"
        if src in runs:
            if dst not in runs:
                runs[dst] = float("nan")
            take = cond & runs[dst].isna()
            runs.loc[take, dst] = runs.loc[take, src]
    return runs


def add_plots(doc: Document, runs: pd.DataFrame, img: Path, out: Path, summary: ReportSummary) -> None:
    """The group's figures, each drawn lazily so that progress can name it as it is made."""
    known = {k for sec in glossary.SECTIONS for k in sec.keys}
    keys = [k for k in tables.metric_keys(tables.finished(runs))
            if k in known and glossary.direction(k) is not None]
    spaces = tables.feature_spaces(tables.finished(runs))
    quality = {k for s in glossary.SECTIONS if s.title == "Sample quality" for k in s.keys}
    single = keys if len(spaces) < 2 else [k for k in keys if k not in quality]
    def fig(name: str, draw: Callable[[], Path | None], caption: str) -> tuple[Path | None, str]:
        started = time.perf_counter()
        path = draw()
        if path is not None:
            summary.say(f"  figure {name} ({time.perf_counter() - started:.1f} s)")
        return path, caption

    made = [
        fig("metrics.png", lambda: plots.metric_panels(runs, single, img / "metrics.png"),
            "Each metric per model: the mean with an error bar of its standard error (over n seeds "
            "the larger of the seed spread and the estimators' s.e., over √n; one seed: its "
            "estimator's s.e.; none where neither is known), every seed a small dot beside it."),
        fig("curves.png", lambda: plots.training_curves(runs, img / "curves.png"),
            "Training curves from history.csv (mean over seeds, band = one s.d.): the ELBO's terms, "
            "the discriminator's and generator's losses."),
        fig("likelihood.png", lambda: plots.likelihood_estimators(runs, img / "likelihood.png"),
            "Every log-likelihood estimate per model, marked by kind: ★ exact, ● under the model's "
            "own p(x|z) (ELBO <= IWAE <= AIS should hold), ■ under the shared family (the only one "
            "a GAN has), × Parzen (not a bound); bars are standard errors, dots seeds; the BDMC "
            "gaps under each name say how far AIS may be from the truth."),
    ]
    started = time.perf_counter()
    if (pair := plots.paired_images(runs, img / "paired.png")) is not None:
        summary.say(f"  figure paired.png ({time.perf_counter() - started:.1f} s)")
        made.append(pair)
    for space in spaces:
        slug = "" if space is None else "_" + "".join(c if c.isalnum() or c in "-_" else "-" for c in space)
        started = time.perf_counter()
        if (plane := plots.quality_vs_nll(runs, img / f"quality_vs_nll{slug}.png", space)) is not None:
            summary.say(f"  figure quality_vs_nll{slug}.png ({time.perf_counter() - started:.1f} s)")
            made.append(plane)
        made.append(fig(f"precision_recall{slug}.png",
                        lambda s=space, g=slug: plots.precision_recall(
                            runs, img / f"precision_recall{g}.png", s),
                        "Precision (fidelity) against recall (diversity) per model: dots are seeds, "
                        "bars standard errors where known, ★ the real-versus-real floor (training "
                        "images against test images)."))
    made = [(p, c) for p, c in made if p is not None]
    if made:
        doc.add(Heading(3, "Plots"))
        for path, caption in made:
            summary.images.append(path)
            doc.add(Image(path.relative_to(out), caption))


def add_glossary(doc: Document, df: pd.DataFrame) -> None:
    fin = tables.finished(df)
    keys = tables.metric_keys(fin) if not fin.empty else []
    from genbench.report.compression import glossary_items, owns  # one entry for its many keys

    doc.add(Heading(2, "What the metrics say, and what they do not"),
            Bullets(tuple(f"**{glossary.label(k)}** (`{k}`): {glossary.metric_text(k)}" for k in keys
                          if not owns(k)) + glossary_items(keys)))
    from genbench.report.fooled import fooled_sentences

    if fooled := fooled_sentences(df):  # an adversary in the folder: what it fooled, from its numbers
        doc.add(*(Para(text) for text in fooled))
    items = []
    names = df[configs.NAME] if configs.NAME in df else df["model"]
    for m in tables.model_order(set(names)):
        runs = df[names == m]
        described = [d for d in runs.get("model_description", ()) if d]
        text = f"**{m}**: {glossary.model_text(m, described[0] if described else '')}"
        if bool(runs["conditional_model"].any()):
            text += f" († {glossary.CONDITIONAL_NOTE}.)"
        items.append(text)
    doc.add(Heading(2, "The models"), Bullets(tuple(items)))
