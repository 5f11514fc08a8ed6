"""Each AIS number certified by BDMC, converged without a certificate, or not converged; the
pilot that stops early what cannot be certified; no likelihood computed twice.

The probabilistic-PCA plugin (tests/ppca_plugin.py) knows its exact log p(x), so a certified
number can be checked against the truth and a sharp posterior built on purpose.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from ppca_plugin import PPCA

from genbench.data import DataRequest, load_dataset
from genbench.metrics import evaluate_metrics
from genbench.metrics.ais import HMCConfig, pooled_estimate
from genbench.metrics.bdmc import bdmc, bdmc_until_certified, rounds
from genbench.metrics.certify import (
    AISRun,
    Pilot,
    decay_exponent,
    gap_floor,
    hopeless,
    needed_distributions,
    pilot_schedules,
    pilot_verdict,
    schedule_past,
)
from genbench.metrics.context import EvalContext, MetricResult
from genbench.metrics.likelihood import load_per_image
from genbench.metrics.obsmodel import FLIP_BOUNDS, ObservationModel
from genbench.metrics.runner import requested_metrics
from genbench.presets import get_preset
from genbench.registry import METRICS, register_metric
from genbench.report import tables
from models.vae import VAE

pytestmark = pytest.mark.usefixtures("one_thread")

GAUSS = ObservationModel("decoder")


@pytest.fixture(scope="module")
def sharp(continuous):
    """PPCA with 20x smaller noise: a posterior 20x narrower than the prior in every
    direction, which a short prior-started schedule cannot reach."""
    model = PPCA(PPCA.Config(latent_dim=5), continuous.info)
    model.fit(continuous.eval_x("train"))
    model.log_s.data -= math.log(20.0)
    return model.eval().requires_grad_(False)


def _ctx(model, data, run_dir: Path | None = None, **overrides) -> EvalContext:
    preset = get_preset("smoke").with_overrides(**{"ais_n": 8, "ais_chains": 8, **overrides})
    return EvalContext(model=model, data=data, preset=preset, seed=0, device=torch.device("cpu"),
                       cache_dir=Path("."), run_dir=run_dir)


def test_ppca_from_its_exact_posterior_is_certified_on_the_truth(ppca, continuous):
    values, na = evaluate_metrics(_ctx(ppca, continuous, bdmc_n=12), ["ais", "bdmc"])
    assert not na, na
    exact = float(ppca.log_px(continuous.eval_x("test", 8)).double().mean())
    assert values["ais_certified"] == 1.0 and values["certify_tolerance"] == 1.0
    assert values["bdmc_gap"] + 2 * values["bdmc_gap_stderr"] <= 1.0 and abs(values["bdmc_gap"]) < 0.05
    assert abs(values["test_ais"] - exact) < 0.05
    # certified on its first round of simulated images: BDMC stopped there
    assert values["bdmc_images"] == 4
    assert values["ais_runs"] == 2 and values["bdmc_distributions"] == values["ais_distributions"]


def test_a_short_schedule_on_a_sharp_posterior_is_stopped_by_the_pilot(sharp, continuous, tmp_path):
    """The pilot's gap, extrapolated optimistically, needs more than ais_max_steps: AIS runs once
    at the pilot's schedule, BDMC reports the pilot's gap at that schedule, nothing is
    certified, and the report says why and what it would take."""
    ctx = _ctx(sharp, continuous, ais_init="prior", pilot_steps=6, pilot_n=4, ais_steps=12,
               ais_max_steps=24)
    values, na = evaluate_metrics(ctx, ["ais", "bdmc"])
    assert not na, na
    assert values["ais_pilot_stopped"] == 1.0 and values["ais_distributions"] == 6
    assert values["ais_needed_distributions"] > 24 and values["ais_converged"] == 0.0
    assert values["ais_pilot_decay"] >= 3.0
    assert values["bdmc_upper"] - values["bdmc_lower"] == pytest.approx(values["bdmc_gap"])
    assert values["ais_certified"] == 0.0 and values["bdmc_distributions"] == 6
    assert values["bdmc_gap"] == values["ais_pilot_gap"] > 1.0
    exact = float(sharp.log_px(continuous.eval_x("test", 8)).double().mean())
    assert values["test_ais"] < exact - 1.0  # loose indeed, and it says so
    runs = pd.DataFrame([{"model": "ppca", **values}])
    assert tables.ais_status(runs, "test_ais") == "not converged"
    why = tables.uncertified_reason(runs, "test_ais")
    assert why.startswith("stopped by the pilot: BDMC gap") and "--preset paper" in why
    # with the encoder's exact posterior the same pilot lets AIS go on, and it certifies; the
    # pilot's own gap was certified already, so AIS ran once, at ais_steps, without doubling
    on, _ = evaluate_metrics(_ctx(sharp, continuous, pilot_steps=6, ais_steps=12, ais_max_steps=24),
                             ["ais", "bdmc"])
    assert on["ais_pilot_stopped"] == 0.0 and on["ais_certified"] == 1.0
    assert on["ais_pilot_gap"] + 2 * on["ais_pilot_gap_stderr"] <= 1.0
    assert on["ais_distributions"] == on["bdmc_distributions"] == 12 and on["ais_runs"] == 1
    assert tables.ais_status(pd.DataFrame([{"model": "ppca", **on}]), "test_ais") == "certified"


def _no_full_bdmc(monkeypatch) -> list:
    """Record every full BDMC the likelihood metrics start (none, where the pilot's look is
    the certificate)."""
    import genbench.metrics.likelihood as likelihood

    calls = []
    real = likelihood.bdmc_until_certified
    monkeypatch.setattr(likelihood, "bdmc_until_certified",
                        lambda *a, **k: calls.append(k["steps"]) or real(*a, **k))
    return calls


def test_the_pilots_last_look_reads_its_gap_at_one_over_t(sharp, continuous, monkeypatch):
    """An early look lets what an optimistic reading could certify go on; the look at AIS's own
    schedule reads the gap at the long-schedule rate 1/T and stops it there: AIS runs once at
    that schedule and its certificate's answer is that look's gap, no BDMC run again."""
    calls = _no_full_bdmc(monkeypatch)
    most = 200
    values, na = evaluate_metrics(_ctx(sharp, continuous, ais_init="prior", pilot_steps=6, pilot_n=4,
                                       ais_steps=12, ais_max_steps=most), ["ais", "bdmc"])
    assert not na, na
    assert values["ais_pilot_distributions"] == 12 and values["ais_pilot_decay"] == 1.0
    gap = values["ais_pilot_gap"]
    assert values["ais_needed_distributions"] == math.ceil(12 * gap) > most  # 1/T, tolerance 1
    assert values["ais_pilot_stopped"] == 1.0 and values["ais_distributions"] == 12
    assert values["ais_runs"] == 1 and values["ais_certified"] == 0.0
    assert values["bdmc_gap"] == gap and values["bdmc_distributions"] == 12 and values["bdmc_images"] == 4
    assert calls == []


def test_a_pilot_certified_at_the_ais_schedule_is_its_certificate(ppca, continuous, monkeypatch):
    """Where the pilot's last look is at ais_steps and certified, AIS runs once there and BDMC
    reads the pilot's gap: the same start, schedule and observation model, measured once."""
    calls = _no_full_bdmc(monkeypatch)
    values, _ = evaluate_metrics(_ctx(ppca, continuous, pilot_steps=12, pilot_n=4, ais_steps=12,
                                      ais_max_steps=24), ["ais", "bdmc"])
    assert values["ais_certified"] == 1.0 and values["ais_pilot_stopped"] == 0.0
    assert values["ais_distributions"] == values["bdmc_distributions"] == 12 and values["ais_runs"] == 1
    assert values["bdmc_gap"] == values["ais_pilot_gap"] and values["bdmc_images"] == 4
    assert calls == []
    exact = float(ppca.log_px(continuous.eval_x("test", 8)).double().mean())
    assert abs(values["test_ais"] - exact) < 0.05


