"""The model contract (genbench.contract), checked.

Every registered model passes `genbench check` (one training step, samples of the right
shape in [0, 1], each capability's output well-formed); the README's "Adding a model" code
block, run as a plugin, gets the likelihoods and reconstructions its capabilities allow;
every model attribute the core reads is declared in contract.HOOKS; automatic optimization
is the hand-written step; derived sample/generate are the hand-written ones bit for bit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from run_folders import bundled_models
from typer.testing import CliRunner

from genbench.check import check_model
from genbench.cli import app
from genbench.contract import (
    HOOK,
    HOOKS,
    Batch,
    capabilities,
    generate_from,
    missing_reason,
    optimizer_dict,
    sample_from,
    step_model,
)
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.metrics import EvalContext, evaluate_metrics
from genbench.plugins import load_folder, load_plugins
from genbench.presets import PRESETS, TRAINING_KEYS, get_preset
from genbench.registry import METRICS, MODELS, get_model
from genbench.settings import resolve

load_plugins()
ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    """The python code block of the README's "Adding a model" section, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Adding a model"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section shows one complete plugin"
    return blocks[0]


def _plugin(tmp_path: Path, code: str, name: str) -> type:
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.py").write_text(code)
    load_folder(folder)
    return get_model(re.search(r'@register_model\("([\w-]+)"\)', code).group(1)).cls


def _ctx(model: torch.nn.Module, variant: str) -> EvalContext:
    data = load_dataset(DataRequest("synthetic", variant=variant))
    return EvalContext(model=model.eval(), data=data, preset=get_preset("smoke"), seed=0,
                       device=torch.device("cpu"), cache_dir=Path("."))


def _trained(cls: type, variant: str = "continuous", steps: int = 20) -> torch.nn.Module:
    data = load_dataset(DataRequest("synthetic", variant=variant))
    config, _ = resolve(cls.Config, cls.presets, PRESETS["smoke"], {})
    torch.manual_seed(0)
    model = cls(config, data.info)
    opts = optimizer_dict(model.configure_optimizers())
    for _, batch in zip(range(steps), data.train_batches(32, seed=0, epoch=0), strict=False):
        step_model(model, batch, opts)
    return model


# -- every registered model -------------------------------------------------------------
@pytest.mark.parametrize("name", bundled_models())
def test_every_registered_model_passes_the_check(name: str) -> None:
    result = check_model(name)
    assert result.ok, result.problems
    assert "sample" in result.capabilities  # and check_model drew samples: shape, finite, [0, 1]
    assert any(line.startswith("sample:") for line in result.passed)
    assert result.stats and "train" in result.capabilities
    cls = MODELS[name].cls
    for hook in HOOKS:  # capabilities as declared: a hook the class has is a capability it has
        if hook.capability and not hook.required and not hook.attribute:
            assert (hook.capability in result.capabilities) >= callable(getattr(cls, hook.name, None))
    derived = {c for c in result.capabilities if c in ("generate", "sample")
               and not callable(getattr(cls, c, None))}
    assert derived == set(result.derived)
    assert [m for m, _ in result.metrics] == list(METRICS)


def test_every_model_attribute_the_core_reads_is_a_declared_hook() -> None:
    """contract.HOOKS is the one list: grep the core for what it reads off a model."""
    import io
    import tokenize

    read: dict[str, str] = {}
    for path in (ROOT / "genbench").rglob("*.py"):
        text = path.read_text()
        for name in re.findall(r'getattr\((?:\w+\.)?model, "(\w+)"', text):
            read.setdefault(name, str(path))
        # model.<attribute> in code, not in strings ("model.safetensors" is a file name)
        toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type in (tokenize.NAME, tokenize.OP)]
        for a, dot, b in zip(toks, toks[1:], toks[2:], strict=False):
            if (a.string, dot.string) == ("model", ".") and b.type == tokenize.NAME and b.string[0].isalpha():
                read.setdefault(b.string, str(path))
    module_api = set(dir(torch.nn.Module)) | {"training"}  # nn.Module's own attributes
    undeclared = {n: p for n, p in read.items() if n not in HOOK and n not in module_api}
    assert not undeclared, f"declare these in genbench.contract.HOOKS: {undeclared}"


