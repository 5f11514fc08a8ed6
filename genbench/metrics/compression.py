"""Rate against distortion: how many bits a model's latents cost for how good a picture,
beside JPEG and JPEG 2000 at matched sizes (the "conceptual compression" of Gregor et al. 2016).

Rate. A latent-variable model codes x by sending z ~ q(z|x) under the prior p(z) and
getting back, with bits-back coding (Hinton & van Camp 1993; Frey & Hinton 1997), the bits
of q's randomness: the net cost is E_q[log q(z|x) - log p(z)] = KL(q(z|x) || p(z)) nats,
divided by ln 2 for bits. That is a rate an ideal bits-back coder achieves on average (it
needs an arithmetic coder, a shared random stream and the decoder at both ends), not the
size of a file genbench writes. For a sequential model (DRAW, Conv DRAW) sending only the
first t steps costs the sum of their KLs, sum_{s<=t} E_q[KL(q(z_s|x, z_<s) || p(z_s))], so
the curve over t comes from one model (the model's ``compression_steps`` hook); a one-shot
encoder (the VAE and the others) gives one point, t = 1.

Distortion. The decoder's mean image from the code the receiver gets: the encoder's mean
code (for a sequential model the path of means for the first t steps and the prior's mean
for the rest), against the test image, as mean squared error per pixel on [0, 1] and PSNR
= 10 log10(1 / MSE) of the mean MSE.

Reference codecs. The same test images written by Pillow as JPEG (``optimize=True``:
Huffman tables fitted to the image) and as JPEG 2000 codestreams (``.j2k``, irreversible
wavelet, no JP2 box), over a grid of settings; for each image the setting with the smallest
error whose file fits in the model's bits for that image is taken, else the smallest file.
Their bits are the file sizes, headers included (a JPEG of a 28x28 digit is 2-3 kbit before
any pixel is coded, more than a VAE's whole rate): what a file on disk costs.

Keys: ``compression_bits_<t>``, ``compression_mse_<t>``, ``compression_psnr_<t>`` for
t = 1..T (T <= ``MAX_STEPS``), and the same with ``jpeg_`` / ``jp2_`` after
``compression_`` for the codecs at those rates; ``compression_raw_bits`` (the test image
stored raw: 1 bit a pixel binarized, 8 continuous), ``compression_budget_bits`` (the deck's
20% of that) and the codecs at that budget (``compression_jpeg_mse_budget``, ...).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.metrics.elbo import kl_term
from genbench.metrics.sampling import counter_normal, encode, generate, labels_for, reparameterize, seed_from
from genbench.registry import ResultKey, register_metric

MAX_STEPS = 64  # curve points declared (DRAW's paper preset draws in 64 steps)
N_IMAGES = 100  # test images compressed (fewer if the preset evaluates fewer)
KL_DRAWS = 16  # draws of q per image for a KL without closed form (a sequential q)
DECK_FRACTION = 0.2  # the deck's slide: JPEG, JPEG 2000 and Conv DRAW at 20% of the raw size
CHUNK = 64  # images per model pass: memory only
SALT = 41  # this module's evaluation randomness: ctx.generator(SALT)
CODECS = ("jpeg", "jp2")
# the settings each codec is tried at: JPEG quality, JPEG 2000 compression ratio
SETTINGS = {"jpeg": (1, 2, 3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95),
            "jp2": (200, 100, 50, 30, 20, 15, 12, 10, 8, 6, 5, 4, 3, 2.5, 2, 1.5)}
LN2 = math.log(2)


# -- the model's side -----------------------------------------------------------------------
@torch.no_grad()
def model_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                seed: int, draws: int = KL_DRAWS, chunk: int = CHUNK
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits (T, N): the bits-back rate of sending the first t steps' latents, per image;
    images (T, N, C, H, W): the decoder's mean from them). T = 1 without ``compression_steps``.

    The KL's draws are counter noise addressed by (seed, image, draw), so ``chunk`` changes
    memory only.
    """
    bits, images = [], []
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        yc = None if y is None else y[start:start + chunk]
        q = encode(model, xc, yc)
        rows = torch.arange(start, start + xc.shape[0], device=x.device)
        eps = counter_normal(seed, rows, torch.arange(draws), q.event_shape[-1]).to(xc.dtype)
        if callable(getattr(model, "compression_steps", None)):
            kl, means = model.compression_steps(xc, eps)
            kl = kl.cumsum(0)
        else:
            kl = kl_term(q, model.prior(), reparameterize(q, eps))[None]
            means = generate(model, q.mean, yc)[None]
        bits.append(kl / LN2)
        images.append(means.clamp(0, 1))
    return torch.cat(bits, 1), torch.cat(images, 1)


