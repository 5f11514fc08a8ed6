"""``synthetic-3d``: rendered objects whose generative factors are known because they are set.

Morpho-MNIST's measures are measured from the images; DC-IGN (Kulkarni et al. 2015) claims a
latent whose named units move exactly one *set* factor (pose, light), which needs data made
from those factors. Three objects -- a face-like head (eyes, nose, ears), a chair and a
teapot-like body (spout, handle, lid) -- are described as signed distance functions and
ray-cast (sphere tracing, Hart 1996) in numpy under

- ``azimuth``: rotation about the vertical axis, degrees (0 faces the camera);
- ``elevation``: rotation about the horizontal axis, degrees (positive tilts the top away);
- ``light``: azimuth of the light direction, degrees (0 lights from the camera's side),

with Lambertian shading, an orthographic camera and a black background. The image is a
deterministic function of (object, factors): no noise is added, and angles are reduced
modulo 360 before use, so a turn by 360 degrees gives the same image bit for bit. The
factors are each split's ``measures`` (columns ``FACTORS``), the object its class label.

The sets are sampled once with a fixed seed (factors uniform in ``RANGES``) and cached under
``<cache>/render3d/<hash of this code and the sizes>.pt``; the first render of the 6,000
images took 111 s on one core of a heavily loaded 2-core machine, a cached load 2 ms.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch

from genbench.data.bundle import DataBundle, DataRequest, Split, make_bundle
from genbench.registry import register_dataset

OBJECTS = ("face", "chair", "teapot")
FACTORS = ("azimuth", "elevation", "light")
RANGES = {"azimuth": (-90.0, 90.0), "elevation": (-30.0, 30.0), "light": (-90.0, 90.0)}
SIZE = 32  # pixels a side
SPLITS = {"train": 4800, "val": 600, "test": 600}
SEED = 3
EXTENT = 1.3  # the image plane spans [-EXTENT, EXTENT] in world units
AMBIENT = 0.12
LIGHT_ELEVATION = 30.0  # degrees above the horizon
MARCH_STEPS, HIT, START, FAR = 64, 1e-3, 1.5, 4.5  # the objects lie within 1.5 of the origin


# -- signed distances (p: (..., 3) points in the object's frame; y up, z towards the camera) --
def _sphere(p: np.ndarray, c: tuple[float, float, float], r: float) -> np.ndarray:
    return np.linalg.norm(p - np.asarray(c), axis=-1) - r


def _ellipsoid(p: np.ndarray, c: tuple[float, float, float], r: tuple[float, float, float]) -> np.ndarray:
    """A bound, not the exact distance (Quilez): exact on the axes, safe for sphere tracing
    once scaled by the smallest radius."""
    q = (p - np.asarray(c)) / np.asarray(r)
    return (np.linalg.norm(q, axis=-1) - 1.0) * min(r)


def _box(p: np.ndarray, c: tuple[float, float, float], b: tuple[float, float, float]) -> np.ndarray:
    q = np.abs(p - np.asarray(c)) - np.asarray(b)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    return outside + np.minimum(q.max(-1), 0.0)


def _torus_xy(p: np.ndarray, c: tuple[float, float, float], big: float, small: float) -> np.ndarray:
    """A ring in the x-y plane (the teapot's handle)."""
    q = p - np.asarray(c)
    ring = np.linalg.norm(q[..., :2], axis=-1) - big
    return np.sqrt(ring ** 2 + q[..., 2] ** 2) - small


def _face(p: np.ndarray) -> np.ndarray:
    head = _ellipsoid(p, (0, 0.05, 0), (0.62, 0.8, 0.62))
    eyes = np.minimum(_sphere(p, (-0.22, 0.22, 0.52), 0.12), _sphere(p, (0.22, 0.22, 0.52), 0.12))
    nose = _ellipsoid(p, (0, -0.02, 0.62), (0.09, 0.2, 0.14))
    ears = np.minimum(_ellipsoid(p, (-0.62, 0.05, 0), (0.08, 0.2, 0.12)),
                      _ellipsoid(p, (0.62, 0.05, 0), (0.08, 0.2, 0.12)))
    return np.minimum.reduce([head, eyes, nose, ears])


def _chair(p: np.ndarray) -> np.ndarray:
    seat = _box(p, (0, -0.05, 0), (0.5, 0.06, 0.45))
    back = _box(p, (0, 0.5, -0.4), (0.5, 0.5, 0.06))
    legs = [_box(p, (sx * 0.42, -0.5, sz * 0.37), (0.06, 0.42, 0.06)) for sx in (-1, 1) for sz in (-1, 1)]
    return np.minimum.reduce([seat, back, *legs])


def _teapot(p: np.ndarray) -> np.ndarray:
    body = _ellipsoid(p, (0, -0.1, 0), (0.62, 0.48, 0.62))
    lid = _ellipsoid(p, (0, 0.38, 0), (0.28, 0.12, 0.28))
    knob = _sphere(p, (0, 0.53, 0), 0.08)
    spout = _ellipsoid(p, (0.72, 0.05, 0), (0.32, 0.08, 0.08))
    handle = _torus_xy(p, (-0.66, -0.05, 0), 0.24, 0.06)
    return np.minimum.reduce([body, lid, knob, spout, handle])


SHAPES = {"face": _face, "chair": _chair, "teapot": _teapot}


# -- the camera -------------------------------------------------------------------------
def rotation(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations R = R_x(elevation) R_y(azimuth), object frame -> world, from
    angles in degrees reduced modulo 360 (so that 360 degrees is exactly the identity)."""
    a = np.deg2rad(np.mod(np.asarray(azimuth, dtype=np.float64), 360.0))
    e = np.deg2rad(np.mod(np.asarray(elevation, dtype=np.float64), 360.0))
    ca, sa, ce, se = np.cos(a), np.sin(a), np.cos(e), np.sin(e)
    one, zero = np.ones_like(a), np.zeros_like(a)
    ry = np.stack([np.stack([ca, zero, sa], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sa, zero, ca], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, ce, -se], -1),
                   np.stack([zero, se, ce], -1)], -2)
    return rx @ ry


def _light(light: np.ndarray) -> np.ndarray:
    """(N, 3) unit light directions in the world frame."""
    a = np.deg2rad(np.mod(np.asarray(light, dtype=np.float64), 360.0))
    e = np.deg2rad(LIGHT_ELEVATION)
    return np.stack([np.sin(a) * np.cos(e), np.full_like(a, np.sin(e)), np.cos(a) * np.cos(e)], -1)


def render(shape: str, azimuth: np.ndarray, elevation: np.ndarray, light: np.ndarray,
           size: int = SIZE) -> np.ndarray:
    """(N, size, size) uint8 images of one object under N factor settings.

    Orthographic rays along -z from z = 3 are taken into each object's frame (p_obj =
    R^T p_world) and marched to the surface; the shade is ambient plus Lambertian
    max(0, n . l), with n the world-frame normal from central differences of the distance.
    """
    sdf = SHAPES[shape]
    r = rotation(azimuth, elevation)  # (N, 3, 3)
    n = r.shape[0]
    u = np.linspace(-EXTENT, EXTENT, size)
    gx, gy = np.meshgrid(u, -u)  # row 0 is the top of the image
    origin = np.stack([gx, gy, np.full_like(gx, 3.0)], -1).reshape(1, -1, 3)  # (1, P, 3)
    o = (origin @ r).reshape(-1, 3)  # R^T applied to row vectors: (N*P, 3) in each object's frame
    d = np.repeat(np.array([0.0, 0.0, -1.0]) @ r, origin.shape[1], axis=0)  # (N*P, 3)
    t = np.full(len(o), START)
    hit = np.zeros(len(o), dtype=bool)
    active = np.arange(len(o))  # rays still marching: only they are evaluated
    for _ in range(MARCH_STEPS):
        dist = sdf(o[active] + t[active, None] * d[active])
        done = dist < HIT
        hit[active[done]] = True
        t[active] = np.minimum(t[active] + np.where(done, 0.0, dist), FAR)
        active = active[~done & (t[active] < FAR)]
        if not len(active):
            break
    shade = np.zeros(len(o))
    p = o[hit] + t[hit, None] * d[hit]
    eps = 1e-3
    normal = np.stack([sdf(p + eps * e) - sdf(p - eps * e) for e in np.eye(3)], -1)  # (H, 3)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True).clip(1e-12)
    image = np.repeat(np.arange(n), origin.shape[1])[hit]  # which image each hit ray is in
    world = (r[image] @ normal[:, :, None])[..., 0]  # R n
    lit = np.clip((world * _light(light)[image]).sum(-1), 0.0, None)
    shade[hit] = AMBIENT + (1.0 - AMBIENT) * lit
    return np.round(shade.reshape(n, size, size) * 255.0).astype(np.uint8)


def sample_factors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(objects (n,) int64, factors (n, 3) float64 in ``FACTORS`` order), uniform in RANGES."""
    rng = np.random.default_rng(seed)
    objects = rng.integers(0, len(OBJECTS), n)
    lo = np.array([RANGES[f][0] for f in FACTORS])
    hi = np.array([RANGES[f][1] for f in FACTORS])
    return objects, lo + (hi - lo) * rng.random((n, len(FACTORS)))


def render_set(objects: np.ndarray, factors: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(N, size, size) uint8 images of ``objects`` (N,) under ``factors`` (N, 3)."""
    out = np.zeros((len(objects), size, size), dtype=np.uint8)
    for k, name in enumerate(OBJECTS):
        idx = np.flatnonzero(objects == k)
        for start in range(0, len(idx), 500):  # memory only: the images do not depend on it
            part = idx[start:start + 500]
            out[part] = render(name, *factors[part].T, size=size)
    return out


CODE_HASH = hashlib.sha1(inspect.getsource(inspect.getmodule(render)).encode()).hexdigest()[:12]


def _cached_sets(cache: Path) -> dict[str, torch.Tensor]:
    from genbench import store

    path = Path(cache or store.cache_root()) / "render3d" / f"{CODE_HASH}-{SIZE}-{SEED}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # an unreadable cache file is rendered again
            pass
    objects, factors = sample_factors(sum(SPLITS.values()), SEED)
    sets = {"x": torch.from_numpy(render_set(objects, factors))[:, None],
            "y": torch.from_numpy(objects).long(), "measures": torch.from_numpy(factors).float()}
    store.save_torch(path, sets)
    return sets


@register_dataset("synthetic-3d", description="6,000 ray-cast 32x32 renderings of a face, a chair "
                  "and a teapot under set azimuth, elevation and light (known factors, as measures)")
def load_synthetic_3d(request: DataRequest, cache: Path | None = None) -> DataBundle:
    sets = _cached_sets(cache)
    bounds = np.cumsum([0, *SPLITS.values()])
    parts = {name: Split(sets["x"][a:b], sets["y"][a:b], sets["measures"][a:b])
             for name, a, b in zip(SPLITS, bounds[:-1], bounds[1:], strict=True)}
    bundle = make_bundle(
        request=request, name="synthetic-3d", train=parts["train"], val=parts["val"],
        test=parts["test"], val_size=SPLITS["val"], default_variant="continuous",
        num_classes=len(OBJECTS), label_names=OBJECTS,
        source=f"rendered by genbench.data.render3d ({CODE_HASH})",
    )
    bundle.measure_names = FACTORS
    return bundle
