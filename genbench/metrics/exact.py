"""The exact log-likelihood of models that have one (autoregressive models, flows).

A model with ``log_prob(x) -> (N,)`` (capability "exact", e.g. PixelCNN) gets the mean over
the test images of log p(x) in nats per image, with its standard error over images and the
same in bits per dimension. It is an exact value, not a bound: the report shows it beside
IWAE and AIS, whose numbers are stochastic lower bounds of the same log p(x) for models with
latents. On continuous data it is a log-density on [0, 1]^D (PixelCNN's categorical over 8-bit
values is read as log P(v) + D log 256 under uniform dequantization; see models/pixelcnn.py).
"""

from __future__ import annotations

import torch

from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood import BPD, save_per_image, with_bpd
from genbench.metrics.sampling import labels_for
from genbench.registry import ResultKey, register_metric

EXACT_CHUNK = 256  # images per forward pass: memory only, never the answer


@torch.no_grad()
def exact_log_likelihood(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                         *, chunk: int = EXACT_CHUNK) -> torch.Tensor:
    """log p(x) per image, (N,) float64, in nats, ``chunk`` images per ``log_prob`` call."""
    out = []
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        lp = model.log_prob(xc) if y is None else model.log_prob(xc, y=y[start:start + chunk])
        out.append(lp.double().reshape(-1))
    return torch.cat(out)


EXACT_KEYS = (
    ResultKey("test_exact",
              label="exact log p(x)",
              caveat=("The exact log-likelihood of a model that has one (PixelCNN: a product of "
                      "per-pixel conditionals), not a bound. On continuous data a categorical over "
                      "8-bit values is read as a density on [0, 1]: log P(bins) + D log 256."),
              direction="higher",
              unit="nats/image",
              section="Likelihood",
              stderr=True,
              bpd=True,
              headline=1,
              estimates="log p(x)",
              kind="exact",
              stands_for=1,
              paired=3,
              best_text="exact log-likelihood"),
)


@register_metric(
    "exact",
    keys=EXACT_KEYS,
    needs={"exact"},
    produces={"test_exact": "exact log p(x) (log p(x|y), true label, for a conditional model), "
                            "nats/image; a log-density on [0, 1] pixels on continuous data",
              "test_exact_bpd": f"test_exact in {BPD}"},
    higher_is_better={"test_exact": True, "test_exact_bpd": False},
    description="exact log-likelihood from the model's log_prob(x) on the test split "
                "(autoregressive models, flows): a value, not a bound",
)
def exact_metric(ctx: EvalContext) -> dict[str, float]:
    n = ctx.preset.n_eval
    x = ctx.data.eval_x("test", n)
    y = labels_for(ctx.model, ctx.data.eval_y("test", n))
    values = exact_log_likelihood(ctx.model, x, y)
    save_per_image(ctx, "test_exact", values)
    return with_bpd(ctx, "test_exact", values)