def test_a_pilot_that_lets_ais_on_asks_for_one_longer_schedule(sharp, continuous, monkeypatch):
    """Open at its last look but within reach: AIS runs once at the first doubling past that
    look (no shorter run to pool or agree with) and BDMC measures the certificate there,
    unpooled. A tolerance just above the exact start's tiny gap, below it plus two standard
    errors, keeps every look open and every reading within reach."""
    calls = _no_full_bdmc(monkeypatch)
    values, _ = evaluate_metrics(_ctx(sharp, continuous, pilot_steps=6, pilot_n=4, ais_steps=12,
                                      ais_max_steps=48, certify_tol=1e-4), ["ais", "bdmc"])
    assert values["ais_pilot_distributions"] == 12 and values["ais_pilot_stopped"] == 0.0
    assert values["ais_pilot_gap"] + 2 * values["ais_pilot_gap_stderr"] > 1e-4
    assert values["ais_runs"] == 1 and values["ais_distributions"] == values["bdmc_distributions"] == 24
    assert values["ais_converged"] == 0.0 and calls == [24]


def test_the_schedule_past_the_pilot_doubles_to_what_it_needs():
    def pilot(steps: int, needed: int) -> Pilot:
        return Pilot(steps, 4, 2.0, 0.5, -1.0, 1.0, 1.0, needed, True)

    assert schedule_past(pilot(500, 1000), 500, 1000) == 1000  # quick: the one doubling
    assert schedule_past(pilot(500, 600), 500, 16000) == 1000
    assert schedule_past(pilot(500, 3000), 500, 16000) == 4000
    assert schedule_past(pilot(500, 400), 500, 16000) == 1000  # never the open look again
    assert schedule_past(pilot(500, 9000), 500, 4000) == 4000  # capped


