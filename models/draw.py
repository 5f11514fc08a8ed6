"""DRAW (Gregor, Danihelka, Graves, Rezende & Wierstra 2015), "DRAW: A Recurrent Neural
Network For Image Generation": a sequential VAE that draws on a canvas in T steps.

For t = 1..T (their eqs. 3-8):

    x_hat_t = x - sigmoid(c_{t-1})                       error image
    r_t     = read(x, x_hat_t, h_dec_{t-1})              glimpse
    h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t     ~ q(z_t | h_enc_t) = N(mu_t, sigma_t)         so q(z_t | x, z_<t)
    h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
    c_t     = c_{t-1} + write(h_dec_t)

and p(x | z_1..T) = Bernoulli(sigmoid(c_T)) on binarized data (a Gaussian around it with one
learned std on continuous data, as the VAE). Each z_t has an N(0, I) prior, so the prior over
the concatenation z = [z_1..z_T] is N(0, I) of dimension T * z_dim and the decoder is a
deterministic function of it: ``prior()``, ``decode(z)`` and ``generate(z)`` are over the
concatenation, which is what AIS and BDMC need.

The posterior is sequential (z_t's distribution depends on z_<t through h_dec). It is still
one distribution over the concatenation: ``encode(x)`` returns it as a
:class:`SequentialPosterior` (``rsample`` runs the encoder, ``log_prob`` runs it fed the given
z), so genbench's ELBO (with a Monte Carlo KL), IWAE, reconstructions and AIS from q apply as
to any VAE. ``log_importance_weights(x, k)`` (log p(x, z_1..T) - log q(z_1..T | x) for k joint
draws, capability "importance") gives the same weights in one pass per draw.

Attention (sec. 3.2): an N x N grid of Gaussian filters with centre (g_X, g_Y), stride delta,
variance sigma^2 and intensity gamma, all from one linear map of h_dec;
read = gamma [F_Y x F_X^T, F_Y x_hat F_X^T] and write = (1 / gamma_hat) F_Y^T w_t F_X. With
``attention = false`` read is [x, x_hat] and write a linear map to the whole canvas (their
"DRAW without attention", 87.40 nats against 80.97 with, binarized MNIST). Colour images get
the same filters on every channel (as their SVHN / CIFAR runs).

Convolutional DRAW (Gregor et al. 2016) replaces the LSTMs' fully connected maps with
convolutions and the latents with feature maps: it is the ``convdraw`` plugin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.kit.latent import gaussian_kl, standard_normal_prior
from genbench.kit.nn import adam
from genbench.kit.observation import learned_log_std, observation_log_prob, observation_model
from genbench.settings import nonnegative, positive

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
IMPORTANCE_ROWS = 4096  # (draw, image) rows run at once by log_importance_weights: memory only


@dataclass(frozen=True)
class DRAWConfig:
    steps: int = positive(16)  # T (the paper: 64 on MNIST with attention)
    hidden: int = positive(256)  # LSTM units of encoder and decoder (the paper: 256)
    z_dim: int = positive(10)  # latent size per step (the paper: 100)
    attention: bool = True
    read_n: int = positive(2)  # read grid N x N (the paper: 2 on MNIST)
    write_n: int = positive(5)  # write grid (the paper: 5 on MNIST)
    lr: float = positive(1e-3)
    grad_clip: float = nonnegative(10.0)  # each gradient element clipped to +-grad_clip (0: off)


def filterbank(params: torch.Tensor, n: int, height: int, width: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian filterbanks from (g~X, g~Y, log sigma^2, log delta~, log gamma), (B, 5).

    Returns F_X (B, N, A), F_Y (B, N, B') with rows normalized to sum 1, and gamma (B,).
    Eqs. 21-26 of Gregor et al., pixels indexed 1..A as in the paper:
    g_X = (A + 1) / 2 (g~X + 1), delta = (max(A, B) - 1) / (N - 1) delta~,
    mu_X_i = g_X + (i - N / 2 - 0.5) delta.
    """
    gx_, gy_, log_var, log_delta, log_gamma = params.unbind(-1)
    gx = (width + 1) / 2 * (gx_ + 1)
    gy = (height + 1) / 2 * (gy_ + 1)
    delta = (max(height, width) - 1) / max(n - 1, 1) * log_delta.exp()
    i = torch.arange(1, n + 1, device=params.device, dtype=params.dtype)
    offsets = (i - n / 2 - 0.5)[None] * delta[:, None]  # (B, N)
    return (_bank(gx[:, None] + offsets, log_var, width), _bank(gy[:, None] + offsets, log_var, height),
            log_gamma.exp())


