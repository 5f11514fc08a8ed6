"""What makes an AIS log-likelihood trustworthy: BDMC's certificate, the pilot that says
early whether one is reachable, and when the shared family may reuse the own-decoder work.

Each AIS number ends up as one of three statuses (the report reads them from the recorded
flags ``ais_certified`` and ``ais_converged``):

- **certified**: the BDMC gap (Grosse et al. 2015), measured with the same start, schedule
  and observation model as the AIS, plus two standard errors, is at most the preset's
  ``certify_tol`` nats/image. On data simulated from the model, the truth lies within that
  of AIS's stochastic lower bound.
- **converged**: the doubling runs agreed, but there is no certificate (the gap is too
  large, or BDMC did not run). Agreement is necessary, not sufficient: two runs can agree
  while both miss a mode.
- **not converged**: neither.

The types here are what the AIS metric hands the BDMC metric (:class:`AISRun`, through
``EvalContext.upstream``), so that BDMC anneals along the schedule and from the start of
the number it certifies, whatever order the metrics were registered in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genbench.metrics.obsmodel import FLIP_BOUNDS, NOISE_XATOL, ObservationModel
from genbench.metrics.sampling import Encoder, counter_normal, decode, generate, reparameterize


def certified(gap: float, stderr: float, tol: float) -> bool:
    """The certificate: gap + 2 s.e. <= tol (a gap with no finite s.e. certifies nothing)."""
    return math.isfinite(gap) and math.isfinite(stderr) and gap + 2 * stderr <= tol


def gap_floor(gaps: torch.Tensor, n: int) -> float:
    """The least the mean gap over all n simulated images can be, given the gaps of the first
    few: their sum over n, the images not yet annealed taken at 0 (a BDMC gap is an upper
    minus a lower bound of the same log p(x), nonnegative in expectation). One image far out
    (the continuous VAE's encoder start: 237 nats beside gaps of 1) then decides at once
    what a standard error of four images could not."""
    return float(gaps.double().sum()) / max(n, 1)


def hopeless(gap: float, stderr: float, tol: float, floor: float = -math.inf) -> bool:
    """More simulated images cannot certify this schedule: gap - 2 s.e. > tol, or the mean
    over all of them cannot fall below ``floor`` (:func:`gap_floor`) and that exceeds tol."""
    if floor > tol:
        return True
    return math.isfinite(gap) and math.isfinite(stderr) and gap - 2 * stderr > tol


MIN_DECAY, MAX_DECAY = 3.0, 4.0  # the decay exponents the pilot's early looks extrapolate with
LONG_DECAY = 1.0  # the exponent of its last look, at the AIS's own schedule: 1/T


def pilot_schedules(pilot_steps: int, ais_steps: int) -> tuple[int, ...]:
    """The schedules the pilot looks at, on the same simulated images: half of
    ``pilot_steps``, ``pilot_steps``, then doubling while within ``ais_steps`` (quick: 125,
    250, 500). It stops at the first look that decides (:func:`pilot_verdict`); () where
    the pilot is off (0) or would be longer than AIS's first schedule."""
    if pilot_steps <= 0 or pilot_steps > ais_steps:
        return ()
    out = [max(2, pilot_steps // 2), pilot_steps]
    while 2 * out[-1] <= ais_steps:
        out.append(2 * out[-1])
    return tuple(out)


def pilot_verdict(looks: list[tuple[int, float, float]], last: bool, floor: float, tol: float,
                  most: int) -> tuple[float, int] | None:
    """What the pilot's looks so far say, as (decay, needed distributions), or None to look
    again at the next, doubled schedule. ``looks`` holds (T, gap, s.e.) per schedule, the
    newest last; ``last`` says no longer look remains (the newest is at the AIS's schedule).

    A certified gap decides at once (needed = T). An early look stops only what even an
    optimistic reading cannot certify within ``most`` distributions: the low end of the gap's
    interval, extrapolated with the decay between the two newest looks or 3
    (:func:`decay_exponent`). The last look, taken at the schedule the AIS would run first,
    reads the point estimate at the long-schedule rate 1/T (:func:`needed_distributions`):
    a short schedule's gap falls faster than that, so the early looks cannot use it, but from
    this look on the schedule only doubles (once, at quick), where 1/T is what theory gives.
    On the reference's GAN-family models it separates the two that 1,000 distributions did
    not certify from the two they did, which the optimistic reading could not (the figures
    are in ``tests/test_certify.py::test_the_pilot_looks_until_one_decides``).
    """
    steps, gap, se = looks[-1]
    if certified(gap, se, tol):
        return decay_exponent(looks[-2][:2], looks[-1][:2]), steps
    if last:
        return LONG_DECAY, needed_distributions(gap, math.nan, steps, tol, LONG_DECAY, floor)
    decay = decay_exponent(looks[-2][:2], looks[-1][:2])
    needed = needed_distributions(gap, se, steps, tol, decay, floor)
    return (decay, needed) if needed > most else None


def schedule_past(pilot: Pilot, first: int, most: int) -> int:
    """The one AIS schedule a pilot that let AIS go on, uncertified, asks for: the first
    doubling of ``first`` longer than the pilot's last look and at least the distributions it
    needs, capped at ``most``. Never the look's own schedule again: its gap there was open."""
    steps = first
    while steps < most and (steps <= pilot.distributions or steps < pilot.needed):
        steps *= 2
    return min(steps, most)


def decay_exponent(short: tuple[int, float], long: tuple[int, float]) -> float:
    """The exponent a of gap ~ T^-a the pilot extrapolates with: the local exponent between
    two schedules (T, gap), but never below ``MIN_DECAY`` (nor above ``MAX_DECAY``).

    3 is deliberately optimistic: three times the long-schedule rate (1/T), and above every
    local rate measured on DCGAN's shared-family gap on mnist-5k (prior start, the same 4
    simulated images: 166, 123, 43 and 8.8 nats at 25, 50, 100 and 200 distributions,
    exponents 0.4, 1.5 and 2.3), which then flattens (Wu et al. 2017: a gap of 10 for
    GAN-50 even at 10,000).
    """
    (t1, g1), (t2, g2) = short, long
    if t2 <= t1 or g1 <= 0 or g2 <= 0 or not (math.isfinite(g1) and math.isfinite(g2)):
        return MIN_DECAY
    return min(max(MIN_DECAY, math.log(g1 / g2) / math.log(t2 / t1)), MAX_DECAY)


def needed_distributions(gap: float, stderr: float, steps: int, tol: float, decay: float = 1.0,
                         floor: float = 0.0) -> int:
    """The schedule length at which a BDMC gap measured at ``steps`` distributions would
    reach ``tol``, extrapolated as gap ~ T^-decay, taken optimistically.

    For long schedules the expected BDMC gap is the symmetrized KL divergence between the
    forward and the reverse AIS chains' joint distributions; each of the T transitions adds
    O(1/T^2) to it, so it shrinks like 1/T (Grosse, Ghahramani & Adams 2015; Neal 2001). A
    short schedule is not in that regime: the local exponent wanders (DCGAN: 0.4, 1.5, 2.3,
    then near 0 at thousands of distributions), so the pilot's early looks extrapolate with
    the local exponent of their two newest schedules or 3, whichever is larger
    (:func:`decay_exponent`): faster than any decay measured, so that they stop only
    what even an optimistic reading cannot certify (its last look reads 1/T:
    :func:`pilot_verdict`). There, the lower end of the gap's
    two-standard-error interval is used for the same reason; or ``floor``, where larger:
    the least the mean over all of BDMC's images can be (:func:`gap_floor`), which a heavy
    tail of per-image gaps keeps high when it inflates the standard error.
    """
    low = max(gap - 2 * stderr, 0.0) if math.isfinite(stderr) else max(gap, 0.0)
    low = max(low, floor)
    if low <= tol:
        return steps
    return int(math.ceil(steps * (low / tol) ** (1.0 / decay)))


@dataclass(frozen=True)
class Pilot:
    """Short BDMCs on a few simulated images, run before the full AIS (quick preset): the
    numbers of its last look, the one that decided."""

    distributions: int
    images: int
    gap: float
    stderr: float
    lower: float  # mean forward (lower) and reverse (upper) bound over its images
    upper: float
    decay: float  # the exponent extrapolated with (gap ~ T^-decay): :func:`pilot_verdict`
    needed: int  # distributions its extrapolation says reach the tolerance (:func:`pilot_verdict`)
    reachable: bool  # needed <= the longest schedule the preset allows


@dataclass(frozen=True)
class AISRun:
    """The AIS a BDMC certifies: observation model, every schedule of the doubling (pooled
    into the estimate, the last one the longest) and the start; the pilot if one ran; and
    whether the numbers were reused from the own-decoder AIS (shared family)."""

    obs: ObservationModel
    schedules: tuple[int, ...]
    from_encoder: bool | Encoder  # the model's q(z|x) (True), an inference network's, or the prior
    pilot: Pilot | None = None
    reused_own: bool = False


@dataclass(frozen=True)
class BDMCRun:
    """What the BDMC metric hands on: whether its numbers were the own-decoder ones."""

    reused_own: bool = False


@torch.no_grad()
def shared_is_own(model: torch.nn.Module, own: ObservationModel | None, shared: ObservationModel,
                  y: torch.Tensor | None) -> bool:
    """True where the shared family's chosen member is, to within a rounding, the model's own
    Bernoulli decoder: binarized data, a flip probability at its search's lower bound, and
    ``generate(z)`` the decoder's mean (checked on a few prior draws).

    The own-decoder IWAE, AIS and BDMC may then stand for the shared ones. With probabilities
    f + (1 - 2f) p >= (1 - 2f) p pixel by pixel, log p_shared(x|z) >= log p_own(x|z) +
    D log(1 - 2f) for every z, so the own estimates are stochastic lower bounds of the
    shared log p(x) short by at most 2 f D nats (0.002 on 784 pixels at f = 1.1e-6); and the
    validation likelihood chose the smallest flip it could, so the shared member gains
    nothing over the own decoder on such data.
    """
    if own is None or own.kind != "decoder" or shared.kind != "bernoulli":
        return False
    if isinstance(shared.noise, torch.Tensor) or shared.noise > FLIP_BOUNDS[0] * math.exp(10 * NOISE_XATOL):
        return False
    prior = model.prior()
    n = 4 if y is None else y.shape[0]
    device = prior.mean.device
    eps = counter_normal(0, torch.arange(n, device=device), torch.arange(1, device=device),
                         prior.event_shape[-1])
    z = reparameterize(prior, eps)[0]  # fixed draws: a check, not an estimate
    px = decode(model, z, y)
    logits = getattr(getattr(px, "base_dist", px), "logits", None)
    if logits is None:
        return False
    mean = generate(model, z, y)
    return mean.shape == logits.shape and bool(torch.allclose(mean, torch.sigmoid(logits), atol=1e-5))
