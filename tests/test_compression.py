"""The compression metric: rate (bits-back KL) against distortion, and the JPEG / JPEG 2000 references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.distributions import Independent, Normal

from genbench.contract import DataInfo
from genbench.metrics import compression as comp
from genbench.plugins import load_plugins
from genbench.registry import METRICS, get_model

load_plugins()
pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 32, 32)
SCALE, GAIN = 0.01, 0.8  # q's std; the decoder's mean is GAIN * z + (1 - GAIN) / 2


class IdentityCodec(torch.nn.Module):
    """q(z|x) = N(x, SCALE^2 I), p(z) = N(0, I), generate(z) = GAIN z + (1 - GAIN) / 2.

    Rate: KL = sum_d (x_d^2 + SCALE^2 - 1 - log SCALE^2) / 2 nats in closed form. Distortion at
    q's mean: xhat - x = -(1 - GAIN)(x - 1/2), so MSE = (1 - GAIN)^2 mean((x - 1/2)^2).
    ``steps = 2`` sends the first half of the pixels at step 1 and the rest at step 2 (the
    unsent half at the prior's mean, 0), through the ``compression_steps`` hook.
    """

    def __init__(self, steps: int = 1) -> None:
        super().__init__()
        self.steps = steps
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def prior(self):
        d = math.prod(SHAPE)
        return Independent(Normal(torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)), 1)

    def encode(self, x):
        loc = x.flatten(1)
        return Independent(Normal(loc, torch.full_like(loc, SCALE)), 1)

    def generate(self, z):
        return (GAIN * z + (1 - GAIN) / 2).view(-1, *SHAPE)

    def half_mask(self, d: int) -> torch.Tensor:
        return torch.arange(d) < d // 2

    def kl_per_pixel(self, x):
        return 0.5 * (x.flatten(1).square() + SCALE**2 - 1 - math.log(SCALE**2))

    def steps_hook(self, x, eps):
        kl = self.kl_per_pixel(x)
        first = self.half_mask(kl.shape[1])
        kls = torch.stack([kl[:, first].sum(1), kl[:, ~first].sum(1)])
        z = x.flatten(1)
        return kls, torch.stack([self.generate(z * first), self.generate(z)])


def sequential() -> IdentityCodec:
    model = IdentityCodec(2)
    model.compression_steps = model.steps_hook
    return model


def images(n=3, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64)


def test_identity_codec_gives_its_closed_form_rate_and_distortion():
    x = images()
    model = IdentityCodec()
    values = comp.compression_values(model, x, seed=0, binarized=False)
    bits = (model.kl_per_pixel(x).sum(1) / math.log(2)).mean()
    mse = ((1 - GAIN) ** 2 * (x - 0.5).square().flatten(1).mean(1)).mean()
    assert values["compression_bits_1"] == pytest.approx(float(bits), rel=1e-12)
    assert values["compression_mse_1"] == pytest.approx(float(mse), rel=1e-12)
    assert values["compression_psnr_1"] == pytest.approx(10 * math.log10(1 / float(mse)), rel=1e-12)
    assert "compression_bits_2" not in values  # a one-shot encoder: one point
    assert values["compression_raw_bits"] == 8 * 1024
    assert values["compression_budget_bits"] == pytest.approx(0.2 * 8 * 1024)


def test_sequential_curve_adds_up_the_steps_sent():
    """Step 1 costs the first half's KL and decodes the rest at 0; step 2 is the whole code."""
    x = images()
    model = sequential()
    values = comp.compression_values(model, x, seed=0, binarized=False)
    kl = model.kl_per_pixel(x)
    first = model.half_mask(kl.shape[1])
    assert values["compression_bits_1"] == pytest.approx(float((kl[:, first].sum(1) / math.log(2)).mean()))
    assert values["compression_bits_2"] == pytest.approx(float((kl.sum(1) / math.log(2)).mean()))
    flat = x.flatten(1)
    err1 = torch.where(first, -(1 - GAIN) * (flat - 0.5), (1 - GAIN) / 2 - flat)  # unsent: z = 0
    assert values["compression_mse_1"] == pytest.approx(float(err1.square().mean()), rel=1e-12)
    assert values["compression_mse_2"] == pytest.approx(
        float(((1 - GAIN) * (flat - 0.5)).square().mean()), rel=1e-12)


def test_codec_bits_are_the_file_sizes_pillow_writes(tmp_path):
    """Each table entry is 8 x the size of the file Pillow writes with the same settings, and
    the file decodes to the image the table holds."""
    x = images(2)
    bits, decoded = comp.codec_table(x, "jpeg")
    for s, quality in enumerate(comp.SETTINGS["jpeg"]):
        for i in range(2):
            path = tmp_path / f"{s}_{i}.jpg"
            array = (x[i, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            Image.fromarray(array, "L").save(path, quality=quality, optimize=True)
            assert bits[s, i] == 8 * path.stat().st_size
            back = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float64) / 255)
            torch.testing.assert_close(decoded[s, i, 0], back)
    bits2, _ = comp.codec_table(x, "jp2")
    path = tmp_path / "a.j2k"
    array = (x[0, 0] * 255).round().to(torch.uint8).numpy()
    Image.fromarray(array, "L").save(path, irreversible=True, quality_mode="rates",
                                     quality_layers=[comp.SETTINGS["jp2"][3]])
    assert bits2[3, 0] == 8 * path.stat().st_size


def test_codecs_are_matched_to_the_models_bits_image_by_image():
    """At each rate the codec's file fits in the model's bits where any file does, with the
    least error among the files that fit (brute force over the table)."""
    x = images(3)
    values = comp.compression_values(sequential(), x, seed=0, binarized=False)
    budget = sequential().steps_hook(x, None)[0].cumsum(0) / math.log(2)  # (T, N) bits per image
    for codec in comp.CODECS:
        bits, decoded = comp.codec_table(x, codec)
        err = comp.mse(x, decoded)
        for t in range(2):
            chosen_bits, chosen_err = [], []
            for i in range(3):
                fits = [s for s in range(bits.shape[0]) if bits[s, i] <= budget[t, i]]
                s = min(fits, key=lambda s: err[s, i]) if fits else int(bits[:, i].argmin())
                chosen_bits.append(float(bits[s, i]))
                chosen_err.append(float(err[s, i]))
            assert values[f"compression_{codec}_bits_{t + 1}"] == pytest.approx(np.mean(chosen_bits))
            assert values[f"compression_{codec}_mse_{t + 1}"] == pytest.approx(np.mean(chosen_err))
    # at 2 x 6.2 kbit per 32x32 image JPEG fits: the match is below the model's rate
    assert values["compression_jpeg_bits_2"] <= values["compression_bits_2"]


def test_curve_does_not_depend_on_the_chunk_size():
    torch.manual_seed(0)
    cls = get_model("convdraw").cls
    model = cls(cls.Config(steps=3, hidden=4, z_channels=1), DataInfo("t", "dynamic", (1, 8, 8))).double()
    x = (images(5)[:, :, :8, :8] < 0.4).double()
    a = comp.model_curve(model, x, seed=2, chunk=2)
    b = comp.model_curve(model, x, seed=2, chunk=64)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-12)
    assert a[0].shape == (3, 5) and (a[0].diff(dim=0) >= 0).all()  # the rate grows with t