def test_the_pilot_looks_until_one_decides():
    assert pilot_schedules(250, 500) == (125, 250, 500)
    assert pilot_schedules(250, 1000) == (125, 250, 500, 1000) and pilot_schedules(6, 12) == (3, 6, 12)
    assert pilot_schedules(500, 500) == (250, 500)
    assert pilot_schedules(0, 500) == pilot_schedules(600, 500) == ()
    # the reference's gaps at 250 and 500 on the pilot's images (mnist-5k, quick): an early
    # look lets all four go on; 1/T from 500 stops DCGAN and Conv DRAW (not certified at
    # 1,000: 1.36 and 1.32), and lets VAE-GAN and LAPGAN on (certified at 1,000)
    looks = {"dcgan": [(250, 6.34, 1.99), (500, 2.49, 0.83)],
             "convdraw": [(250, 7.76, 1.20), (500, 2.34, 0.41)],
             "vaegan": [(250, 4.48, 1.48), (500, 0.92, 0.50)],
             "lapgan": [(250, 2.96, 0.48), (500, 0.44, 0.33)]}
    for seen in looks.values():
        assert pilot_verdict([(125, 20.0, 5.0), seen[0]], False, 0.0, 1.0, 1000) is None
    verdict = {name: pilot_verdict([(125, 20.0, 5.0), *seen], True, 0.0, 1.0, 1000)
               for name, seen in looks.items()}
    assert verdict["dcgan"] == (1.0, 1245) and verdict["convdraw"] == (1.0, 1170)
    assert verdict["vaegan"] == (1.0, 500) and verdict["lapgan"] == (1.0, 500)  # within reach at once
    # a certified look decides at once, early or last; an early look out of reach even
    # optimistically stops (the continuous VAE: 831 at 250, about 1,480 needed at decay 3)
    assert pilot_verdict([(125, 1.0, 0.5), (250, 0.2, 0.1)], False, 0.0, 1.0, 1000)[1] == 250
    assert pilot_verdict([(125, 900.0, 500.0), (250, 831.0, 1.0)], False, 0.0, 1.0, 1000)[1] > 1000
    # the floor of a heavy tail raises the last look's reading
    assert pilot_verdict([(250, 3.0, 1.0), (500, 0.9, 0.9)], True, 2.5, 1.0, 1000) == (1.0, 1250)


def test_needed_distributions_extrapolate_optimistically():
    assert needed_distributions(0.5, 0.1, 50, 1.0) == 50  # within tolerance already
    assert needed_distributions(11.0, 0.5, 100, 1.0) == 1000  # (11 - 2 x 0.5) x 100 / 1
    assert needed_distributions(3.0, float("nan"), 10, 1.0) == 30
    assert needed_distributions(16.0, 0.0, 50, 1.0, decay=2.0) == 200  # 50 x 16^(1/2)
    assert decay_exponent((25, 1024.0), (50, 64.0)) == 4.0  # gap fell 16x when T doubled
    assert decay_exponent((25, 10.0), (50, 9.0)) == 3.0  # slower: 1/T^3, optimistic
    assert decay_exponent((25, 1e9), (50, 1.0)) == 4.0 and decay_exponent((25, -1.0), (50, 2.0)) == 3.0
    # a heavy tail: one image far out keeps the mean over all 16 above 3.5 whatever the s.e.
    gaps = torch.tensor([1.0, 2.0, 3.0, 50.0])
    assert gap_floor(gaps, 16) == 3.5 and hopeless(14.0, 12.0, 1.0, gap_floor(gaps, 16))
    assert not hopeless(14.0, 12.0, 1.0) and not hopeless(14.0, 12.0, 1.0, gap_floor(gaps, 100))
    assert needed_distributions(14.0, 12.0, 50, 1.0, floor=3.5) == 175


