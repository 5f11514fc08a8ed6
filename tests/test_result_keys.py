"""A result key is declared once, beside its metric (registry.ResultKey), and every layer that
shows the number reads that declaration: the report (section, label, direction, glossary), the
closing table of `genbench run`, the API. The run folder keeps the declarations, so the report
labels a plugin's metric without the plugin."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import genbench
from genbench import registry
from genbench.registry import ResultKey, own_and_shared, register_metric

PLUGIN = textwrap.dedent('''
    """A sample-brightness metric: one file, its result key declared beside it."""
    import torch

    from genbench import register_metric
    from genbench.contract import sample_from
    from genbench.registry import ResultKey

    BRIGHTNESS = ResultKey(
        "sample_brightness", label="brightness", text="mean pixel of 64 samples",
        caveat="The mean pixel value of the model's samples: a toy plugin metric.",
        direction="higher", unit="fraction", section="Sample quality", stderr=True, headline=9,
        best_text="sample brightness")
    DARK = ResultKey(
        "sample_dark", label="any dark sample", caveat="1 if a sample's mean pixel is below 0.9.",
        flag=True, section="Brightness checks")
    TOY = ResultKey(
        "toy_loglik", label="toy bound", caveat="A toy lower bound on log p(x) under the own p(x|z).",
        direction="higher", unit="nats/image", section="Likelihood", estimates="log p(x)",
        kind="bound", stands_for=7, observation="own")


    @register_metric("brightness", needs={"sample"}, keys=(BRIGHTNESS, DARK, TOY), default=False)
    def brightness(ctx):
        with torch.no_grad():
            x = sample_from(ctx.model, 64, ctx.generator(7)).flatten(1).mean(1)
        return {"sample_brightness": float(x.mean()), "sample_brightness_stderr": float(x.std() / 8),
                "sample_dark": float(bool((x < 0.9).any())), "toy_loglik": -1000.0 * float(x.mean())}
''')


def _section(report: str, title: str) -> str:
    """The text of the report's ``### title`` section, up to the next heading."""
    return re.split(r"\n#{2,3} ", report.split(f"### {title}", 1)[1], maxsplit=1)[0]