def test_every_step_key_is_declared_as_a_family_and_a_gan_records_few_na():
    """Each step's keys belong to a declared prefix family (the report labels them, `genbench
    list metrics` shows each family once), so a model without an encoder records one n/a per
    family and budget key, not one per step."""
    from genbench.registry import result_key

    for t in (1, 2, comp.MAX_STEPS):
        for kind in ("bits", "mse", "psnr"):
            for key in (f"compression_{kind}_{t}", f"compression_jpeg_{kind}_{t}",
                        f"compression_jp2_{kind}_{t}"):
                found = result_key(key)
                assert found is not None and found.prefix, key
    produces = METRICS["compression"].produces
    assert "compression_jpeg_psnr_budget" in produces and "compression_budget_bits" in produces
    assert len(produces) < 12  # the n/a entries of a model without an encoder


def test_list_metrics_shows_the_numbered_keys_as_one_row_each():
    from genbench.listing import sections

    ((_, rows),) = sections("metrics")
    names = [name for name, _ in rows]
    assert "compression_bits_<t>" in names and "compression_jp2_psnr_<t>" in names
    assert "compression_bits_2" not in names and "compression_jpeg_mse_budget" in names
    assert "(t = 1, 2, ...)" in dict(rows)["compression_psnr_<t>"]
    from genbench.listing import _numbered

    assert [r[0] for r in _numbered({"a_1": "x", "a_2": "x", "b_3": "y", "c": "z"})] == ["a_<t>", "b_3", "c"]


