"""Every likelihood under one named observation model, AIS that says whether it
converged, and comparisons with their uncertainty.

The probabilistic-PCA plugin (tests/ppca_plugin.py) has a closed form for everything: its
own Gaussian decoder, its exact posterior as the encoder, and the exact log p(x).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ppca_plugin import PPCA
from scipy.optimize import minimize_scalar
from torch.distributions import MultivariateNormal

from genbench.data import DataRequest, load_dataset
from genbench.metrics import evaluate_metrics
from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood import PER_IMAGE, load_per_image
from genbench.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")

OWN = ["elbo", "iwae", "ais", "bdmc"]
SHARED = ["iwae_shared", "ais_shared", "bdmc_shared"]


def _ctx(model, data, run_dir: Path | None = None, **overrides) -> EvalContext:
    preset = get_preset("smoke").with_overrides(**{"n_eval": 100, "iwae_k": 32, "ais_n": 16,
                                                   "ais_chains": 8, **overrides})
    return EvalContext(model=model, data=data, preset=preset, seed=0, device=torch.device("cpu"),
                       cache_dir=Path("."), run_dir=run_dir)


def test_ppca_one_row_under_its_own_observation_model(ppca, continuous, tmp_path):
    """ELBO <= IWAE within 0.05 nats of the exact log p(x); AIS (from the exact posterior) on
    the truth; all under the PPCA's own N(Wz + b, s^2 I); per-image values stored."""
    values, na = evaluate_metrics(_ctx(ppca, continuous, tmp_path), OWN)
    assert not na, na
    x = continuous.eval_x("test", 100)
    exact = ppca.log_px(x).double()
    assert abs(values["test_iwae"] - float(exact.mean())) < 0.05
    assert values["test_elbo"] <= values["test_iwae"] + 3 * values["test_elbo_stderr"]
    assert abs(values["test_elbo"] - float(exact.mean())) < 0.05 + 3 * values["test_elbo_stderr"]
    ais_exact = float(exact[:16].mean())
    assert abs(values["test_ais"] - ais_exact) < 0.05
    assert values["ais_converged"] == 1.0 and values["ais_from_encoder"] == 1.0
    assert values["ais_distributions"] == 40  # 20 and 40 distributions agreed
    assert abs(values["ais_minus_iwae"]) < 0.05
    assert abs(values["bdmc_gap"]) < 0.05 and math.isfinite(values["bdmc_gap_stderr"])
    # bits/dim of a density on [0, 1] pixels read as 8-bit data
    assert values["test_iwae_bpd"] == pytest.approx(-values["test_iwae"] / (784 * math.log(2)) + 8)
    # one float per test image, in test-image order
    per = load_per_image(tmp_path)
    assert (tmp_path / PER_IMAGE).exists() and sorted(per["test_iwae"]) == list(range(100))
    stored = torch.tensor([per["test_iwae"][i] for i in range(100)], dtype=torch.float64)
    assert float((stored - exact).abs().max()) < 0.05
    assert len(per["test_ais"]) == 16


def test_prior_started_ais_with_a_short_schedule_is_flagged_not_converged(ppca, continuous):
    values, _ = evaluate_metrics(_ctx(ppca, continuous, ais_init="prior", ais_steps=5,
                                      ais_max_steps=10), ["ais"])
    exact = float(ppca.log_px(continuous.eval_x("test", 16)).mean())
    assert values["ais_from_encoder"] == 0.0
    assert values["ais_converged"] == 0.0 and values["ais_distributions"] == 10
    assert values["test_ais"] < exact - 5  # far from the truth, and it says so
    # a schedule that cannot double is never called converged, even from the exact posterior
    alone, _ = evaluate_metrics(_ctx(ppca, continuous, ais_steps=20, ais_max_steps=20), ["ais"])
    assert alone["ais_converged"] == 0.0


def test_shared_family_sigma_is_the_maximum_likelihood_sigma(ppca, continuous):
    """The shared spherical Gaussian around Wz + b is PPCA with another s: its validation
    maximum-likelihood s, found by the bounded optimizer, within 2% of the exact one."""
    ctx = _ctx(ppca, continuous, obs_val_n=100)
    values, na = evaluate_metrics(ctx, SHARED)
    assert not na, na
    xv = continuous.eval_x("val", 100).flatten(1).double()
    w, b = ppca.W.double(), ppca.b.double()

    def nll(log_s: float) -> float:
        cov = w @ w.T + math.exp(2 * log_s) * torch.eye(784, dtype=torch.float64)
        return -float(MultivariateNormal(b, cov).log_prob(xv).mean())

    ml = math.exp(minimize_scalar(nll, bounds=(math.log(0.01), 0.0), method="bounded",
                                  options={"xatol": 1e-6}).x)
    assert values["obs_sigma"] == pytest.approx(ml, rel=0.02)
    assert values["obs_sigma"] not in (0.03 * 1.5**i for i in range(8))  # no grid
    # and the shared-family numbers are log-likelihoods of that PPCA
    test = continuous.eval_x("test", 100).flatten(1).double()
    cov = w @ w.T + values["obs_sigma"] ** 2 * torch.eye(784, dtype=torch.float64)
    exact_shared = float(MultivariateNormal(b, cov).log_prob(test).mean())
    assert abs(values["test_iwae_shared"] - exact_shared) < 0.5


