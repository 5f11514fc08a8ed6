"""Galleries decoded from a checkpoint: interpolation ends at the reconstructions, a zero edit
changes nothing, slerp stays on the sphere, the manifold grid is the inverse Gaussian CDF."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from run_folders import make_run, make_vae_run
from scipy.stats import norm
from typer.testing import CliRunner

from genbench.galleries import latent
from genbench.images import reconstruct


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory):
    from genbench.loading import load_run

    folder = make_vae_run(tmp_path_factory.mktemp("res") / "synthetic" / "vae" / "smoke-run")
    return folder, load_run(folder)


@pytest.mark.parametrize("mode", latent.MODES)
def test_interpolation_endpoints_are_the_reconstructions(vae_run, mode: str) -> None:
    from genbench.galleries.decoded import interpolation_images

    _, run = vae_run
    images, nrow = interpolation_images(run, torch.Generator(), (3, 7, 10, 2), steps=6, modes=(mode,))
    assert nrow == 6 and images.shape == (12, 1, 28, 28)
    x = run.data.eval_x("test")
    rows = images.view(2, 6, 1, 28, 28)  # (pairs, steps, C, H, W)
    start, end = reconstruct(run.model, x[[3, 10]]), reconstruct(run.model, x[[7, 2]])
    torch.testing.assert_close(rows[:, 0], start, atol=1e-5, rtol=0)
    torch.testing.assert_close(rows[:, -1], end, atol=1e-5, rtol=0)
    assert (rows[:, 1] - rows[:, 0]).abs().max() > 1e-4  # it does move between them


def test_zero_edit_returns_the_original(vae_run) -> None:
    from genbench.galleries.arithmetic import arithmetic_images, latent_stats
    from genbench.galleries.core import codes, test_images

    _, run = vae_run
    z, y = latent_stats(run, torch.Generator())
    assert torch.equal(latent.apply_edit(z, torch.zeros_like(z[0]), 5.0), z)
    # a class transfer to each code's own class is the identity too
    moved = latent.class_transfer(z, y, latent.class_means(z, y, 10))  # (N, K, D)
    torch.testing.assert_close(moved[torch.arange(len(y)), y], z, atol=1e-5, rtol=0)
    images, ncol = arithmetic_images(run, torch.Generator(), n=4)
    assert ncol == 1 + 1 + 10  # input, unedited decode, ten classes
    grid = images.view(4, ncol, 1, 28, 28)
    x, y4 = test_images(run, 4)
    assert len(set(y4.tolist())) == 4  # the rows show different classes
    torch.testing.assert_close(grid[:, 0], x)
    torch.testing.assert_close(grid[:, 1], reconstruct(run.model, x), atol=1e-6, rtol=0)
    own = grid[torch.arange(4), 2 + y4]
    torch.testing.assert_close(own, reconstruct(run.model, x), atol=1e-5, rtol=0)
    assert codes(run, x, None).shape == (4, 4)


def test_slerp_keeps_the_norm_and_lerp_does_not() -> None:
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 16, generator=gen), torch.randn(5, 16, generator=gen)
    z0, z1 = z0 / z0.norm(dim=1, keepdim=True), z1 / z1.norm(dim=1, keepdim=True)
    s, line = latent.interpolate(z0, z1, 9, "slerp"), latent.interpolate(z0, z1, 9, "linear")
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(5, 9))
    assert (line[:, 4].norm(dim=-1) < 0.95).all()
    torch.testing.assert_close(s[:, 0], z0)
    torch.testing.assert_close(s[:, -1], z1)
    # equal angles between consecutive steps: uniform speed along the great circle
    cos = (s[:, 1:] * s[:, :-1]).sum(-1)
    torch.testing.assert_close(cos, cos[:, :1].expand_as(cos), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="linear or slerp"):
        latent.interpolate(z0, z1, 3, "cubic")


def test_attribute_vector_is_the_difference_of_means() -> None:
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    has = torch.tensor([1, 1, 0, 0])
    torch.testing.assert_close(latent.attribute_vector(z, has, unit=False), torch.tensor([2.0, -3.0]))
    assert latent.attribute_vector(z, has).norm().item() == pytest.approx(1.0)


def test_manifold_grid_is_the_inverse_gaussian_cdf(tmp_path: Path) -> None:
    from torch.distributions import Independent, MultivariateNormal, Normal

    z = latent.manifold_codes(Independent(Normal(torch.zeros(2), torch.ones(2)), 1), 4)
    u = norm.ppf((torch.arange(4) + 0.5).numpy() / 4)
    torch.testing.assert_close(z[:4, 0], torch.tensor(u, dtype=torch.float32))  # first row: x varies
    torch.testing.assert_close(z[::4, 1], torch.tensor(u[::-1].copy(), dtype=torch.float32))
    tril = torch.tensor([[2.0, 0.0], [1.0, 0.5]])
    mvn = MultivariateNormal(torch.tensor([1.0, -1.0]), scale_tril=tril)
    torch.testing.assert_close(latent.manifold_codes(mvn, 4), torch.tensor([1.0, -1.0]) + z @ tril.T)


def test_gallery_command_writes_pngs_and_rejects_bad_input(tmp_path: Path) -> None:
    from genbench.cli import app

    run_dir = make_vae_run(tmp_path / "synthetic" / "vae" / "run2d", latent_dim=2, steps=5)
    runner = CliRunner()
    for kind, extra in [("manifold", []), ("interpolation", ["--endpoints", "0,5", "--mode", "slerp"]),
                        ("samples", []), ("reconstructions", []), ("scatter", []),
                        ("arithmetic", ["--class", "3", "--strength", "2"])]:
        out = tmp_path / f"{kind}.png"
        res = runner.invoke(app, ["gallery", str(run_dir), "--kind", kind, "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        assert Image.open(out).size[0] > 28
    assert Image.open(tmp_path / "manifold.png").size == (20 * 30 + 2, 20 * 30 + 2)
    assert Image.open(tmp_path / "interpolation.png").size == (10 * 30 + 2, 30 + 2)
    bad = [(["--kind", "cubes"], "unknown gallery kind"),
           (["--kind", "interpolation", "--endpoints", "0,1,2"], "pairs"),
           (["--kind", "interpolation", "--endpoints", "0,9999"], "out of range"),
           (["--kind", "interpolation", "--mode", "cubic"], "linear, slerp or both"),
           (["--kind", "arithmetic", "--class", "Smiling"], "unknown class or attribute")]
    for args, message in bad:
        res = runner.invoke(app, ["gallery", str(run_dir), *args])
        assert res.exit_code == 2 and message in res.output, res.output
    wide = make_vae_run(tmp_path / "synthetic" / "vae" / "run4d", latent_dim=4, steps=1)
    res = runner.invoke(app, ["gallery", str(wide), "--kind", "manifold"])
    assert res.exit_code == 2 and "2-D latent" in res.output
    res = runner.invoke(app, ["gallery", str(tmp_path), "--kind", "samples"])
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_gallery_bad_strength_count_or_out_path_is_one_error_line(tmp_path: Path) -> None:
    """A non-finite --strength, --n 0 and an --out that is a folder or under a file are each
    one `error: ...` line naming the option (exit 2), and no PNG is written."""
    from genbench.cli import app

    run_dir = make_vae_run(tmp_path / "synthetic" / "vae" / "run", latent_dim=2, steps=1)
    (tmp_path / "afile").write_text("x")
    bad = [(["--kind", "arithmetic", "--class", "3", "--strength", "nan"], "--strength nan"),
           (["--kind", "arithmetic", "--class", "3", "--strength", "inf"], "--strength inf"),
           (["--n", "0"], "--n 0"),
           (["--kind", "interpolation", "--steps", "1"], "--steps 1"),
           (["--out", str(tmp_path)], "is a folder"),
           (["--out", str(tmp_path / "afile" / "g.png")], "is under the file")]
    for args, message in bad:
        res = CliRunner().invoke(app, ["gallery", str(run_dir), *args], env={"COLUMNS": "300"})
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert not list(run_dir.glob("gallery_*.png"))


def test_attribute_edit_moves_along_the_unit_attribute_vector(tmp_path: Path) -> None:
    from genbench.galleries.arithmetic import arithmetic_images
    from genbench.galleries.core import N_STATS, codes, decode_mean, test_images
    from genbench.loading import load_run

    run = load_run(make_run(tmp_path / "rgb", "vae", "synthetic-rgb", steps=0))
    x, y = test_images(run, N_STATS)
    images, ncol = arithmetic_images(run, torch.Generator(), n=3, target="attr1", strength=2.0)
    assert ncol == 3 and images.shape == (9, 3, 64, 64)  # input, unedited, edited
    z = codes(run, x, y)
    v = z[y[:, 1] == 1].mean(0) - z[y[:, 1] == 0].mean(0)
    expected = decode_mean(run, z[:3] + 2.0 * v / v.norm())
    torch.testing.assert_close(images.view(3, 3, 3, 64, 64)[:, 2], expected, atol=1e-5, rtol=0)
    _, ncol = arithmetic_images(run, torch.Generator(), n=3)  # no CelebA names: +3 on the first three
    assert ncol == 2 + 3


def test_without_an_encoder_interpolation_runs_between_prior_draws(tmp_path: Path) -> None:
    from genbench.galleries.core import decode_mean
    from genbench.galleries.decoded import interpolation_images
    from genbench.loading import load_run

    run = load_run(make_run(tmp_path / "gan", "gan", latent_dim=None, steps=0))
    assert not callable(getattr(run.model, "encode", None))
    images, _ = interpolation_images(run, torch.Generator().manual_seed(3), (0, 1), steps=5)
    z = torch.randn(2, run.model.prior().mean.shape[-1], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(images[0], decode_mean(run, z[:1])[0])
    torch.testing.assert_close(images[4], decode_mean(run, z[1:])[0])


def test_without_an_encoder_arithmetic_labels_samples_with_the_classifier_that_measured_the_run(
        tmp_path: Path) -> None:
    """A GAN's class vectors come from prior draws labelled by the very evaluator named in its
    ``feature_space`` (found by weight hash); an unknown hash is a one-line error, not a guess."""
    from genbench.errors import GenbenchError
    from genbench.galleries.arithmetic import classifier_labels, latent_stats
    from genbench.galleries.core import N_STATS, decode_mean
    from genbench.loading import load_run
    from genbench.metrics import features
    from genbench.metrics.features import default_cache_dir

    run = load_run(make_run(tmp_path / "gan", "gan", latent_dim=None, steps=0))
    ext = features.load_or_train_extractor(run.data, epochs=1, cache_dir=default_cache_dir())
    z, y = latent_stats(run, torch.Generator().manual_seed(5), feature_space=ext.feature_space)
    expected_z = torch.randn(N_STATS // 2, z.shape[1], generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, expected_z)
    _, logits = ext.net(decode_mean(run, z))
    assert torch.equal(y, logits.argmax(1))
    with pytest.raises(GenbenchError, match="genbench features"):
        classifier_labels(run, decode_mean(run, z[:2]), "cnn28:000000000000")


def test_galleries_are_identical_in_two_calls_and_leave_the_global_rng_alone(tmp_path: Path) -> None:
    """The report's galleries (the latent scatter's PCA included) depend on the seed given, not on
    the global RNG, which they neither read nor advance."""
    from genbench.galleries import render_all

    run_dir = make_vae_run(tmp_path / "synthetic" / "vae" / "run4d", latent_dim=4, steps=2)
    made = []
    for i, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        made.append(render_all(run_dir, tmp_path / f"out{i}", n=4, steps=5))
        assert torch.equal(torch.get_rng_state(), state), "a gallery touched the global RNG"
    first, second = made
    assert {"samples", "reconstructions", "interpolation", "arithmetic", "scatter"} <= set(first.images)
    assert "manifold" not in first.skipped and "2-D latent" in first.not_applicable["manifold"]
    for kind, path in first.images.items():
        assert path.read_bytes() == second.images[kind].read_bytes(), kind
    other = render_all(run_dir, tmp_path / "out-seed1", seed=1, n=4, steps=5)
    assert other.images["samples"].read_bytes() != first.images["samples"].read_bytes()


def test_principal_components_match_numpy_up_to_a_fixed_sign() -> None:
    import numpy as np

    from genbench.galleries.arithmetic import principal_components

    z = torch.randn(200, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = z * torch.tensor([3.0, 0.5, 2.0, 0.1, 1.0], dtype=torch.float64)
    pc = principal_components(z).numpy()
    zc = z.numpy() - z.numpy().mean(0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    ref = zc @ vt[:2].T
    np.testing.assert_allclose(np.abs(pc), np.abs(ref), atol=1e-10)
    np.testing.assert_allclose(pc.var(0), ref.var(0))
    assert np.allclose(principal_components(-z).numpy(), -pc)  # a fixed sign: the axes follow the data


def test_a_registered_gallery_is_listed_and_rendered_with_its_own_options(tmp_path: Path) -> None:
    from genbench.errors import GenbenchError
    from genbench.galleries import GALLERIES, register_gallery, render
    from genbench.galleries.core import save_png_grid

    @register_gallery("test-noise", needs=frozenset({"sample"}), description="noise for a test")
    def noise(run, out_path, *, generator, n: int = 2):
        return save_png_grid(torch.rand(n * n, 1, 28, 28, generator=generator), out_path, n)

    try:
        run_dir = make_vae_run(tmp_path / "synthetic" / "vae" / "run", latent_dim=2, steps=1)
        res = CliRunner().invoke(__import__("genbench.cli", fromlist=["app"]).app, ["gallery"])
        assert res.exit_code == 0 and "test-noise" in res.output and "manifold" in res.output
        a = render(run_dir, "test-noise", tmp_path / "a.png", seed=4, n=3)
        b = render(run_dir, "test-noise", tmp_path / "b.png", seed=4, n=3)
        assert Image.open(a).size == (3 * 30 + 2, 3 * 30 + 2) and a.read_bytes() == b.read_bytes()
        with pytest.raises(GenbenchError, match="does not take steps"):
            render(run_dir, "test-noise", tmp_path / "c.png", steps=3)
        with pytest.raises(ValueError, match="registered twice"):
            register_gallery("samples", needs=frozenset(), description="")(noise)
    finally:
        GALLERIES.pop("test-noise", None)


def test_a_gallery_not_meant_for_the_model_is_left_out_of_the_report(tmp_path: Path) -> None:
    """A conditional model's label does the editing: the report shows its analogies and says
    nothing about latent arithmetic; asked for directly, arithmetic is a one-line error."""
    from genbench.galleries import NotApplicable, render, render_all

    run_dir = make_run(tmp_path / "synthetic" / "cvae" / "run", "cvae", steps=0)
    made = render_all(run_dir, tmp_path / "out", n=2)
    assert "analogies" in made.images and "samples" in made.images
    assert "arithmetic" not in made.images and "arithmetic" not in made.skipped
    with pytest.raises(NotApplicable, match="--kind analogies"):
        render(run_dir, "arithmetic", tmp_path / "a.png")


def test_the_report_says_only_what_a_reader_would_not_expect(tmp_path: Path) -> None:
    """Galleries not meant for a model (the 2-D manifold of a 4-d latent, sweeps on data without
    attributes, arithmetic of a conditional model) are recorded as not applicable and left out of
    the report; a gallery that fails is still named under "Not shown" with its error."""
    import json
    import shutil

    from genbench.galleries import GALLERIES, register_gallery, render_all
    from genbench.report.build import build_report
    from genbench.report_cli import draw_for_report

    root = tmp_path / "results"
    runs = {m: make_run(root / "synthetic" / m / f"smoke-dynamic-seed0-{m}", m, steps=2)
            for m in ("vae", "cvae")}
    for run in runs.values():
        (run / "metrics.json").write_text(json.dumps({"status": "finished", "test_elbo": -300.0}))
    made = render_all(runs["cvae"], tmp_path / "cvae", n=2, steps=3)
    assert made.skipped == {} and "analogies" in made.images
    assert {"manifold", "sweeps", "arithmetic"} <= set(made.not_applicable)
    na = made.not_applicable
    assert "2-D latent" in na["manifold"] and "no attributes" in na["sweeps"]
    draw_for_report(root)  # where models are loaded; the report places the files
    text = (build_report(root, tmp_path / "quiet").out / "report.md").read_text()
    assert "Galleries" in text and "Not shown" not in text and "2-D latent" not in text
    assert "galleries/cvae/analogies.png" in text and "galleries/vae/samples.png" in text

    @register_gallery("test-broken", needs=frozenset({"sample"}), description="fails for a test")
    def broken(run, out_path, *, generator):
        raise RuntimeError("decoder exploded")

    try:
        for run in runs.values():
            shutil.rmtree(run / "galleries")  # drawn again, with the broken gallery registered
        draw_for_report(root)
    finally:
        GALLERIES.pop("test-broken", None)
    text = (build_report(root, tmp_path / "loud").out / "report.md").read_text()
    assert text.count("Not shown: test-broken: failed — RuntimeError: decoder exploded.") == 2
    assert "2-D latent" not in text