def test_a_plugin_metric_is_labelled_directed_and_placed_from_its_declaration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genbench.cli import app
    from genbench.report.build import build_report

    plugins, results = tmp_path / "plugins", tmp_path / "results"
    plugins.mkdir()
    (plugins / "brightness.py").write_text(PLUGIN)
    out = CliRunner().invoke(app, ["run", "vae", "-d", "synthetic", "-p", "smoke", "--device", "cpu",
                                   "--metrics", "brightness", "--plugins", str(plugins),
                                   "--results", str(results)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "sample_brightness ↑" in out.output  # a headline column of the closing table, directed
    (run,) = results.glob("synthetic/vae/*")
    assert "sample_brightness" in (run / "result_keys.json").read_text()

    # the report, with the plugin gone: the declarations come from the run folders
    monkeypatch.delitem(registry.METRICS, "brightness")
    monkeypatch.setattr(registry, "_REMEMBERED", {})
    assert registry.result_key("sample_brightness") is None
    build_report(results, tmp_path / "report", galleries=False)
    report = (tmp_path / "report" / "report.md").read_text()
    quality = _section(report, "Sample quality")
    assert "brightness ↑" in quality  # labelled and directed, in the section it declares
    assert "brightness ↑" not in report.split("### Sample quality", 1)[0]
    assert "**brightness** (`sample_brightness`): The mean pixel value of the model's samples" in report
    # a flag in a section of its own, counted over seeds; a log-likelihood among the estimates
    checks = _section(report, "Brightness checks")
    assert "any dark sample" in checks and re.search(r"\| [01] of 1 \|", checks)
    assert "toy bound ↑" in _section(report, "Likelihood")
    other = _section(report, "Other recorded values") if "### Other recorded values" in report else ""
    assert "sample_dark" not in other and "toy_loglik" not in other
    from genbench.report import glossary, plots

    brightest = ("sample_brightness", "highest sample brightness", "sample_brightness")
    assert brightest in glossary.headline_sentences()
    assert ("toy_loglik", "toy bound", "own") in plots.estimators()
    assert ("toy_loglik", "own toy bound", "own") in plots.nll_source_order()
    df = genbench.load_results(results)
    toy = df[df["metric"] == "toy_loglik"].iloc[0]
    assert toy["observation"] == "own p(x|z)" and toy["nll"] == -toy["value"] and toy["higher_is_better"]


def test_own_and_shared_variants_come_from_one_declaration() -> None:
    own, shared = own_and_shared(ResultKey("test_thing", label="THING (paired)", direction="higher",
                                           section="Likelihood", converged="thing_converged", headline=2,
                                           estimates="log p(x)", certified="thing_certified",
                                           observation="model", stands_for=2, best_text="THING"),
                                 shared_caveat="Under the shared family.", shared_stands_for=4)
    assert shared.certified == "thing_certified_shared" and shared.observation == "shared"
    assert (own.family, shared.family) == ("own", "shared") and shared.stands_for == 4
    assert shared.best_text == "" and "thing_certified" in own.companions
    assert (shared.name, shared.label, shared.section) == ("test_thing_shared", "THING (shared, paired)",
                                                           registry.SHARED_SECTION)
    assert shared.converged == "thing_converged_shared" and shared.variant_of == "test_thing"
    assert shared.direction == own.direction and shared.headline == 0 and own.headline == 2
    assert ResultKey.from_json(shared.to_json()) == shared
    assert ResultKey.from_json({"name": "x", "direction": "sideways", "stderr": "yes"}) == ResultKey("x")
    assert ResultKey.from_json(["not", "a", "declaration"]) is None


def test_an_old_plugin_spelling_still_declares_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """``produces=`` and ``higher_is_better=`` (before ResultKey) become plain declarations."""
    monkeypatch.setattr(registry, "METRICS", dict(registry.METRICS))
    register_metric("oldstyle", produces={"old_score": "a score", "old_note": "a note"},
                    higher_is_better={"old_score": False})(lambda ctx: {})
    entry = registry.METRICS["oldstyle"]
    assert entry.produces == {"old_score": "a score", "old_note": "a note"}
    assert entry.higher_is_better == {"old_score": False}
    key = registry.result_key("old_score")
    assert key is not None and key.direction == "lower" and key.section == "" and key.text == "a score"
    assert registry.result_key("old_note").direction == "unranked"  # type: ignore[union-attr]


def test_every_built_in_key_the_report_shows_is_declared_beside_its_metric() -> None:
    """Every section's keys and the closing table come from declarations, each with a label and
    the bits/dim, stderr and convergence companions its metric writes."""
    from genbench.report import glossary

    declared = {k.name: k for k in glossary.headline_keys()}
    assert list(declared)[:4] == ["test_elbo", "test_iwae", "test_ais", "test_exact"]
    assert declared["test_ais"].converged == "ais_converged"
    assert declared["test_ais_shared"].converged == "ais_converged_shared"
    for section in glossary.SECTIONS:
        for name in section.keys:
            key = registry.result_key(name)
            assert key is not None and key.label and key.caveat and key.section == section.title, name
    assert glossary.direction("test_kl_term") is None and glossary.direction("edit_slope_thickness") is None
    assert glossary.label("edit_slope_thickness") == "thickness slope"
    estimates = set(glossary.log_likelihood_keys())
    assert {"test_elbo", "test_iwae", "test_ais", "test_exact", "parzen", "test_ais_shared"} <= estimates


def test_a_bad_result_keys_file_costs_labels_never_the_run(tmp_path: Path) -> None:
    """What genbench reads back is input: a corrupt result_keys.json is replaced, not fatal."""
    from genbench import store

    (tmp_path / store.RESULT_KEYS).write_text("{not json")
    assert store.read_result_keys(tmp_path) == []
    store.update_result_keys(tmp_path, [ResultKey("a", label="A").to_json()])
    store.update_result_keys(tmp_path, [ResultKey("b").to_json()])
    assert [ResultKey.from_json(d) for d in store.read_result_keys(tmp_path)] == [ResultKey("a", label="A"),
                                                                                  ResultKey("b")]


def test_every_key_the_likelihood_metrics_record_has_a_section() -> None:
    """The AIS, BDMC, pilot and inference-network bookkeeping is declared (not left to "Other
    recorded values"): each key these metrics record sits in a section, its flags counted."""
    import genbench.metrics  # noqa: F401 - registers the built-in metrics
    from genbench.report import glossary

    for name in ("iwae", "ais", "bdmc", "iwae_shared", "ais_shared", "bdmc_shared", "parzen", "exact"):
        for key in registry.METRICS[name].produces:
            declared = registry.result_key(key)
            if key.endswith("_bpd"):  # shown inside its log-likelihood's cell
                continue
            assert declared is not None and declared.section and declared.label, (name, key)
    flags = {k for s in glossary.SECTIONS for k in s.keys if glossary.is_flag(k)}
    assert {"ais_converged", "ais_certified_shared", "ais_pilot_stopped", "bdmc_shared_from_own"} <= flags
    assert glossary.declared("test_ais_shared").certified == "ais_certified_shared"
    assert not glossary.is_flag("ais_distributions") and not glossary.is_flag("test_ais")