def test_a_density_is_never_scored_as_a_probability(continuous):
    """A Gaussian decoder on binarized pixels, or a Bernoulli decoder on continuous ones:
    n/a with the reason on the own-model columns; the shared family still scores them."""
    from models.vae import VAE

    binary = load_dataset(DataRequest("synthetic", variant="dynamic"))
    gaussian_on_binary = PPCA(PPCA.Config(latent_dim=3), continuous.info)  # decoder: a density
    gaussian_on_binary.fit(binary.eval_x("train"))
    values, na = evaluate_metrics(_ctx(gaussian_on_binary.eval(), binary), OWN + ["iwae_shared"])
    for key in ("test_elbo", "test_iwae", "test_ais", "bdmc_gap"):
        assert "density, not a probability" in na[key], key
    assert "obs_flip" in values and values["test_iwae_shared"] < 0  # a log-probability

    torch.manual_seed(0)
    bernoulli_on_continuous = VAE(VAE.Config(hidden=(16,), latent_dim=4), binary.info).eval()
    _, na = evaluate_metrics(_ctx(bernoulli_on_continuous, continuous), ["elbo", "iwae"])
    assert "no density" in na["test_elbo"] and "no density" in na["test_iwae"]


# -- the report: differences with their uncertainty ------------------------------------------

def _write_run(root: Path, model: str, metrics: dict, per_image: dict | None = None, seed: int = 0) -> Path:
    import json

    folder = root / "synthetic" / model / f"quick-continuous-seed{seed}-abc123"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model": model, "model_config": {"latent_dim": 5}, "seed": seed, "preset": {"name": "quick"},
        "dataset": {"name": "synthetic", "variant": "continuous"}}))
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", **metrics}))
    if per_image:
        (folder / PER_IMAGE).write_text(json.dumps(
            {k: {"split": "test", "indices": list(range(len(v))), "values": list(v)}
             for k, v in per_image.items()}))
    return folder


def test_a_short_ais_run_is_flagged_and_never_bold(ppca, continuous, tmp_path):
    """End to end: the PPCA evaluated with a deliberately short prior-started AIS gets
    ais_converged = 0; in the table its AIS is flagged and not bold even though the other
    model's is lower, and no headline names it."""
    from genbench.report import tables
    from genbench.store import update_metrics

    short = tmp_path / "short"
    short.mkdir()
    values, _ = evaluate_metrics(_ctx(ppca, continuous, short, ais_init="prior", ais_steps=5,
                                      ais_max_steps=10), ["ais"])
    assert values["ais_converged"] == 0.0
    root = tmp_path / "results"
    run = _write_run(root, "ppca", {})
    update_metrics(run, values)
    (run / PER_IMAGE).write_text((short / PER_IMAGE).read_text())
    # a second model whose (converged) AIS is worse than the unconverged one
    lower = values["test_ais"] - 50
    _write_run(root, "other", {"test_ais": lower, "test_ais_stderr": 1.0, "ais_converged": 1.0})
    df = tables.load(root)
    table = tables.comparison_table(df, ["test_ais"])
    rows = {r[0].text: r for r in table.rows}
    assert "not converged" in rows["ppca"][2].text and not rows["ppca"][2].best
    assert "not converged" in table.caption
    lines = tables.headlines(df)
    assert not any("**ppca**" in line for line in lines)
    assert any("did not converge for ppca" in line for line in lines)
    assert any("One seed per model" in line for line in lines)