# -- the README's plugin ----------------------------------------------------------------
@pytest.mark.parametrize("variant", ["continuous", "dynamic"])
def test_readme_plugin_gets_every_metric_its_capabilities_allow(tmp_path, variant) -> None:
    cls = _plugin(tmp_path, _readme_example(), "readme")
    result = check_model("linear-vae")
    assert result.ok, result.problems
    assert {"prior", "encode", "decode", "generate", "sample", "density_encoder"} <= result.capabilities
    will_get = {m for m, reason in result.metrics if reason is None}
    assert {"elbo", "iwae", "ais", "bdmc", "recon", "quality"} <= will_get
    values, na = evaluate_metrics(_ctx(_trained(cls, variant), variant),
                                 ["elbo", "iwae", "ais", "recon"])
    for key in ("test_elbo", "test_iwae", "test_ais", "recon_bce"):
        assert key in values and key not in na, na.get(key)
    assert values["test_elbo"] <= values["test_iwae"] + 3 * values["test_iwae_stderr"] + 1e-3


def test_every_value_a_metric_records_is_one_it_declares(tmp_path) -> None:
    """`genbench list metrics` lists each metric's ``produces``: every number the default
    metrics record for the README's plugin (standard errors aside) is declared there."""
    import dataclasses

    cls = _plugin(tmp_path, _readme_example(), "listed")
    ctx = dataclasses.replace(_ctx(_trained(cls), "continuous"), cache_dir=tmp_path / "cache")
    values, na = evaluate_metrics(ctx, [name for name, m in METRICS.items() if m.default])
    from genbench.registry import result_key

    declared = {key for m in METRICS.values() for key in m.produces}
    recorded = {k for k in (*values, *na) if not k.endswith("_stderr") and not k.startswith("_")}
    assert "floor_copied_fraction" in recorded and "test_ais" in recorded
    # a key of a declared family (compression_bits_<t>) is declared by its family
    undeclared = {k for k in recorded - declared if result_key(k) is None or not result_key(k).prefix}
    assert not undeclared, sorted(undeclared)


def test_readme_plugin_without_generate_gets_it_derived_from_decode(tmp_path) -> None:
    code = _readme_example()
    code = re.sub(r"    def generate\(self, z\):.*?\n\n", "", code, flags=re.S)
    code = code.replace('"linear-vae"', '"linear-vae-nogen"')
    assert "def generate" not in code
    cls = _plugin(tmp_path, code, "nogen")
    assert {"generate", "sample"} <= capabilities(cls)
    model = _trained(cls).eval()
    z = torch.randn(3, model.config.latent_dim)
    torch.testing.assert_close(generate_from(model, z), torch.sigmoid(model.logits(z)))
    values, na = evaluate_metrics(_ctx(model, "continuous"), ["iwae", "ais", "recon"])
    assert {"test_iwae", "test_ais", "recon_bce"} <= set(values), na


def test_generate_outside_unit_interval_is_named_by_check_and_na_in_evaluation(tmp_path) -> None:
    code = _readme_example().replace('"linear-vae"', '"linear-vae-wide"').replace(
        "return torch.sigmoid(self.logits(z))", "return 2 * torch.sigmoid(self.logits(z)) - 0.5")
    cls = _plugin(tmp_path, code, "wide")
    result = check_model("linear-vae-wide")
    assert any("leaves [0, 1]" in p for p in result.problems)
    values, na = evaluate_metrics(_ctx(_trained(cls), "continuous"), ["elbo", "recon"])
    assert "test_elbo" in values  # the metrics that do not read generate(z) still run
    assert "recon_bce" in na and "recon_bce" not in values