def mse(x: torch.Tensor, xhat: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel, per image (..., N) for images (..., N, C, H, W)."""
    return (xhat - x).square().flatten(-3).mean(-1)


def psnr(mean_mse: float) -> float:
    """10 log10(1 / MSE) for images on [0, 1] (peak 1); inf for a perfect copy."""
    return math.inf if mean_mse <= 0 else 10 * math.log10(1 / mean_mse)


# -- the reference codecs -------------------------------------------------------------------
def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] -> an 8-bit grey (C = 1) or RGB Pillow image."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(array[0], "L") if array.shape[0] == 1 else Image.fromarray(
        np.ascontiguousarray(array.transpose(1, 2, 0)), "RGB")


def write(image: Image.Image, codec: str, setting: float) -> bytes:
    """The file Pillow writes: JPEG at quality ``setting`` with optimized Huffman tables, or a
    JPEG 2000 codestream (irreversible wavelet) at compression ratio ``setting``."""
    buf = io.BytesIO()
    if codec == "jpeg":
        image.save(buf, "JPEG", quality=int(setting), optimize=True)
    elif codec == "jp2":
        image.save(buf, "JPEG2000", no_jp2=True, irreversible=True, quality_mode="rates",
                   quality_layers=[float(setting)])
    else:
        raise GenbenchError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    return buf.getvalue()


def read(data: bytes, like: torch.Tensor) -> torch.Tensor:
    """A written file decoded back to (C, H, W) in [0, 1], on ``like``'s device and dtype."""
    array = np.asarray(Image.open(io.BytesIO(data)).convert("L" if like.shape[0] == 1 else "RGB"))
    out = torch.from_numpy(array.copy()).to(like.device, like.dtype) / 255
    return out[None] if out.dim() == 2 else out.permute(2, 0, 1)


def codec_table(x: torch.Tensor, codec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image at every setting of ``codec``: (bits (S, N) file sizes, decoded (S, N, C, H, W))."""
    bits, decoded = [], []
    for setting in SETTINGS[codec]:
        files = [write(to_pil(img), codec, setting) for img in x]
        bits.append(torch.tensor([8.0 * len(f) for f in files], dtype=torch.float64))
        decoded.append(torch.stack([read(f, img) for f, img in zip(files, x, strict=True)]))
    return torch.stack(bits), torch.stack(decoded)


def match(table: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, budget: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the setting with the least error whose file fits in ``budget`` bits (N,),
    else the smallest file: (bits (N,), decoded (N, C, H, W))."""
    bits, decoded = table
    err = mse(x, decoded).double().cpu()  # (S, N)
    fits = bits <= budget.double().cpu()[None]
    score = torch.where(fits, err, math.inf)
    pick = torch.where(fits.any(0), score.argmin(0), bits.argmin(0))  # (N,)
    cols = torch.arange(x.shape[0])
    return bits[pick, cols], decoded[pick.to(decoded.device), cols.to(decoded.device)]


# -- the numbers ------------------------------------------------------------------------------
def raw_bits(x: torch.Tensor, binarized: bool) -> float:
    """Bits of one image stored raw: a bit a pixel binarized, 8 bits a pixel value otherwise."""
    return float(x[0].numel() * (1 if binarized else 8))


def _point(prefix: str, suffix: str, bits: torch.Tensor, x: torch.Tensor, xhat: torch.Tensor
           ) -> dict[str, float]:
    err = float(mse(x, xhat).double().mean())
    return {f"{prefix}bits_{suffix}": float(bits.double().mean()), f"{prefix}mse_{suffix}": err,
            f"{prefix}psnr_{suffix}": psnr(err)}


def compression_values(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                       seed: int, binarized: bool, draws: int = KL_DRAWS, chunk: int = CHUNK
                       ) -> dict[str, float]:
    """Every ``compression_*`` key for ``model`` on test images x (see the module docstring)."""
    bits, images = model_curve(model, x, y, seed=seed, draws=draws, chunk=chunk)
    if bits.shape[0] > MAX_STEPS:
        raise GenbenchError(f"n/a: the curve has {bits.shape[0]} steps; keys are declared for "
                            f"at most {MAX_STEPS}")
    tables = {codec: codec_table(x, codec) for codec in CODECS}
    raw = raw_bits(x, binarized)
    out = {"compression_raw_bits": raw, "compression_budget_bits": DECK_FRACTION * raw}
    for t in range(bits.shape[0]):
        out.update(_point("compression_", str(t + 1), bits[t], x, images[t]))
        for codec in CODECS:
            out.update(_point(f"compression_{codec}_", str(t + 1), *match(tables[codec], x, bits[t]), x))
    budget = torch.full((x.shape[0],), DECK_FRACTION * raw, dtype=torch.float64)
    for codec in CODECS:
        got, decoded = match(tables[codec], x, budget)
        out.update(_point(f"compression_{codec}_", "budget", got, x, decoded))
    return out


# -- the adapter ------------------------------------------------------------------------------
def compression_adapter(ctx: EvalContext) -> dict[str, float]:
    n = min(N_IMAGES, ctx.preset.n_eval or N_IMAGES)
    x = ctx.data.eval_x("test", n)
    y = labels_for(ctx.model, ctx.data.eval_y("test", n))
    return compression_values(ctx.model, x, y, seed=seed_from(ctx.generator(SALT)),
                              binarized=ctx.data.info.observation == "bernoulli")


def _declared() -> tuple[list[ResultKey], dict[str, str], dict[str, bool]]:
    """The curve's families (``compression_bits_<t>``, ... for t = 1, 2, ...: prefix
    declarations, so a model without an encoder records one n/a per key it could have, not
    one per step) and the budget keys, with their texts and directions. No report section:
    the report's own Compression section (report/compression.py) draws and tabulates them."""
    what: dict[str, tuple[str, bool | None]] = {
        "bits": ("bits per image of the first t steps' latents (t = 1 for a one-shot encoder): "
                 "the bits-back rate KL(q||p) / ln 2, not a file size", None),
        "mse": ("mean squared error per pixel of the decoder's mean from those latents", False),
        "psnr": ("PSNR (dB) of the decoder's mean from those latents", True)}
    over = "file size in bits (above the budget where no file fits)"
    codec = {"jpeg": "JPEG (Pillow, optimized tables)", "jp2": "JPEG 2000 (Pillow, .j2k codestream)"}
    direction = {True: "higher", False: "lower", None: "unranked"}
    families = [ResultKey(f"compression_{kind}_", label=f"{kind} at step {{a}}",
                          text=f"{text} (t = 1, 2, ...)", direction=direction[up],  # type: ignore[arg-type]
                          prefix=True)
                for kind, (text, up) in what.items()]
    families += [ResultKey(f"compression_{name}_{kind}_", label=f"{name} {kind} at step {{a}}",
                           text=(f"{desc} of the same test images at the model's rate of step t: "
                                 f"{'file size in bits, headers included' if kind == 'bits' else kind}"),
                           direction=direction[up], prefix=True)  # type: ignore[arg-type]
                 for name, desc in codec.items() for kind, (_, up) in what.items()]
    produces = {"compression_raw_bits": "bits of a test image stored raw (1 a pixel binarized, 8 continuous)",
                "compression_budget_bits": f"the deck's budget: {DECK_FRACTION:.0%} of the raw bits"}
    better: dict[str, bool] = {}
    for name, desc in codec.items():
        for kind, (_, up) in what.items():
            key = f"compression_{name}_{kind}_budget"
            produces[key] = (f"{desc} of the test images within the deck's budget: "
                             f"{over if kind == 'bits' else kind}")
            if up is not None:
                better[key] = up
    return families, produces, better


_FAMILIES, _PRODUCES, _BETTER = _declared()
register_metric(
    "compression", needs={"encode", "generate", "prior", "density_encoder"}, keys=_FAMILIES,
    produces=_PRODUCES, higher_is_better=_BETTER,
    description="rate (bits-back KL of the latents sent, bits/image) against distortion (MSE, "
                "PSNR of the decoder's mean), over the steps of a sequential model, beside JPEG "
                "and JPEG 2000 at matched file sizes",
)(compression_adapter)