def test_pooled_runs_are_a_fixed_mixture_of_unbiased_estimates():
    a = torch.tensor([-10.0, -3.0], dtype=torch.float64)
    b = torch.tensor([-9.0, -3.5], dtype=torch.float64)
    assert pooled_estimate([(100, a)]) is a  # one run: as it is
    pooled = pooled_estimate([(100, a), (200, b)])
    torch.testing.assert_close(pooled.exp(), (a.exp() + 2 * b.exp()) / 3)
    assert bool((pooled >= b + math.log(2 / 3)).all())  # never below the last run's share


def test_bdmc_early_stop_keeps_each_annealed_images_bounds(ppca):
    """The rounds depend on n and ``first`` only; stopped after its first round, BDMC's
    per-image bounds are bit for bit those the same images get in one run of all n."""
    kw = dict(n=12, shape=ppca.info.shape, chains=4, steps=12, hmc=HMCConfig(leapfrog=3), seed=5,
              from_encoder=True)
    whole = bdmc(ppca, GAUSS, **kw)
    stopped = bdmc_until_certified(ppca, GAUSS, first=4, tol=1e6, **kw)
    assert stopped.images == 4 and stopped.certified
    assert torch.equal(stopped.result.lower, whole.lower[:4])
    assert torch.equal(stopped.result.upper, whole.upper[:4])
    # a NaN tolerance is neither met nor exceeded: BDMC goes on through every round
    went_on = bdmc_until_certified(ppca, GAUSS, first=4, tol=math.nan, **kw)
    assert went_on.images == 12 and torch.equal(went_on.result.lower, whole.lower)
    assert rounds(12, 4) == [(0, 4), (4, 8), (8, 12)] and rounds(6, 4) == [(0, 6)]


def test_bdmc_rounds_sharded_equal_unsharded(ppca):
    """A round split over shards (each simulating all n, annealing its own images) merges
    back to the unsharded round bit for bit."""
    from genbench.metrics import shards

    class InProcess:
        shards = 2

        def __call__(self, fn, jobs):
            return [fn(ppca, **job) for job in jobs]

    kw = dict(n=16, first=8, tol=math.nan, shape=ppca.info.shape, chains=2, steps=6,
              hmc=HMCConfig(leapfrog=2), seed=3, from_encoder=True)
    alone = bdmc_until_certified(ppca, GAUSS, **kw)
    token = shards.install(InProcess())
    try:
        split = bdmc_until_certified(ppca, GAUSS, **kw)
    finally:
        shards.uninstall(token)
    assert split.images == alone.images == 16
    assert torch.equal(split.result.lower, alone.result.lower)
    assert torch.equal(split.result.upper, alone.result.upper)


def _bernoulli_vae():
    data = load_dataset(DataRequest("synthetic", variant="dynamic"))
    torch.manual_seed(0)
    return VAE(VAE.Config(hidden=(16,), latent_dim=4), data.info).eval(), data


