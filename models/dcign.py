"""The Deep Convolutional Inverse Graphics Network of Kulkarni, Whitney, Kohli & Tenenbaum (2015).

A VAE whose first latent units are assigned to the scene's factors -- one unit each for
azimuth, elevation and light (``FACTORS``), the rest "intrinsic" (the object) -- and which
is trained so that each assigned unit moves its factor and nothing else. Training batches
vary one thing only (:mod:`genbench.data.sweeps3d`): a factor, with the object and the other
factors fixed, or the object, with every factor fixed. For a batch that varies factor f, every
unit except f's is *clamped* (:func:`clamp_units`): in the forward pass it is replaced by its
batch mean, so the decoder must explain the batch with f's unit alone; in the backward pass
its gradient is replaced by its deviation from that mean, z_i - mean(z_i) (the paper's
section 3.2), which pulls the encoder towards a code that does not change within the batch.
Object batches clamp the three factor units and leave the intrinsic ones free. The varied
thing cycles azimuth, elevation, light, object from one step to the next.

A batch holds ``sweeps_per_batch`` sweeps of the same kind, each clamped to its own mean (the
paper's batch is one sweep; several sweeps make a step comparable with the VAE's 128 images).
The model trains on these sweeps of synthetic-3d's objects, rendered once at the data's image
size and cached; the runner's batches only count the steps. The loss is the VAE's negative
ELBO on the clamped code (closed-form KL on the encoder's mean and variance).

An edit of factor f by delta training sd moves f's unit only: z_f + delta * s_f, with s_f the
pooled within-sweep slope of the unit's mean code on the factor (in training sd), measured on
the sweeps after training (``unit_per_sd``, saved with the weights). So the ``edits`` metric
measures the paper's claim. Encoder and decoder are the VAE's (an MLP at 32x32: genbench's
convolutional stacks take 28x28 and 64x64), so the comparison with ``vae`` isolates the
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from genbench_models.vae import VAE

from genbench import register_model
from genbench.contract import Batch, DataInfo, model_device
from genbench.data import DataBundle, sweeps3d, transform
from genbench.data.render3d import FACTORS
from genbench.errors import GenbenchError
from genbench.kit.latent import gaussian_kl, reparameterize
from genbench.kit.nn import ACTIVATIONS
from genbench.kit.observation import observation_log_prob
from genbench.settings import between, one_of, positive

STEP_SEED = 7919  # mixed with the step number: which sweeps a step draws (resumable)


@dataclass(frozen=True)
class DCIGNConfig:
    """The VAE's network settings (compared network for network) plus the sweeps'."""

    hidden: tuple[int, ...] = positive((400,))
    latent_dim: int = positive(20)  # the first len(FACTORS) units are the factors'
    activation: str = one_of("relu", ACTIVATIONS)
    lr: float = positive(1e-3)
    sweep_bases: int = positive(96)  # base draws of the sweep set (each gives 4 sweeps)
    sweep_length: int = between(12, 2, None)  # images of a factor sweep (2 or more: it varies)
    sweeps_per_batch: int = positive(8)  # sweeps of one kind in a training batch


class _Clamp(torch.autograd.Function):
    """Forward: clamped columns replaced by their group mean. Backward: their gradient
    replaced by their deviation from it; free columns pass the gradient through."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, clamped: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        mean = group_mean(z, group)
        ctx.save_for_backward(z - mean, clamped)
        return torch.where(clamped, mean, z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        deviation, clamped = ctx.saved_tensors
        return torch.where(clamped, deviation, grad), None, None


def group_mean(z: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """(N, D) rows replaced by the mean of their group's rows; ``group`` (N,) ids 0..G-1."""
    count = torch.zeros(int(group.max()) + 1, device=z.device, dtype=z.dtype)
    count.index_add_(0, group, torch.ones_like(group, dtype=z.dtype))
    sums = torch.zeros(count.shape[0], z.shape[1], device=z.device, dtype=z.dtype)
    sums.index_add_(0, group, z)
    return (sums / count.clamp_min(1)[:, None])[group]


def clamp_units(z: torch.Tensor, clamped: torch.Tensor, group: torch.Tensor | None = None
                ) -> torch.Tensor:
    """DC-IGN's clamping of ``z`` (N, D): the units where ``clamped`` (D,) bool is True take
    their group's mean in the forward pass and get the gradient z - mean in the backward
    pass. ``group`` (N,) says which rows form one sweep (default: one group)."""
    if group is None:
        group = torch.zeros(z.shape[0], dtype=torch.int64, device=z.device)
    return _Clamp.apply(z, clamped.to(z.device), group)


@register_model("dcign")
class DCIGN(VAE):
    """DC-IGN (Kulkarni et al. 2015): a VAE trained on one-factor batches with clamped units.

    Its networks, prior, encoder, decoder and optimizer are the VAE's (inherited), so the
    plain VAE on the same data is the baseline that differs only in how it is trained."""

    Config = DCIGNConfig
    presets = {
        "smoke": {"hidden": (64,), "latent_dim": 8, "sweep_bases": 2, "sweep_length": 4,
                  "sweeps_per_batch": 2},
        "quick": {"hidden": (400,), "latent_dim": 20},  # the VAE's quick network
    }

    def __init__(self, config: DCIGNConfig, info: DataInfo) -> None:
        if config.latent_dim <= len(FACTORS):
            raise GenbenchError(f"dcign needs latent_dim > {len(FACTORS)}: one unit per factor "
                                f"({', '.join(FACTORS)}) and at least one intrinsic unit")
        super().__init__(config, info)  # the VAE's encoder, decoder and log_std, in its order
        self.factor_units = {f: j for j, f in enumerate(FACTORS)}  # factor -> its latent unit
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))
        # latent units per training sd of each factor (on_train_end), for edits
        self.register_buffer("unit_per_sd", torch.zeros(len(FACTORS)))
        self.sweeps: dict[str, torch.Tensor] | None = None  # on_train_start

    @torch.no_grad()
    def edit(self, x: torch.Tensor, attribute: str, delta: float, y: torch.Tensor | None = None
             ) -> torch.Tensor:
        """Decoded images with ``attribute``'s unit moved by ``delta`` training sd."""
        if attribute not in self.factor_units:
            raise GenbenchError(f"dcign edits its assigned factors ({', '.join(FACTORS)}), "
                                f"not {attribute!r}")
        j = self.factor_units[attribute]
        z = self.encode(x).mean.clone()
        z[:, j] += delta * self.unit_per_sd[j]
        return self.generate(z)

    # -- training -------------------------------------------------------------------------
    def on_train_start(self, data: DataBundle) -> None:
        """Load (render once, then cached) the sweeps at the data's image size."""
        c, h, w = self.info.shape
        if h != w:
            raise GenbenchError(f"dcign renders square sweeps; {data.info.name!r} has {h}x{w} images")
        cfg = self.config
        sets = sweeps3d.sweep_set(cfg.sweep_bases, cfg.sweep_length, size=h)
        device = model_device(self)
        self.sweeps = {k: v.to(device) for k, v in sets.items()}
        self.sweeps["x"] = self.sweeps["x"].expand(-1, c, -1, -1)
        if data.train.measures is not None and tuple(data.measure_names or ()) == FACTORS:
            self.sweeps["sd"] = data.train.measures.float().std(0).to(device)
        else:  # data without the set factors: the sweeps' own spread is the unit
            self.sweeps["sd"] = self.sweeps["measures"].std(0)

    def sweep_batch(self, kind: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows of the sweep set, their sweep in the batch 0..G-1, clamped units (D,) bool) of
        one step: ``sweeps_per_batch`` sweeps varying ``VARIED[kind]`` (object sweeps: about
        as many images), drawn by the step number."""
        sw = self.sweeps
        ids = torch.nonzero(sw["varied"] == kind).flatten()
        per = self.config.sweeps_per_batch
        if kind == len(FACTORS):  # object sweeps are shorter: match the images of a batch
            per = max(per * self.config.sweep_length // len(sweeps3d.OBJECTS), 1)
        gen = torch.Generator(device=ids.device).manual_seed(STEP_SEED * 1_000_003 + step)
        chosen = ids[torch.randperm(len(ids), generator=gen, device=ids.device)[:per]]
        rows = torch.nonzero(torch.isin(sw["sweep"], chosen)).flatten()
        group = torch.searchsorted(chosen.sort().values, sw["sweep"][rows])
        clamped = torch.ones(self.config.latent_dim, dtype=torch.bool, device=rows.device)
        if kind == len(FACTORS):
            clamped[len(FACTORS):] = False  # object sweeps: the intrinsic units are free
        else:
            clamped[kind] = False  # a factor sweep: only the factor's unit is free
        return rows, group, clamped

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.sweeps is None:
            raise GenbenchError("dcign trains on its sweeps, which on_train_start loads")
        step = int(self.steps_done)
        kind = step % len(sweeps3d.VARIED)  # azimuth, elevation, light, object, azimuth, ...
        rows, group, clamped = self.sweep_batch(kind, step)
        gen = torch.Generator(device=rows.device).manual_seed(step)
        x = transform(self.sweeps["x"][rows], self.info.variant, gen, train=True,
                      static_seed=STEP_SEED, index=rows)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = clamp_units(reparameterize(mu, logvar), clamped, group)
        recon = observation_log_prob(self.info.observation, self.decoder(z), x, self.log_std)
        kl = gaussian_kl(mu, logvar)
        self.steps_done += 1
        elbo = (recon - kl).mean()
        return {"loss": -elbo, "recon": recon.mean(), "kl": kl.mean()}

    def on_train_end(self, train_x: torch.Tensor) -> None:
        """Calibrate the edits: each factor unit's pooled within-sweep slope on its factor."""
        if self.sweeps is None:
            return
        sw = self.sweeps
        x = transform(sw["x"], self.info.variant, torch.Generator(device=sw["x"].device).manual_seed(0),
                      train=False)
        codes = torch.cat([self.encode(x[i:i + 500]).mean for i in range(0, len(x), 500)])
        for j in range(len(FACTORS)):
            rows = torch.nonzero(sw["varied"][sw["sweep"]] == j).flatten()
            group = sw["sweep"][rows]
            group = torch.unique(group, return_inverse=True)[1]
            v = (sw["measures"][rows, j] / sw["sd"][j])[:, None]
            u = codes[rows, j:j + 1]
            dv, du = v - group_mean(v, group), u - group_mean(u, group)
            self.unit_per_sd[j] = (dv * du).sum() / (dv * dv).sum().clamp_min(1e-12)