# -- the runner's side -----------------------------------------------------------------
def test_automatic_optimization_is_the_hand_written_step() -> None:
    data = load_dataset(DataRequest("synthetic"))
    cls = get_model("vae").cls
    config, _ = resolve(cls.Config, cls.presets, PRESETS["smoke"], {})
    torch.manual_seed(1)
    auto, hand = cls(config, data.info), cls(config, data.info)
    hand.load_state_dict(auto.state_dict())
    opts, opt = optimizer_dict(auto.configure_optimizers()), hand.configure_optimizers()
    for batch in list(data.train_batches(64, seed=0, epoch=0))[:3]:
        torch.manual_seed(7)
        stats = step_model(auto, batch, opts)
        torch.manual_seed(7)
        out = hand.training_step(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        assert not stats["loss"].requires_grad and torch.equal(stats["loss"], out["loss"].detach())
    for a, b in zip(auto.parameters(), hand.parameters(), strict=True):
        assert torch.equal(a, b)


class _Detached(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def training_step(self, batch):
        return {"loss": (self.w.sum() * 0).detach()}


def test_step_model_says_what_is_wrong_in_one_line() -> None:
    batch = Batch(x=torch.zeros(2, 1, 2, 2))
    model = _Detached()
    with pytest.raises(GenbenchError, match="'loss' carries gradients"):
        step_model(model, batch, optimizer_dict(model.configure_optimizers()))
    two = {"a": torch.optim.SGD(model.parameters(), lr=0.1), "b": torch.optim.SGD(model.parameters(), lr=0.1)}
    with pytest.raises(GenbenchError, match="manual_optimization = True"):
        step_model(model, batch, two)
    with pytest.raises(GenbenchError, match="must return an Optimizer"):
        optimizer_dict([torch.optim.SGD(model.parameters(), lr=0.1)])


def test_derived_sample_is_prior_then_generate_bit_for_bit() -> None:
    data = load_dataset(DataRequest("synthetic"))
    vae = get_model("vae").cls(get_model("vae").cls.Config(hidden=(16,), latent_dim=3), data.info)
    assert not hasattr(vae, "sample") and "sample" in capabilities(vae)
    x = sample_from(vae, 5, torch.Generator().manual_seed(4))
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(x, vae.generate(z))
    m2 = get_model("m2").cls(get_model("m2").cls.Config(hidden=(8,), classifier_hidden=(8,),
                                                       latent_dim=2), data.info)
    gen = torch.Generator().manual_seed(5)
    x = sample_from(m2, 4, gen)  # z ~ p(z), then y ~ p(y) from draw_labels, then the mean
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(4, 2, generator=gen)
    y = torch.randint(10, (4,), generator=gen)
    torch.testing.assert_close(x, m2.decode(z, y=y).mean, rtol=0, atol=0)


def test_na_reasons_name_the_hook_that_unlocks_the_metric() -> None:
    have = capabilities(get_model("gan").cls)
    assert missing_reason(frozenset({"encode", "generate"}), have) == \
        "no encoder: add encode(x) -> Distribution"
    assert "add log_prob(x)" in missing_reason(frozenset({"exact"}), have)
    assert missing_reason(frozenset({"sample", "prior"}), have) is None
    pixelcnn_like = frozenset({"train", "sample", "exact"})
    assert missing_reason(frozenset({"generate"}), pixelcnn_like) == \
        "no decoder: add generate(z) (or decode(z))"


# -- presets set training settings only --------------------------------------------------
@pytest.mark.parametrize("key", ["iwae_k", "ais_steps", "n_eval", "n_quality", "obs_val_n"])
def test_a_model_preset_cannot_set_an_evaluation_setting(key: str) -> None:
    cls = get_model("vae").cls
    with pytest.raises(TypeError, match=f"sets '{key}', an evaluation setting") as err:
        resolve(cls.Config, {"quick": {key: 5}}, PRESETS["quick"], {})
    assert isinstance(err.value, GenbenchError)  # `genbench run` says it in one line
    config, preset = resolve(cls.Config, {"quick": {"epochs": 3, "latent_dim": 2}},
                             PRESETS["quick"], {"iwae_k": "7"})  # the user may
    assert (preset.epochs, config.latent_dim, preset.iwae_k) == (3, 2, 7)
    assert set(TRAINING_KEYS) == {"epochs", "batch_size", "max_train"}


# -- the command -------------------------------------------------------------------------
def test_check_command_prints_capabilities_and_reasons() -> None:
    out = CliRunner().invoke(app, ["check", "gan"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "capabilities: generate, prior, sample (derived), train" in out.output
    assert "elbo" in out.output and "n/a — no encoder: add encode(x)" in out.output
    assert "quality         will get" in out.output


def test_check_command_bad_plugin_is_one_line(tmp_path) -> None:
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    out = CliRunner().invoke(app, ["check", "vae", "--plugins", str(tmp_path)],
                             env={"COLUMNS": "200"})
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert out.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), out.output
    assert "broken.py failed to import" in lines[0]


def test_a_checkpoint_of_an_older_model_version_is_one_line(tmp_path) -> None:
    """Runs saved before the models' optimizers became one (keys 'vae', 'ae', ...) do not
    resume silently wrong: the runner says the checkpoint does not fit."""
    from genbench.training import Progress, load_checkpoint, save_checkpoint

    data = load_dataset(DataRequest("synthetic"))
    cls = get_model("vae").cls
    model = cls(cls.Config(hidden=(8,), latent_dim=2), data.info)
    opt = model.configure_optimizers()
    save_checkpoint(tmp_path, model, {"vae": opt}, Progress())
    with pytest.raises(GenbenchError, match="does not fit this model.*--force"):
        load_checkpoint(tmp_path, model, optimizer_dict(opt))
    save_checkpoint(tmp_path, model, optimizer_dict(opt), Progress(epoch=2))
    assert load_checkpoint(tmp_path, model, optimizer_dict(opt)).epoch == 2