def test_the_shared_family_reuses_the_own_decoder_results_where_it_chose_it(tmp_path):
    """A flip at its search's lower bound on a Bernoulli decoder: the shared IWAE, AIS and
    BDMC are the own ones, recorded as reused, per-image values included; a real flip is
    computed afresh. The reuse is a valid lower bound: log p_shared(x|z) >= log p_own(x|z) +
    D log(1 - 2 flip) at every z."""
    vae, data = _bernoulli_vae()
    names = ["iwae", "ais", "bdmc", "iwae_shared", "ais_shared", "bdmc_shared"]
    ctx = _ctx(vae, data, tmp_path)
    ctx.results["obs_flip"] = FLIP_BOUNDS[0]  # as the validation search returns it on such a model
    values, na = evaluate_metrics(ctx, names)
    assert not na, na
    for own, shared in (("test_iwae", "test_iwae_shared"), ("test_ais", "test_ais_shared"),
                        ("test_ais_stderr", "test_ais_shared_stderr"), ("bdmc_gap", "bdmc_gap_shared"),
                        ("ais_certified", "ais_certified_shared"), ("test_iwae_bpd", "test_iwae_shared_bpd")):
        assert values[shared] == values[own], shared
    assert all(values[f"{m}_shared_from_own"] == 1.0 for m in ("iwae", "ais", "bdmc"))
    per = load_per_image(tmp_path)
    assert per["test_ais_shared"] == per["test_ais"] and per["test_iwae_shared"] == per["test_iwae"]

    z = vae.prior().sample((3, 5))
    x = data.eval_x("test", 5)
    own = ObservationModel("decoder").log_lik(vae, z, None, x)
    shared = ObservationModel("bernoulli", FLIP_BOUNDS[0]).log_lik(vae, z, None, x)
    assert bool((shared >= own + 784 * math.log1p(-2 * FLIP_BOUNDS[0]) - 1e-3).all())

    fresh = _ctx(vae, data)
    fresh.results["obs_flip"] = 0.05
    again, _ = evaluate_metrics(fresh, ["ais", "ais_shared"])
    assert again["ais_shared_from_own"] == 0.0 and again["test_ais_shared"] != again["test_ais"]


def test_a_metric_runs_after_those_it_declares_and_reads_their_typed_result(ppca, continuous):
    """Declared dependencies, not registration order: a metric registered before the one it
    reads still runs after it, and gets its result object."""
    seen = {}

    @register_metric("zz_reader", produces={"zz_read": "test"}, default=False, after=("zz_writer",))
    def reader(ctx: EvalContext) -> dict[str, float]:
        run = ctx.upstream_detail("zz_writer", AISRun)
        seen["schedules"] = None if run is None else run.schedules
        return {"zz_read": 1.0}

    @register_metric("zz_writer", produces={"zz_wrote": "test"}, default=False)
    def writer(ctx: EvalContext) -> MetricResult:
        return MetricResult({"zz_wrote": 1.0}, AISRun(GAUSS, (10, 20), False))

    try:
        assert [e.name for e in requested_metrics(["zz_reader", "zz_writer"])] == ["zz_writer", "zz_reader"]
        values, _ = evaluate_metrics(_ctx(ppca, continuous), ["zz_reader", "zz_writer"])
        assert values["zz_wrote"] == 1.0 and seen["schedules"] == (10, 20)
        evaluate_metrics(_ctx(ppca, continuous), ["zz_reader"])  # alone: runs without it
        assert seen["schedules"] is None
    finally:
        METRICS.pop("zz_reader"), METRICS.pop("zz_writer")


def test_the_report_ranks_only_certified_numbers():
    """A higher AIS without a certificate is neither bold nor named; the certified ones are
    ranked among themselves, and the table says why the others are not certified."""
    base = {"status": "finished", "conditional": False, "test_ais_stderr": 0.5, "ais_converged": 1.0,
            "certify_tolerance": 1.0}
    df = pd.DataFrame([
        {"model": "vae", "test_ais": -100.0, "ais_certified": 1.0, "bdmc_gap": 0.1, **base},
        {"model": "ae", "test_ais": -110.0, "ais_certified": 1.0, "bdmc_gap": 0.2, **base},
        {"model": "gan", "test_ais": -80.0, "ais_certified": 0.0, "bdmc_gap": 4.5,
         "bdmc_gap_stderr": 0.5, **base},
        {"model": "dcgan", **base, "test_ais": -70.0, "ais_converged": 0.0, "ais_certified": 0.0,
         "ais_pilot_stopped": 1.0, "ais_pilot_gap": 11.0, "ais_pilot_distributions": 50.0,
         "ais_needed_distributions": 500.0},
    ])
    table = tables.comparison_table(df, ["test_ais"])
    rows = {r[0].text: r[2] for r in table.rows}
    assert rows["vae"].best and not rows["ae"].best and "✓ certified" in rows["vae"].text
    assert not rows["gan"].best
    assert "converged, not certified: BDMC gap 4.50 ± 0.50: gap + 2 s.e. > 1" in rows["gan"].text
    assert not rows["dcgan"].best
    assert "not converged, not certified: stopped by the pilot" in rows["dcgan"].text
    lines = tables.headlines(df)
    assert any("**vae**" in line for line in lines)
    assert not any("**gan**" in line or "**dcgan**" in line for line in lines)
    assert any("ranks certified numbers only" in line and "gan (BDMC gap" in line for line in lines)