def test_bold_only_beyond_the_paired_uncertainty(tmp_path):
    """Per-image estimates make a 3-nat difference sharp (paired s.e. ~0.1) although each
    model's own s.e. over images is 10 nats; a difference inside the noise is called
    indistinguishable and nothing is bold."""
    from genbench.report import tables

    gen = torch.Generator().manual_seed(0)
    base = 100 + 30 * torch.randn(100, generator=gen, dtype=torch.float64)  # images differ a lot
    a = base + 0.3 * torch.randn(100, generator=gen, dtype=torch.float64)
    b = base - 3 + 0.3 * torch.randn(100, generator=gen, dtype=torch.float64)
    c = base - 3 + 5 * torch.randn(100, generator=gen, dtype=torch.float64)  # = b within noise
    root = tmp_path / "results"
    for name, v in (("a", a), ("b", b), ("c", c)):
        se = float(v.std() / 10)
        _write_run(root, name, {"test_iwae": float(v.mean()), "test_iwae_stderr": se,
                                "test_elbo": float(v.mean()) - 5, "test_elbo_stderr": se},
                   {"test_iwae": v.tolist()})
    df = tables.load(root)
    diff = tables.difference(df, "test_iwae", "a", "b")
    assert diff.paired_images == 100 and diff.value == pytest.approx(3, abs=0.2) and diff.stderr < 0.1
    unpaired = tables.difference(df, "test_elbo", "a", "b")  # no per-image ELBO stored
    assert unpaired.paired_images == 0 and unpaired.stderr > 3 and not unpaired.significant()
    table = tables.comparison_table(df, ["test_iwae", "test_elbo"])
    bold = {(r[0].text, i) for r in table.rows for i, c in enumerate(r) if c.best}
    assert bold == {("a", 2)}  # IWAE: a beyond b and c; ELBO: nobody stands out
    lines = tables.headlines(df)
    assert any(line.startswith("Highest IWAE bound (own p(x|z)): **a**") and "paired on 100 test images"
               in line for line in lines)
    # b against c alone: indistinguishable, nothing bold
    two = df[df["model"] != "a"]
    assert not any(c.best for r in tables.comparison_table(two, ["test_iwae"]).rows for c in r)
    assert any("indistinguishable" in line for line in tables.headlines(two))


def test_a_lone_exact_likelihood_is_set_beside_the_best_bound_of_the_others(tmp_path):
    """One model with an exact log p(x) among models with bounds: the headlines say where it
    stands against the best IWAE bound of the others, paired on the same images, rather
    than naming the best AIS as "highest log-likelihood" and leaving the exact model out."""
    from genbench.report import tables

    gen = torch.Generator().manual_seed(1)
    base = -100 + 20 * torch.randn(50, generator=gen, dtype=torch.float64)
    exact = base + 4 + 0.5 * torch.randn(50, generator=gen, dtype=torch.float64)
    root = tmp_path / "results"
    no_encoder = "no encoder: add encode(x) -> Distribution"
    _write_run(root, "pix", {"test_exact": float(exact.mean()), "test_exact_stderr": 2.8,
                             "not_applicable": {"test_iwae": no_encoder, "test_elbo": no_encoder}},
               {"test_exact": exact.tolist()})
    for name, shift in (("good", 0.0), ("worse", -9.0)):
        v = base + shift
        _write_run(root, name, {"test_iwae": float(v.mean()), "test_iwae_stderr": 2.8,
                                "test_elbo": float(v.mean()) - 5, "test_elbo_stderr": 2.8},
                   {"test_iwae": v.tolist()})
    df = tables.load(root)
    line = tables.exact_beside_bounds(df)
    assert line.startswith("Exact log-likelihood: pix at") and "(good," in line
    assert "paired on 50 test images" in line and "most it can lead by" in line
    diff = tables.difference(df, "test_exact", "pix", "good", key_b="test_iwae")
    assert diff.value == pytest.approx(float((exact - base).mean()), abs=1e-9) and diff.stderr < 0.1
    assert line in tables.headlines(df)
    # the repeated n/a reason along a row is said once
    table = tables.comparison_table(df, ["test_exact", "test_iwae", "test_elbo"])
    texts = [c.text for c in {r[0].text: r for r in table.rows}["pix"][2:]]
    assert texts[0].startswith("-") and texts[1] == f"n/a — {no_encoder}"
    assert texts[2] == "n/a (same reason)"


def test_nothing_is_bold_where_a_difference_has_no_known_uncertainty(tmp_path):
    """Recall has no standard error; with one seed per model the uncertainty of every
    difference is unknown, so no recall is bold (before, every such model joined the 'top
    group' and the worst recall of the column was bold). A second seed gives a spread, and
    then a clear winner is bold again."""
    from genbench.report import tables

    root = tmp_path / "results"
    for name, recall in (("a", 0.53), ("b", 0.21), ("c", 0.014)):
        _write_run(root, name, {"recall": recall})
    _write_run(root, "b", {"recall": 0.20}, seed=1)  # b alone has a spread: clearly below a
    table = tables.comparison_table(tables.load(root), ["recall"])
    assert not any(c.best for r in table.rows for c in r)  # c's difference is unknown
    for name, recall in (("a", 0.54), ("c", 0.015)):
        _write_run(root, name, {"recall": recall}, seed=1)
    table = tables.comparison_table(tables.load(root), ["recall"])
    assert {r[0].text for r in table.rows if any(c.best for c in r)} == {"a"}