def _bank(mu: torch.Tensor, log_var: torch.Tensor, size: int) -> torch.Tensor:
    """exp(-(a - mu_i)^2 / (2 sigma^2)) over pixels a = 1..size, each row normalized: (B, N, size)."""
    a = torch.arange(1, size + 1, device=mu.device, dtype=mu.dtype)
    f = torch.exp(-(a[None, None] - mu[..., None]).square() / (2 * log_var.exp()[:, None, None]))
    return f / (f.sum(-1, keepdim=True) + 1e-8)


def read_glimpse(img: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """F_Y img F_X^T per channel: (B, C, H, W) -> (B, C, N, N)."""
    return torch.einsum("bny,bcyx,bmx->bcnm", fy, img, fx)


def write_patch(patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """F_Y^T patch F_X per channel: (B, C, N, N) -> (B, C, H, W)."""
    return torch.einsum("bny,bcnm,bmx->bcyx", fy, patch, fx)


class SequentialPosterior(Distribution):
    """DRAW's q(z_1..T | x) = prod_t N(z_t; mu_t, sigma_t), as one distribution over the
    concatenation z (event shape (T * z_dim,), batch shape (N,)); Conv DRAW's too, whose
    ``infer`` takes the same ``z``, ``noise`` and ``mean``.

    mu_t and sigma_t depend on x and on z_<t (through the decoder's state), so there is no
    closed form beyond the sequence itself: ``rsample`` runs the encoder drawing z_t step by
    step, and ``log_prob(z)`` runs it again fed the given z (differentiable in z, which HMC
    from the encoder needs). With it DRAW has an ``encode`` like any VAE, and ELBO (Monte
    Carlo KL), IWAE, reconstructions and AIS from q apply unchanged. ``mean`` is the path of
    means (z_t = mu_t given the earlier means), the code a reconstruction decodes; it is not
    E_q[z] in general.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: DRAW, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        super().__init__(x.shape[:1], torch.Size([model.latent_dim]), validate_args=False)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (z, log q) of the last draw
        # draws are made later but behave as if made now: built under no_grad (as metrics
        # do), they carry no graph back to the parameters, like an eager Gaussian's loc + scale * eps
        self._grad = torch.is_grad_enabled()

    def _rows(self, lead: torch.Size) -> torch.Tensor:
        """x repeated for every leading sample: (prod(lead) * N, C, H, W)."""
        m = math.prod(lead)
        return self.x.unsqueeze(0).expand(m, *self.x.shape).reshape(m * self.x.shape[0], *self.x.shape[1:])

    def _draw(self, lead: torch.Size, noise: torch.Tensor | None) -> torch.Tensor:
        with torch.set_grad_enabled(self._grad):
            out = self.model.infer(self._rows(lead), noise=noise)
        z = out["z"].view(*lead, *self.batch_shape, -1)
        self._last = (z, out["log_q"].view(*lead, *self.batch_shape))
        return z

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self._draw(torch.Size(sample_shape), None)

    def reparameterize(self, eps: torch.Tensor) -> torch.Tensor:
        """z for standard-normal noise eps (..., N, D): z_t = mu_t(x, z_<t) + sigma_t eps_t.
        genbench's ``sampling.reparameterize`` calls it with counter-based noise addressed by
        (image, draw), so IWAE and the ELBO do not depend on how draws are chunked."""
        return self._draw(eps.shape[:-2], eps.reshape(-1, eps.shape[-1]))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._last is not None and value is self._last[0]:  # the draw just made: no rerun
            return self._last[1]
        lead = value.shape[:-2]
        out = self.model.infer(self._rows(lead), z=value.reshape(-1, value.shape[-1]))
        return out["log_q"].view(*lead, *self.batch_shape)

    @property
    def mean(self) -> torch.Tensor:
        with torch.set_grad_enabled(self._grad):
            return self.model.infer(self.x, mean=True)["z"]


class SequentialCanvas:
    """The generative side DRAW and Conv DRAW share once ``canvases(z)`` gives the canvas
    logits after each of the T steps: a standard normal prior over the concatenation
    z = [z_1..z_T], and the last canvas read through the observation model (the decoder's
    distribution, its mean image, samples). A model mixing it in has ``latent_dim``,
    ``info``, ``log_std`` and ``canvases``."""

    latent_dim: int
    info: DataInfo
    log_std: torch.Tensor
    canvases: Callable[[torch.Tensor], list[torch.Tensor]]

    def prior(self) -> Distribution:
        return standard_normal_prior(self.latent_dim, self)

    def decode(self, z: torch.Tensor) -> Distribution:
        return observation_model(self.info.observation, self.canvases(z)[-1], self.log_std)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.canvases(z)[-1])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.log_std.device)
        return self.generate(z)


@register_model("draw")
class DRAW(SequentialCanvas, nn.Module):
    """DRAW (Gregor et al. 2015): recurrent VAE with Gaussian read/write attention on a canvas."""

    Config = DRAWConfig
    # quick trains without attention: on mnist-5k with attention (read 2 or 5, write 5) the
    # model stayed at the mean image (KL < 0.1 nat, ELBO about -212) through the first 160
    # steps at lr 1e-3 and 3e-3, while without attention it reached -174 and was climbing;
    # attention needs the paper's long training (their T = 64), which the paper preset keeps.
    presets = {
        "smoke": {"steps": 3, "hidden": 32, "z_dim": 4},
        "quick": {"steps": 16, "hidden": 128, "z_dim": 10, "attention": False, "epochs": 20},
        "paper": {"steps": 64, "hidden": 256, "z_dim": 100},
    }

    def __init__(self, config: DRAWConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        c, h, w = info.shape
        hid = config.hidden
        read_size = 2 * c * (config.read_n ** 2 if config.attention else h * w)
        self.encoder = nn.LSTMCell(read_size + hid, hid)
        self.q_head = nn.Linear(hid, 2 * config.z_dim)  # [mu, log sigma^2]
        self.decoder = nn.LSTMCell(config.z_dim, hid)
        if config.attention:
            self.read_params = nn.Linear(hid, 5)
            self.write_params = nn.Linear(hid, 5)
            self.write_head = nn.Linear(hid, c * config.write_n ** 2)
        else:
            self.write_head = nn.Linear(hid, c * h * w)
        self.log_std = learned_log_std(info)
        if config.grad_clip:  # by value, in a hook: the runner owns backward and the step
            clip = config.grad_clip
            for p in self.parameters():
                if p.requires_grad:
                    p.register_hook(lambda g: g.clamp(-clip, clip))

    @property
    def latent_dim(self) -> int:
        return self.config.steps * self.config.z_dim

    # -- read and write -----------------------------------------------------------------
    def read(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> torch.Tensor:
        if not self.config.attention:
            return torch.cat([x.flatten(1), x_hat.flatten(1)], 1)
        _, hgt, wid = self.info.shape
        fx, fy, gamma = filterbank(self.read_params(h_dec), self.config.read_n, hgt, wid)
        both = read_glimpse(torch.cat([x, x_hat], 1), fx, fy)  # (B, 2C, N, N)
        return gamma[:, None] * both.flatten(1)

    def write(self, h_dec: torch.Tensor) -> torch.Tensor:
        """The canvas update (B, C, H, W) from the decoder state."""
        c, hgt, wid = self.info.shape
        if not self.config.attention:
            return self.write_head(h_dec).view(-1, c, hgt, wid)
        n = self.config.write_n
        fx, fy, gamma = filterbank(self.write_params(h_dec), n, hgt, wid)
        patch = self.write_head(h_dec).view(-1, c, n, n)
        return write_patch(patch, fx, fy) / gamma[:, None, None, None]

    # -- the generative side: over the concatenation z = [z_1..z_T] (and SequentialCanvas) --
    def canvases(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The canvas logits c_1..c_T (each (..., C, H, W)) for z (..., T * z_dim)."""
        lead = z.shape[:-1]
        zs = z.reshape(-1, self.config.steps, self.config.z_dim)  # (B, T, z_dim)
        b, hid = zs.shape[0], self.config.hidden
        state = (zs.new_zeros(b, hid), zs.new_zeros(b, hid))
        canvas = zs.new_zeros(b, *self.info.shape)
        out = []
        for t in range(self.config.steps):
            state = self.decoder(zs[:, t], state)
            canvas = canvas + self.write(state[0])
            out.append(canvas.view(*lead, *self.info.shape))
        return out

    # -- the inference side ---------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z_1..T | x) as one distribution over the concatenation (see :class:`SequentialPosterior`)."""
        return SequentialPosterior(self, x)

    def infer(self, x: torch.Tensor, generator: torch.Generator | None = None, *,
              z: torch.Tensor | None = None, mean: bool = False, noise: torch.Tensor | None = None
              ) -> dict[str, torch.Tensor]:
        """One pass of the encoder and decoder with z_t ~ q(z_t | x, z_<t), reparameterized.

        ``z`` (B, T * z_dim) fixes the latents instead (to evaluate q(z | x) at them);
        ``mean`` takes z_t = mu_t at every step; ``noise`` (B, T * z_dim) fixes the standard
        normal noise. Returns per image: ``log_lik`` log p(x | z), ``kl`` sum_t KL(q(z_t|.) ||
        N(0, I)) in closed form (``kl_steps`` (T, B) each step's), ``log_q`` log q(z | x),
        ``log_w`` log p(x, z) - log q(z | x), ``z`` (B, T * z_dim) and ``canvases``
        (T, B, C, H, W) logits.
        """
        b, hid, zd = x.shape[0], self.config.hidden, self.config.z_dim
        enc = (x.new_zeros(b, hid), x.new_zeros(b, hid))
        dec = (x.new_zeros(b, hid), x.new_zeros(b, hid))
        canvas = torch.zeros_like(x)
        kl = log_q = log_prior = x.new_zeros(b)
        zs, canvases, kl_steps = [], [], []
        for t in range(self.config.steps):
            x_hat = x - torch.sigmoid(canvas)
            enc = self.encoder(torch.cat([self.read(x, x_hat, dec[0]), dec[0]], 1), enc)
            mu, logvar = self.q_head(enc[0]).chunk(2, dim=-1)
            if z is not None:
                z_t = z[:, t * zd:(t + 1) * zd]
                eps = (z_t - mu) * (-0.5 * logvar).exp()
            elif noise is not None:
                eps = noise[:, t * zd:(t + 1) * zd]
                z_t = mu + eps * (0.5 * logvar).exp()
            else:
                eps = (torch.zeros_like(mu) if mean else
                       torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype))
                z_t = mu + eps * (0.5 * logvar).exp()
            kl_steps.append(gaussian_kl(mu, logvar))
            kl = kl + kl_steps[-1]
            log_q = log_q - (0.5 * (eps.square() + logvar) + HALF_LOG_2PI).sum(-1)
            log_prior = log_prior - (0.5 * z_t.square() + HALF_LOG_2PI).sum(-1)
            dec = self.decoder(z_t, dec)
            canvas = canvas + self.write(dec[0])
            zs.append(z_t)
            canvases.append(canvas)
        log_lik = observation_log_prob(self.info.observation, canvas, x, self.log_std)
        return {"log_lik": log_lik, "kl": kl, "kl_steps": torch.stack(kl_steps), "log_q": log_q,
                "log_w": log_lik + log_prior - log_q, "z": torch.cat(zs, -1),
                "canvases": torch.stack(canvases)}

    @torch.no_grad()
    def log_importance_weights(self, x: torch.Tensor, k: int,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z_1..T) - log q(z_1..T | x) for k joint draws per image: (k, N).

        The draws run ``IMPORTANCE_ROWS`` (draw, image) rows at a time (memory only).
        """
        n = x.shape[0]
        per = max(1, IMPORTANCE_ROWS // n)
        out = []
        for start in range(0, k, per):
            m = min(per, k - start)
            xr = x.unsqueeze(0).expand(m, *x.shape).reshape(m * n, *x.shape[1:])
            out.append(self.infer(xr, generator)["log_w"].view(m, n))
        return torch.cat(out)

    @torch.no_grad()
    def compression_steps(self, x: torch.Tensor, eps: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL of each step (T, N) in nats, mean over the draws of eps (S, N, latent_dim);
        decoder means (T, N, C, H, W) when only z_1..t are sent: the path of posterior means
        for the first t steps, the prior's mean (0) for the rest). The ``compression`` metric."""
        s, n = eps.shape[:2]
        xr = x.unsqueeze(0).expand(s, *x.shape).reshape(s * n, *x.shape[1:])
        kl = self.infer(xr, noise=eps.reshape(s * n, -1))["kl_steps"].view(-1, s, n).mean(1)
        z = self.infer(x, mean=True)["z"]  # (N, T * z_dim)
        steps = self.config.steps
        keep = torch.arange(self.latent_dim, device=z.device) // self.config.z_dim  # each coordinate's step
        partial = torch.stack([z * (keep < t) for t in range(1, steps + 1)])  # (T, N, D)
        return kl, self.generate(partial.flatten(0, 1)).view(steps, n, *self.info.shape)

    @torch.no_grad()
    def reconstruction_steps(self, x: torch.Tensor, generator: torch.Generator | None = None
                             ) -> torch.Tensor:
        """sigmoid of the canvas after each step while reconstructing x: (T, N, C, H, W)."""
        return torch.sigmoid(self.infer(x, generator)["canvases"])

    @torch.no_grad()
    def sample_steps(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """sigmoid of the canvas after each step while sampling: (T, n, C, H, W)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.log_std.device)
        return torch.sigmoid(torch.stack(self.canvases(z)))

    # -- training -------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr, fused=False)  # foreach: its recorded numbers

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The negative ELBO, -(E_q[log p(x|z)] - sum_t KL_t), per image (the runner steps Adam)."""
        out = self.infer(batch.x)
        loss = -(out["log_lik"] - out["kl"]).mean()
        return {"loss": loss, "recon": out["log_lik"].mean().detach(), "kl": out["kl"].mean().detach()}