def test_compression_gallery_shows_originals_model_jpeg_and_jpeg2000(tmp_path):
    """`genbench gallery RUN --kind compression`: one row per method (original, the model at
    its step within 20% of the raw size, JPEG, JPEG 2000), one column per test image."""
    from run_folders import make_run
    from typer.testing import CliRunner

    from genbench.cli import app
    from genbench.galleries.compression import step_within

    run_dir = make_run(tmp_path / "run", "convdraw", latent_dim=None, steps=2)
    out = tmp_path / "slide.png"
    res = CliRunner().invoke(app, ["gallery", str(run_dir), "--kind", "compression", "--n", "3",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(out))
    assert grid.shape[:2] == (2 + 4 * 30, 2 + 3 * 30)
    rows = [grid[2 + 30 * r: 30 * (r + 1), 2:30] for r in range(4)]
    assert all(not np.array_equal(rows[0], r) for r in rows[1:])  # each method changes the image
    assert step_within(torch.tensor([10.0, 50.0, 90.0]), 60.0) == 1
    assert step_within(torch.tensor([70.0, 80.0]), 60.0) == 0


def _runs() -> pd.DataFrame:
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        conv = {"model": "convdraw", "seed": seed, "status": "finished"}
        for t, (b, m) in enumerate(((50.0, 0.08), (150.0, 0.05), (300.0, 0.02)), start=1):
            conv.update({f"compression_bits_{t}": b + shift, f"compression_mse_{t}": m,
                         f"compression_psnr_{t}": 10 * math.log10(1 / m)})
            for codec in ("jpeg", "jp2"):
                conv.update({f"compression_{codec}_bits_{t}": 2500.0, f"compression_{codec}_mse_{t}": 0.01,
                             f"compression_{codec}_psnr_{t}": 20.0})
        rows.append(conv)
    rows.append({"model": "vae", "seed": 0, "status": "finished", "compression_bits_1": 200.0,
                 "compression_mse_1": 0.04, "compression_psnr_1": 14.0})
    rows.append({"model": "gan", "seed": 0, "status": "finished"})
    df = pd.DataFrame(rows)
    df["compression_raw_bits"], df["compression_budget_bits"] = 784.0, 156.8
    for codec, bits in (("jpeg", 2500.0), ("jp2", 150.0)):
        df[f"compression_{codec}_bits_budget"] = bits
        df[f"compression_{codec}_mse_budget"] = 0.03
        df[f"compression_{codec}_psnr_budget"] = 15.2
    return df


def test_report_tabulates_each_method_within_the_decks_budget_and_plots_the_curves(tmp_path):
    """Within 20% of 784 bits: Conv DRAW's last step that fits (t = 2, mean over two seeds),
    the VAE n/a (its one point is above), JPEG n/a (its smallest file is above), JPEG 2000 in."""
    from genbench.report.compression import budget_table, curve_points, owns, rate_distortion_plot

    runs = _runs()
    points = curve_points(runs)
    conv = points[(points.model == "convdraw") & (points.source == "model")].sort_values("t")
    assert list(conv["bits"]) == [51.0, 151.0, 301.0]
    table = budget_table(runs)
    rows = {r[0].text: [c.text for c in r[1:]] for r in table.rows}
    assert rows["convdraw"][:2] == ["2", "151 (19.3%)"] and rows["convdraw"][2] == "0.05"
    assert rows["vae"][1].startswith("n/a — its first point takes 200 bits")
    assert rows["JPEG"][1].startswith("n/a — its smallest file is 2500 bits")
    assert rows["JPEG 2000"][1] == "150 (19.1%)" and "gan" not in rows
    png = rate_distortion_plot(runs, tmp_path / "rd.png")
    assert png is not None and Image.open(png).size[0] > 100
    assert owns("compression_psnr_3") and owns("na:compression_bits_1") and not owns("recon_mse")


def test_draws_compression_steps_add_up_to_its_kl_and_end_at_its_reconstruction():
    """DRAW's hook as Conv DRAW's: the per-step KLs for noise eps sum to the objective's KL for
    the same noise; all T steps decode q's mean path, one step leaves the rest at 0."""
    torch.manual_seed(0)
    cls = get_model("draw").cls
    model = cls(cls.Config(steps=3, hidden=8, z_dim=2, attention=False),
                DataInfo("t", "dynamic", (1, 6, 6))).double()
    x = (images(4)[:, :, :6, :6] < 0.4).double()
    eps = comp.counter_normal(1, torch.arange(4), torch.arange(5), model.latent_dim).double()
    kl, means = model.compression_steps(x, eps)
    assert kl.shape == (3, 4) and means.shape == (3, 4, 1, 6, 6)
    with torch.no_grad():
        full = model.infer(x.repeat(5, 1, 1, 1), noise=eps.reshape(20, -1))["kl"].view(5, 4).mean(0)
        torch.testing.assert_close(kl.sum(0), full)
        z = model.encode(x).mean
        torch.testing.assert_close(means[-1], model.generate(z))
        torch.testing.assert_close(means[0], model.generate(torch.cat([z[:, :2], 0 * z[:, 2:]], 1)))


def test_glossary_has_one_entry_for_all_compression_keys():
    from genbench.report.compression import glossary_items

    (item,) = glossary_items(["test_elbo", "compression_bits_1", "compression_bits_2"])
    assert item.startswith("**compression**") and "bits-back" in item
    assert glossary_items(["test_elbo"]) == ()