# -- memorization ------------------------------------------------------------------------------

def test_copy_flags_match_brute_force_and_catch_a_copying_model():
    from genbench.metrics.memorization import binomial, copy_flags

    gen = torch.Generator().manual_seed(0)
    train = torch.randn(300, 8, generator=gen)
    fresh = torch.randn(300, 8, generator=gen)
    flags = copy_flags(fresh, train)
    d = torch.cdist(train, train) + torch.diag(torch.full((300,), math.inf))
    radius = d.min(1).values
    ds = torch.cdist(fresh, train)
    j = ds.argmin(1)
    assert torch.equal(flags, ds.min(1).values < radius[j])
    floor, _ = binomial(flags)
    # near-copies of training images (a memorizing model) are all flagged; fresh draws at the floor
    copies = train[:200] + 1e-3 * torch.randn(200, 8, generator=gen)
    copied, se = binomial(copy_flags(copies, train))
    assert copied == 1.0 and 0.05 < floor < 0.8
    more_fresh, _ = binomial(copy_flags(torch.randn(300, 8, generator=gen), train))
    assert abs(more_fresh - floor) < 0.15


class _Copier(torch.nn.Module):
    """A 'model' whose samples are its training images: memorization at its worst."""

    def __init__(self, train: torch.Tensor) -> None:
        super().__init__()
        self.train_x = train

    def sample(self, n, generator=None):
        pick = torch.randint(self.train_x.shape[0], (n,), generator=generator)
        return self.train_x[pick]


def test_memorization_metric_flags_a_model_that_copies_its_training_set(tmp_path):
    from genbench.metrics.features import default_cache_dir, mean_images

    data = load_dataset(DataRequest("synthetic"))
    train = mean_images(data.train.x, data.info.variant)  # the training images as features see them
    ctx = EvalContext(model=_Copier(train), data=data, preset=get_preset("smoke"), seed=0,
                      device=torch.device("cpu"), cache_dir=default_cache_dir())
    values, na = evaluate_metrics(ctx, ["memorization"])
    assert not na, na
    assert values["copied_fraction"] == 1.0 and values["floor_copied_fraction"] < 0.9
    assert values["copied_excess"] > 5 * values["copied_excess_stderr"]


def test_copies_gallery_pairs_samples_with_their_nearest_training_images(tmp_path):
    from PIL import Image
    from run_folders import make_vae_run

    from genbench.galleries import render

    run = make_vae_run(tmp_path / "synthetic" / "vae" / "smoke-dynamic-seed0-x", steps=5)
    out = render(run, "copies", tmp_path / "copies.png", n=4, pool=64)
    width, height = Image.open(out).size
    assert width == height == 4 * (28 + 2) + 2  # 4 rows of 2 (sample, training image) pairs


def test_fid_bootstrap_spread_matches_fresh_sample_sets():
    """The bootstrap standard error over generated features is the spread FID shows over
    fresh sample sets of the same size (within sampling error), and shrinks with n."""
    from genbench.metrics.bootstrap import fid_bootstrap
    from genbench.metrics.frechet import fid_features_to_statistics, fid_statistics_to_metric

    gen = torch.Generator().manual_seed(0)
    d = 8
    real = torch.randn(4000, d, generator=gen, dtype=torch.float64)
    shift = torch.full((d,), 0.3, dtype=torch.float64)

    def fresh(n):
        return torch.randn(n, d, generator=gen, dtype=torch.float64) * 1.2 + shift

    real_stats = fid_features_to_statistics(real)
    for n in (200, 800):
        truth = torch.tensor([fid_statistics_to_metric(fid_features_to_statistics(fresh(n)), real_stats)
                              for _ in range(60)], dtype=torch.float64).std()
        se, reps = fid_bootstrap(fresh(n), real, generator=gen, draws=200)
        assert len(reps) == 200 and 0.6 < se / float(truth) < 1.6, (n, se, float(truth))
        if n == 200:
            small = se
    assert se < 0.75 * small  # 4x the samples: about half the spread
    # each replicate is genbench's FID of the resampled set
    x = fresh(300)
    _, one = fid_bootstrap(x, real, generator=torch.Generator().manual_seed(5), draws=1)
    idx = torch.randint(300, (300,), generator=torch.Generator().manual_seed(5))
    expected = fid_statistics_to_metric(fid_features_to_statistics(x[idx]), real_stats)
    assert float(one[0]) == pytest.approx(expected, rel=1e-8, abs=1e-10)
