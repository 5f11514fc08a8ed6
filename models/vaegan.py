"""VAE-GAN (Larsen, Sønderby, Larochelle & Winther 2016): autoencoding beyond pixels.

Three networks: an encoder q(z|x) (diagonal Gaussian), a decoder that is also the GAN's
generator, and a discriminator. The reconstruction error is measured on the
discriminator's last hidden layer Dis_l (a "learned similarity"), under a Gaussian with
identity covariance: ``L_llike = 1/2 ||Dis_l(x) - Dis_l(Dec(z))||^2`` with z ~ q(z|x).
With ``L_prior = KL(q(z|x) || N(0, I))`` and the GAN loss on real images, reconstructions
and prior samples, each network follows its own loss (the paper's Algorithm 1):

- encoder:       L_prior + L_llike
- decoder:       gamma * L_llike + L_GAN(G side)   (gamma weighs reconstructing vs fooling D)
- discriminator: L_GAN(D side) = -[log D(x) + 1/2 log(1 - D(Dec(z))) + 1/2 log(1 - D(Dec(z_p)))]

(the paper sums the two fake terms; we average them so real and fake weigh alike).

The decoder's GAN side uses the non-saturating -log D(.) (Goodfellow et al. 2014). The
three gradients come from one forward pass (``torch.autograd.grad`` of each loss with
respect to its own network only), then each optimizer steps. In that pass D judges a
real-only and a fake-only batch, as DCGAN's D (BatchNorm statistics per kind), and Dis_l
compares x with its reconstruction in a batch of their own. No ``decode``: there is no
pixel observation model; the likelihood evaluator picks a Gaussian around ``generate(z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.kit.adversarial import AdversarialHooks, discriminator_loss, discriminator_stats, generator_loss
from genbench.kit.latent import gaussian_kl, reparameterize, split_gaussian
from genbench.kit.nn import adam, conv_pair, dcgan_init, split_head
from genbench.settings import finite, nonnegative, positive, probability


@dataclass(frozen=True)
class VAEGANConfig:
    latent_dim: int = positive(32)
    width: int = positive(32)  # channels of the first conv layer of encoder and D
    # decoder: gamma * feature reconstruction + GAN loss; the authors' CelebA run weighs them
    # 1e-5 : (1 - 1e-5)
    gamma: float = probability(1e-5)
    lr: float = positive(3e-4)  # all three networks; 1e30 makes training diverge on purpose
    beta1: float = probability(0.5)
    certainty: float = probability(0.99)  # D certain on a batch: mean D(x) above, mean D(G(z)) below 1-it
    # Balancing from the authors' code (not the paper): skip D's step while D's real or fake
    # cost is below equilibrium - margin, the decoder's while one is above equilibrium +
    # margin (costs in nats, -log D(x) and -log(1 - D(fake))); margin <= 0 turns it off.
    equilibrium: float = nonnegative(0.68)
    margin: float = finite(0.4)

@register_model("vaegan")
class VAEGAN(AdversarialHooks, nn.Module):
    """VAE-GAN (Larsen et al. 2016): VAE whose reconstruction is judged in D's feature space;
    encoder, decoder and D each stepped on its own loss (the paper's Algorithm 1)."""

    Config = VAEGANConfig
    presets = {
        "smoke": {"latent_dim": 8, "width": 8},
        "quick": {"epochs": 15, "batch_size": 64},
        # the paper's CelebA model: 128-d z, 64x64 (use the 64-wide conv stack)
        "paper": {"latent_dim": 128, "width": 64, "batch_size": 64},
    }

    def __init__(self, config: VAEGANConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.encoder, self.decoder = conv_pair(info.shape, config.latent_dim,
                                               2 * config.latent_dim, config.width)
        self.discriminator, _ = conv_pair(info.shape, config.latent_dim, 1, config.width)
        dcgan_init(self)

    # -- capabilities (prior and divergence check: AdversarialHooks) -----------------
    def encode(self, x: torch.Tensor) -> Distribution:
        return split_gaussian(self.encoder(x * 2 - 1))  # networks work in [-1, 1]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.decoder(z)) + 1) / 2

    # -- training ---------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return {name: adam(getattr(self, name).parameters(), lr=self.config.lr, betas=betas, fused=False)
                for name in ("encoder", "decoder", "discriminator")}

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of the paper's Algorithm 1 from one forward pass (batch means)."""
        n = x.shape[0]
        real = x * 2 - 1  # (N, C, H, W) in [-1, 1], tanh's range
        mu, logvar = self.encoder(real).chunk(2, dim=-1)
        z = reparameterize(mu, logvar)
        z_p = torch.randn_like(mu)  # prior samples
        fakes = torch.tanh(self.decoder(torch.cat([z, z_p])))  # (2N, C, H, W)
        body, head = split_head(self.discriminator)
        # the learned similarity: one pass over [x; reconstruction], so both are normalised
        # by the same BatchNorm statistics and their features are comparable
        feats = body(torch.cat([real, fakes[:n]]))  # (2N, F)
        # the GAN passes see real and fake batches apart, as DCGAN's D (BatchNorm statistics
        # per kind): in one mixed [real; fakes] batch D out-ran the decoder
        real_l = head(body(real)).squeeze(-1)  # (N,)
        fake_l = head(body(fakes)).squeeze(-1)  # (2N,): reconstructions, then prior samples
        rec_l, prior_l = fake_l[:n], fake_l[n:]
        f_real, f_rec = feats[:n], feats[n : 2 * n]
        return {
            "kl": gaussian_kl(mu, logvar).mean(),
            "feature_recon": 0.5 * (f_real - f_rec).pow(2).sum(-1).mean(),  # -log N(f_real; f_rec, I) + c
            # fakes = reconstructions and prior samples, averaged (real and fake weigh alike)
            "d_loss": discriminator_loss(real_l, fake_l),
            "g_loss": generator_loss(fake_l),  # non-saturating, on both kinds of fake
            "real_cost": generator_loss(real_l).detach(),  # -log D(x)
            "fake_cost": generator_loss(-fake_l).detach(),  # -log(1 - D(fake))
            "real_logits": real_l, "rec_logits": rec_l, "prior_logits": prior_l,
        }

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        t = self.losses(batch.x)
        own = {
            "encoder": t["kl"] + t["feature_recon"],
            "decoder": self.config.gamma * t["feature_recon"] + t["g_loss"],
            "discriminator": t["d_loss"],
        }
        names = self.networks_to_step(float(t["real_cost"]), float(t["fake_cost"]))
        for i, name in enumerate(names):  # each network's gradient of its own loss only
            params = [p for p in getattr(self, name).parameters() if p.requires_grad]
            grads = torch.autograd.grad(own[name], params, retain_graph=i < len(names) - 1)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        for name in names:
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
        stats = discriminator_stats(t["real_logits"], t["prior_logits"], self.config.certainty)
        return {"d_loss": t["d_loss"].detach(), "g_loss": t["g_loss"].detach(),
                "kl": t["kl"].detach(), "feature_recon": t["feature_recon"].detach(),
                "d_recon": torch.sigmoid(t["rec_logits"].detach()).mean(), **stats,
                # fraction of steps each was updated (history.csv shows the balancing at work)
                "decoder_stepped": torch.tensor(float("decoder" in names), device=batch.x.device),
                "discriminator_stepped": torch.tensor(float("discriminator" in names), device=batch.x.device)}

    def networks_to_step(self, real_cost: float, fake_cost: float) -> list[str]:
        """The encoder always; D unless it is winning, the decoder unless it is losing by
        the margin (and both when both conditions hold), as in Larsen et al.'s code."""
        c = self.config
        if c.margin <= 0:
            return ["encoder", "decoder", "discriminator"]
        step_d = min(real_cost, fake_cost) >= c.equilibrium - c.margin
        step_g = max(real_cost, fake_cost) <= c.equilibrium + c.margin
        if not (step_d or step_g):
            step_d = step_g = True
        return ["encoder"] + ["decoder"] * step_g + ["discriminator"] * step_d
