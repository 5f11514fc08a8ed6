"""log p(x|y) of a joint model (iwae_given_y) against a linear-Gaussian joint model whose
log p(x, y), log p(y) and log p(x|y) are exact: exact proposals give the exact value for any k,
poor ones give bounds below each part that tighten with k, the difference is no bound, and the
chunk size never changes the numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from genbench.contract import capabilities, missing_reason
from genbench.metrics.conditional import conditional_log_likelihood, joint_bound, label_bound

pytestmark = pytest.mark.usefixtures("one_thread")

D, P, L = 2, 4, 2  # latent, pixels (1 x 2 x 2), label dimensions


class LinearJoint(nn.Module):
    """z ~ N(0, I), x|z ~ N(Wz + b, sx^2 I), y|z ~ N(Vz + c, sy^2 I), with the exact posteriors
    p(z|x, y) and p(z|y) as proposals, their covariances scaled by ``widen`` and means moved by
    ``shift`` (1 and 0: exact)."""

    def __init__(self, widen_joint: float = 1.0, widen_labels: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W, self.b = torch.randn(P, D, generator=g), torch.randn(P, generator=g)
        self.V, self.c = torch.randn(L, D, generator=g), torch.randn(L, generator=g)
        self.sx, self.sy = 0.5, 0.7
        self.widen_joint, self.widen_labels, self.shift = widen_joint, widen_labels, shift

    def prior(self):
        return Independent(Normal(torch.zeros(D), torch.ones(D)), 1)

    def decode(self, z):
        return Independent(Normal((z @ self.W.T + self.b).view(-1, 1, 2, 2), self.sx), 3)

    def label_log_prob(self, z, y):
        return Independent(Normal(z @ self.V.T + self.c, self.sy), 1).log_prob(y)

    def _posterior(self, parts, widen):
        """p(z | observations) for [(matrix, offset, sd, value)], scaled by widen, moved by shift."""
        precision = torch.eye(D) + sum(m.T @ m / s**2 for m, _, s, _ in parts)
        cov = torch.linalg.inv(precision)
        mean = sum((v - o) @ m / s**2 for m, o, s, v in parts) @ cov
        return MultivariateNormal(mean + self.shift, covariance_matrix=cov * widen**2)

    def encode_joint(self, x, y, measures=None):
        if measures is not None:  # side information must arrive with its own images
            assert torch.equal(measures[:, 0], x.flatten(1)[:, 0])
        return self._posterior([(self.W, self.b, self.sx, x.flatten(1)), (self.V, self.c, self.sy, y)],
                               self.widen_joint)

    def encode_labels(self, y):
        return self._posterior([(self.V, self.c, self.sy, y)], self.widen_labels)


def exact(model: LinearJoint, x: torch.Tensor, y: torch.Tensor):
    """(log p(x, y), log p(y), log p(x|y)) per row, float64, from the Gaussian marginals."""
    A = torch.cat([model.W, model.V]).double()
    noise = torch.cat([torch.full((P,), model.sx**2), torch.full((L,), model.sy**2)]).double()
    joint = MultivariateNormal(torch.cat([model.b, model.c]).double(), A @ A.T + torch.diag(noise))
    labels = MultivariateNormal(model.c.double(), covariance_matrix=(A[P:] @ A[P:].T
                                                                      + torch.diag(noise[P:])))
    lxy = joint.log_prob(torch.cat([x.flatten(1), y], 1).double())
    ly = labels.log_prob(y.double())
    return lxy, ly, lxy - ly


def data(model: LinearJoint, n: int = 64):
    """n draws (x, y) from the model itself."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, D, generator=g)
    x = (z @ model.W.T + model.b + model.sx * torch.randn(n, P, generator=g)).view(n, 1, 2, 2)
    y = z @ model.V.T + model.c + model.sy * torch.randn(n, L, generator=g)
    return x, y


def test_exact_proposals_give_the_exact_conditional_likelihood_for_any_k() -> None:
    model = LinearJoint()
    x, y = data(model)
    lxy, ly, lxgy = exact(model, x, y)
    for k in (1, 7):
        est, joint, labels = conditional_log_likelihood(model, x, y, k=k, seed=3, chunk=32)
        torch.testing.assert_close(joint, lxy, atol=2e-4, rtol=0)
        torch.testing.assert_close(labels, ly, atol=2e-4, rtol=0)
        torch.testing.assert_close(est, lxgy, atol=3e-4, rtol=0)
    assert float((lxgy - lxy).abs().min()) > 0.5  # log p(x|y) is not log p(x, y): the test has teeth


