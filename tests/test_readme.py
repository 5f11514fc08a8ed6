"""The README's commands stay true.

Every `genbench ...` line of its bash blocks parses as the command line would parse it (the
subcommand, each option and its type) and names what exists (models, datasets, presets,
metrics, gallery kinds, --set keys); every `genbench ...` span in its prose names a subcommand
and options that exist. The bash blocks marked `<!-- readme-example: NAME ... -->` run as
written at smoke scale (tests/test_api.py and tests/test_contract.py run its python blocks).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genbench.cli import app
from genbench.errors import GenbenchError
from genbench.galleries import GALLERIES
from genbench.plugins import load_folder, load_plugins
from genbench.presets import PRESETS
from genbench.registry import DATASETS, MODELS, get_metric
from genbench.settings import resolve

pytestmark = pytest.mark.usefixtures("one_thread")
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
COMMANDS = typer.main.get_command(app).commands


def _plugin_code() -> str:
    """The python block of "Adding a model" (the plugin the README's commands name)."""
    section = README[README.index("## Adding a model"):]
    section = section[: section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def _block_lines(block: str) -> list[str]:
    """The `genbench` command lines of a bash block: continuations joined, comments dropped,
    a leading `pip install ... &&` cut off."""
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if "genbench " in line and not line.startswith("#"):
            lines.append(line[line.index("genbench "):])
    return lines


def _bash_commands() -> list[str]:
    return [c for b in re.findall(r"```bash\n(.*?)```", README, re.S) for c in _block_lines(b)]


def _marked_block(name: str) -> list[str]:
    after = README.split(f"<!-- readme-example: {name}", 1)[1]
    return _block_lines(after.split("```bash\n", 1)[1].split("```", 1)[0])


def _placeholder(word: str) -> bool:
    return "<" in word or word.isupper() or "_RUN_DIR" in word


def test_the_readme_shows_commands() -> None:
    assert len(_bash_commands()) > 25


@pytest.mark.parametrize("line", _bash_commands())
def test_every_readme_command_parses_and_names_what_exists(line: str, tmp_path: Path) -> None:
    plugin = tmp_path / "my_plugins"
    plugin.mkdir()
    (plugin / "linear_vae.py").write_text(_plugin_code())
    load_plugins()
    load_folder(plugin)  # the README's own model, as `--plugins ./my_plugins` loads it
    words = shlex.split(line)
    assert words[0] == "genbench" and words[1] in COMMANDS, line
    ctx = COMMANDS[words[1]].make_context(words[1], words[2:])  # unknown options, bad types raise
    p = ctx.params
    models = [m for m in p.get("models") or [p.get("model")] if m and not _placeholder(m)]
    for name in models:
        assert name in MODELS, f"{line}: no model {name!r}"
    dataset = p.get("dataset")
    if dataset and not _placeholder(dataset):
        assert dataset in DATASETS, f"{line}: no dataset {dataset!r}"
    if isinstance(p.get("preset"), str):
        assert p["preset"] in PRESETS, line
    for metric in (p.get("metrics") or "").split(","):
        if metric:
            get_metric(metric)
    if words[1] == "gallery" and p.get("kind"):
        assert p["kind"] in GALLERIES, line
    for item in p.get("set_") or p.get("set") or []:
        key, value = item.split("=", 1)
        fits = 0
        for name in models:
            cls = MODELS[name].cls
            try:
                resolve(cls.Config, getattr(cls, "presets", {}), PRESETS["quick"], {key: value})
                fits += 1
            except GenbenchError:
                pass
        if not models and words[1] == "score":  # outside samples: preset settings only
            from genbench.scoring import PresetOnly

            resolve(PresetOnly, {}, PRESETS["quick"], {key: value})
            fits = 1
        assert fits, f"{line}: no named model takes --set {item}"


def test_every_genbench_span_in_the_prose_names_real_options() -> None:
    prose = re.sub(r"```.*?```", "", README, flags=re.S).replace("\n", " ")
    spans = re.findall(r"`(genbench +[^`]*)`", prose)
    assert len(spans) > 10
    for span in spans:
        words = span.split()
        assert words[1] in COMMANDS, span
        names = {"--help", *(n for p in COMMANDS[words[1]].params for n in (*p.opts, *p.secondary_opts))}
        for word in words[2:]:
            flag = word.strip("[]").split("=")[0]
            if flag.startswith("-"):
                assert flag in names, f"`{span}`: genbench {words[1]} has no {flag}"
    every = {"--help", *(n for c in COMMANDS.values() for p in c.params
                         for n in (*p.opts, *p.secondary_opts))}
    alone = {flag for span in re.findall(r"`([^`]*)`", prose)  # `--force`, `--kind pyramid`
             if not span.startswith(("genbench", "pip", "python", "apt"))
             for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", span)}
    assert len(alone) > 10 and alone <= every, sorted(alone - every)


def test_the_plugin_gallery_and_export_blocks_run_as_written(tmp_path: Path, monkeypatch) -> None:
    """"Adding a model"'s commands in a folder whose my_plugins/ holds that section's plugin;
    then the gallery lines of "Reports and galleries" on the run they made (RUN_DIR), and the
    export block on its results folder."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Path("my_plugins").mkdir()
    Path("my_plugins/linear_vae.py").write_text(_plugin_code())
    runner = CliRunner()
    for line in _marked_block("plugin-commands"):
        res = runner.invoke(app, shlex.split(line)[1:], env={"COLUMNS": "200"})
        assert res.exit_code == 0, f"{line}\n{res.output}"
    (run_dir,) = Path("results/mnist-5k/linear-vae").iterdir()
    assert (run_dir / "metrics.json").exists() and "test_iwae" in (run_dir / "metrics.json").read_text()
    galleries = [c for c in _marked_block("galleries") if c.startswith("genbench gallery")]
    assert len(galleries) == 2
    for line in galleries:
        res = runner.invoke(app, shlex.split(line.replace("RUN_DIR", str(run_dir)))[1:])
        assert res.exit_code == 0, f"{line}\n{res.output}"
        kind = line.split("--kind ")[1].split()[0]
        assert Image.open(run_dir / f"gallery_{kind}.png").size[0] > 28
    for line in _marked_block("export"):
        res = runner.invoke(app, shlex.split(line)[1:])
        assert res.exit_code == 0, f"{line}\n{res.output}"
    assert Path("results/results.csv").stat().st_size > 0 and Path("runs.parquet").stat().st_size > 0


def test_the_metric_names_of_the_metrics_section_are_recorded_names() -> None:
    """Each **name** and `name` of "Metrics" (sample quality included) is a metric a run
    records (or its standard error), a metric group for --metrics, a preset setting or a hook."""
    import genbench.metrics  # noqa: F401  (registers the metrics)
    from genbench.contract import HOOKS
    from genbench.presets import PRESET_KEYS
    from genbench.registry import METRICS

    section = README[README.index("## Metrics"):README.index("## Reports and galleries")]
    names = set(re.findall(r"\*\*([a-z][a-z0-9_]+)\*\*", section))
    names |= set(re.findall(r"`([a-z][a-z0-9_]+)`", section))
    produced = {k for m in METRICS.values() for k in m.produces}
    known = (produced | {f"{k}_stderr" for k in produced} | set(METRICS) | set(PRESET_KEYS)
             | set(PRESETS) | {h.name for h in HOOKS} | {"joint"})
    assert {"fid", "test_ais", "copied_excess", "test_iwae_given_y"} <= names
    assert names <= known, sorted(names - known)
