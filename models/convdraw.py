"""Convolutional DRAW (Gregor, Besse, Rezende, Danihelka & Wierstra 2016), "Towards Conceptual
Compression": DRAW whose LSTMs are convolutional and whose latent at each of T steps is a
feature map, so that early steps carry the global shape and later ones the detail.

For t = 1..T (one layer of latents, no attention):

    e_t     = x - sigmoid(c_{t-1})                            error image
    r_t     = Conv([x, e_t])                                   read: strided conv to h x w
    h_enc_t = ConvLSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t     ~ q(z_t | h_enc_t) = N(mu_t, sigma_t)              (z_ch, h, w), so q(z_t | x, z_<t)
    h_dec_t = ConvLSTM_dec(h_dec_{t-1}, z_t)
    c_t     = c_{t-1} + ConvTranspose(h_dec_t)                 write: back to the image size

and p(x | z_1..T) = Bernoulli(sigmoid(c_T)) on binarized data (a Gaussian around it with one
learned std on continuous data). The paper's prior p(z_t | h_dec_{t-1}) is learned; here, as in
DRAW (Gregor et al. 2015), every z_t has an N(0, I) prior, so the prior over the concatenation
z = [z_1..z_T] is N(0, I) and the decoder a deterministic function of it: ``prior()``,
``decode(z)`` and ``generate(z)`` are over the concatenation, which AIS and BDMC need. The
multi-layer "conceptual" hierarchy of the paper is not built (one layer of latents).

``encode(x)`` is the sequential q(z_1..T | x) as one distribution over the concatenation
(DRAW's :class:`SequentialPosterior`), so ELBO (Monte Carlo KL), IWAE, reconstructions and AIS
from q apply as to DRAW; ``log_importance_weights`` gives the IWAE weights in one pass per draw.
Its ``reparameterize(eps)`` maps standard-normal noise to q's draws (z_t = mu_t + sigma_t eps_t
along the sequence), so genbench's counter-based noise makes IWAE and the ELBO independent of
how the images and draws are chunked.

``compression_steps`` gives what the ``compression`` metric reads: the KL of each step (the
bits-back cost of sending z_t) and the decoder's mean when only the first t steps are sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from genbench_models.draw import SequentialCanvas, SequentialPosterior
from torch import nn
from torch.distributions import Distribution

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.kit.nn import ConvTranspose2d, adam
from genbench.kit.observation import learned_log_std, observation_log_prob
from genbench.settings import nonnegative, positive

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
IMPORTANCE_ROWS = 2048  # (draw, image) rows run at once by log_importance_weights: memory only


@dataclass(frozen=True)
class ConvDRAWConfig:
    steps: int = positive(16)  # T
    hidden: int = positive(32)  # channels of each convolutional LSTM's state
    z_channels: int = positive(4)  # channels of the latent feature map per step
    stride: int = positive(4)  # read/write resolution: the image down-sampled by this (largest divisor used)
    kernel: int = positive(3)  # the LSTMs' and the posterior's convolution size (the paper: 5)
    lr: float = positive(1e-3)
    grad_clip: float = nonnegative(10.0)  # each gradient element clipped to +-grad_clip (0: off)


class ConvLSTMCell(nn.Module):
    """An LSTM whose input-to-state and state-to-state maps are one convolution
    (Shi et al. 2015): gates (4 * hidden, h, w) from [input, h]."""

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, inp: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, g, o = self.gates(torch.cat([inp, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def effective_stride(height: int, width: int, stride: int) -> int:
    """The largest s <= stride dividing both sides, so read and write map h x w exactly."""
    return max(s for s in range(1, max(1, stride) + 1) if height % s == 0 and width % s == 0)


@register_model("convdraw")
class ConvDRAW(SequentialCanvas, nn.Module):
    """Convolutional DRAW (Gregor et al. 2016): convolutional LSTMs and a latent feature map per step."""

    Config = ConvDRAWConfig
    presets = {
        "smoke": {"steps": 3, "hidden": 8, "z_channels": 2},
        "quick": {"steps": 8, "hidden": 16, "z_channels": 2, "epochs": 20},
        # larger and at half resolution, with the paper's 5x5 kernels; not its exact sizes
        "paper": {"steps": 32, "hidden": 64, "z_channels": 8, "stride": 2, "kernel": 5},
    }

    def __init__(self, config: ConvDRAWConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        c, h, w = info.shape
        s = effective_stride(h, w, config.stride)
        self.grid = (h // s, w // s)  # the latent's and the LSTMs' resolution
        k, pad = 2 * s - s % 2, s // 2  # read: (H, W) -> (H/s, W/s); write: back exactly
        hid, kern = config.hidden, config.kernel
        self.reader = nn.Conv2d(2 * c, hid, k, stride=s, padding=pad)
        self.encoder = ConvLSTMCell(2 * hid, hid, kern)  # input: [r_t, h_dec]
        self.q_head = nn.Conv2d(hid, 2 * config.z_channels, kern, padding=kern // 2)
        self.decoder = ConvLSTMCell(config.z_channels, hid, kern)
        # one or three output channels: genbench's transposed convolution, a matmul and a fold
        # where oneDNN's is slow (46% of IWAE's time on the CPU; the same state_dict)
        self.writer = ConvTranspose2d(hid, c, k, stride=s, padding=pad)
        self.log_std = learned_log_std(info)
        if config.grad_clip:  # by value, in a hook: the runner owns backward and the step
            clip = config.grad_clip
            for p in self.parameters():
                if p.requires_grad:
                    p.register_hook(lambda g: g.clamp(-clip, clip))

    @property
    def step_dim(self) -> int:
        """Latent coordinates per step: z_channels x h x w."""
        return self.config.z_channels * self.grid[0] * self.grid[1]

    @property
    def latent_dim(self) -> int:
        return self.config.steps * self.step_dim

    def _zeros(self, b: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = like.new_zeros(b, self.config.hidden, *self.grid)
        return z, z

    # -- the generative side: over the concatenation z = [z_1..z_T] (and SequentialCanvas) --
    def canvases(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The canvas logits c_1..c_T (each (..., C, H, W)) for z (..., T * step_dim)."""
        lead = z.shape[:-1]
        zs = z.reshape(-1, self.config.steps, self.config.z_channels, *self.grid)  # (B, T, z_ch, h, w)
        dec = self._zeros(zs.shape[0], zs)
        canvas = zs.new_zeros(zs.shape[0], *self.info.shape)
        out = []
        for t in range(self.config.steps):
            dec = self.decoder(zs[:, t], dec)
            canvas = canvas + self.writer(dec[0])
            out.append(canvas.view(*lead, *self.info.shape))
        return out

    # -- the inference side ---------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z_1..T | x) over the concatenation: DRAW's sequential q, which runs this model's
        :meth:`infer` (see :class:`genbench_models.draw.SequentialPosterior`)."""
        return SequentialPosterior(self, x)

    def infer(self, x: torch.Tensor, generator: torch.Generator | None = None, *,
              z: torch.Tensor | None = None, noise: torch.Tensor | None = None,
              mean: bool = False) -> dict[str, torch.Tensor]:
        """One pass of encoder and decoder with z_t ~ q(z_t | x, z_<t), reparameterized.

        ``z`` (B, T * step_dim) fixes the latents (to evaluate q at them); ``noise`` (B, same)
        fixes the noise; ``mean`` takes z_t = mu_t at every step. Returns per image:
        ``log_lik`` log p(x | z), ``kl_steps`` (T, B) KL(q(z_t | .) || N(0, I)) in closed
        form, ``kl`` their sum, ``log_q``, ``log_w`` log p(x, z) - log q(z | x), ``z`` and
        ``canvases`` (T, B, C, H, W) logits.
        """
        b, zc, d = x.shape[0], self.config.z_channels, self.step_dim
        enc, dec = self._zeros(b, x), self._zeros(b, x)
        canvas = torch.zeros_like(x)
        log_q = log_prior = x.new_zeros(b)
        zs, kls, canvases = [], [], []
        for t in range(self.config.steps):
            error = x - torch.sigmoid(canvas)
            enc = self.encoder(torch.cat([self.reader(torch.cat([x, error], 1)), dec[0]], 1), enc)
            mu, logvar = self.q_head(enc[0]).flatten(1).view(b, 2, d).unbind(1)  # (B, D_t) each
            if z is not None:
                z_t = z[:, t * d:(t + 1) * d]
                e = (z_t - mu) * (-0.5 * logvar).exp()
            else:
                if noise is not None:
                    e = noise[:, t * d:(t + 1) * d]
                elif mean:
                    e = torch.zeros_like(mu)
                else:
                    e = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                z_t = mu + e * (0.5 * logvar).exp()
            kls.append(0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1))
            log_q = log_q - (0.5 * (e.square() + logvar) + HALF_LOG_2PI).sum(-1)
            log_prior = log_prior - (0.5 * z_t.square() + HALF_LOG_2PI).sum(-1)
            dec = self.decoder(z_t.view(b, zc, *self.grid), dec)
            canvas = canvas + self.writer(dec[0])
            zs.append(z_t)
            canvases.append(canvas)
        log_lik = observation_log_prob(self.info.observation, canvas, x, self.log_std)
        kl_steps = torch.stack(kls)
        return {"log_lik": log_lik, "kl_steps": kl_steps, "kl": kl_steps.sum(0), "log_q": log_q,
                "log_w": log_lik + log_prior - log_q, "z": torch.cat(zs, -1),
                "canvases": torch.stack(canvases)}

    @torch.no_grad()
    def log_importance_weights(self, x: torch.Tensor, k: int,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z_1..T) - log q(z_1..T | x) for k joint draws per image: (k, N)."""
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
        for the first t steps, the prior's mean (0) for the rest)."""
        s, n = eps.shape[:2]
        xr = x.unsqueeze(0).expand(s, *x.shape).reshape(s * n, *x.shape[1:])
        kl = self.infer(xr, noise=eps.reshape(s * n, -1))["kl_steps"].view(-1, s, n).mean(1)
        z = self.infer(x, mean=True)["z"]  # (N, T * D_t)
        d, steps = self.step_dim, self.config.steps
        keep = torch.arange(self.latent_dim, device=z.device) // d  # each coordinate's step
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
        return adam(self.parameters(), lr=self.config.lr)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The negative ELBO, -(E_q[log p(x|z)] - sum_t KL_t), per image (the runner steps Adam)."""
        out = self.infer(batch.x)
        loss = -(out["log_lik"] - out["kl"]).mean()
        return {"loss": loss, "recon": out["log_lik"].mean().detach(), "kl": out["kl"].mean().detach()}