def test_poor_proposals_bound_each_part_below_and_tighten_with_k() -> None:
    model = LinearJoint(widen_joint=1.8, widen_labels=1.8, shift=0.4)
    x, y = data(model, 256)
    lxy, ly, lxgy = exact(model, x, y)
    gaps = {}
    for k in (1, 10, 1000):
        est, joint, labels = conditional_log_likelihood(model, x, y, k=k, seed=5, chunk=4096)
        assert float(joint.mean()) < float(lxy.mean()) and float(labels.mean()) < float(ly.mean())
        gaps[k] = (float(lxy.mean() - joint.mean()), float(ly.mean() - labels.mean()),
                   abs(float(est.mean() - lxgy.mean())))
    for part in range(3):  # each bound, and the estimate, rises toward the exact value
        assert gaps[1][part] > gaps[10][part] > gaps[1000][part]
    assert gaps[1][0] > 0.3 and gaps[1000][0] < 0.05 and gaps[1000][2] < 0.05


def test_the_difference_is_no_lower_bound() -> None:
    """An exact joint proposal and a poor label proposal: L_k(y) < log p(y) makes the estimate
    of log p(x|y) too high, so it is not a lower bound (as the metric's description says)."""
    model = LinearJoint(widen_labels=3.0, shift=0.0)
    x, y = data(model, 256)
    _, _, lxgy = exact(model, x, y)
    est, _, _ = conditional_log_likelihood(model, x, y, k=5, seed=2, chunk=64)
    assert float(est.mean() - lxgy.mean()) > 0.2


def test_chunk_size_changes_neither_the_draws_nor_the_numbers() -> None:
    model = LinearJoint(widen_joint=1.5, widen_labels=1.5, shift=0.3)
    x, y = data(model, 20)
    a = joint_bound(model, x, y, k=50, seed=9, chunk=7)
    b = joint_bound(model, x, y, k=50, seed=9, chunk=10_000)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    c, d = (label_bound(model, x, y, k=50, seed=9, chunk=ch) for ch in (3, 10_000))
    torch.testing.assert_close(c, d, atol=1e-5, rtol=0)
    # k draws whatever the chunk: k = 50 differs from k = 49 (the 50th draw counts)
    assert not torch.allclose(a, joint_bound(model, x, y, k=49, seed=9, chunk=7))
    # an image's number does not depend on the other images in its batch (shards, offsets)
    tail = joint_bound(model, x[12:], y[12:], k=50, seed=9, chunk=7, offset=12)
    torch.testing.assert_close(tail, a[12:], atol=1e-5, rtol=0)


def test_the_capability_needs_all_three_hooks() -> None:
    assert "joint" in capabilities(LinearJoint)

    class NoLabels(LinearJoint):
        encode_labels = None

    assert "joint" not in capabilities(NoLabels)
    reason = missing_reason(frozenset({"joint"}), capabilities(NoLabels))
    assert reason is not None and "encode_labels" in reason


def test_jmvae_gets_it_and_a_vae_is_told_why_not(tmp_path) -> None:
    """A smoke run: JMVAE records log p(x|y) as the difference of its two parts; a VAE gets
    n/a naming the hooks that would unlock it."""
    from run_folders import smoke_run_metrics

    jm = smoke_run_metrics("jmvae", tmp_path / "a", "iwae_given_y")
    assert abs(jm["test_iwae_given_y"] - (jm["test_iwae_joint"] - jm["test_iwae_labels"])) < 1e-6
    assert jm["test_iwae_given_y_stderr"] > 0 and jm["test_iwae_given_y_bpd"] > 0
    vae = smoke_run_metrics("vae", tmp_path / "b", "iwae_given_y")
    assert "test_iwae_given_y" not in vae
    assert "encode_joint" in vae["not_applicable"]["test_iwae_given_y"]


def test_shards_give_the_unsharded_numbers_and_their_own_measures() -> None:
    """Under a sharder (images split over workers, as `--executor ray` does) each shard gets its
    images' measures and draws its images' noise: the numbers equal the unsharded ones."""
    from genbench.metrics import shards

    class LocalSharder:
        shards = 3

        def __call__(self, fn, jobs):
            return [fn(model, **job) for job in jobs]

    model = LinearJoint(widen_joint=1.5, widen_labels=1.5, shift=0.3)
    x, y = data(model, 24)
    measures = x.flatten(1)[:, :1].clone()  # a "measure" of each image: its first pixel
    whole = conditional_log_likelihood(model, x, y, k=20, seed=4, chunk=40, measures=measures)
    token = shards.install(LocalSharder())
    try:
        split = conditional_log_likelihood(model, x, y, k=20, seed=4, chunk=40, measures=measures)
    finally:
        shards.uninstall(token)
    for a, b in zip(whole, split, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
