"""The evaluator: a classifier trained by genbench on the dataset, whose features FID & co. use.

Standard FID features come from an ImageNet InceptionV3 that must be downloaded and that
fits digits badly, so genbench trains its own evaluator on each dataset (as many MNIST GAN
papers do): a small CNN over the classes for MNIST-like data (``cnn28-classes``), the same
family with three stages over the 40 attributes for 64x64 RGB data (``cnn64-attributes``).
The features are the 128/256-dimensional penultimate layer *before* its ReLU (closer to
Gaussian and of full rank, which the Fréchet distance assumes), centred and scaled by one
number to unit RMS on the training images (raw, their norm is in the hundreds and KID's
cubic kernel explodes); the logits feed the Inception Score and mode coverage.

Its test accuracy is printed by ``genbench features DATASET`` and kept in the cache's
``.json`` beside the weights (measured figures belong in the reference report, not here).

Images are compared in "mean form": the expected value of the variant's observation given
the raw intensity v, i.e. v/255 for binarized variants and (v + 1/2)/256 for dequantized
data. That is what a model's ``sample`` returns (the observation mean), so a perfect model
scores the floor; comparing blurry means with binary draws would penalise every model for
the binarization, not for its samples. The classifier is trained on the same form.

The classifier is trained once per (dataset, variant, training images, code, epochs, seed)
and cached under ``<cache_dir>/features/<name>-<key>.pt`` (state dict) beside a ``.json``
with its test accuracy and provenance. Training is deterministic on CPU (explicit
generators, forked global RNG): bit-identical weights for a given torch build, CPU and
thread count (CPU reductions are summed in another order with another thread count, so
another machine may train slightly different weights, and ``feature_space`` says so).
The seed is fixed (``FEATURE_SEED``), not the run's seed, so runs with different seeds are
measured in one feature space. ``feature_space`` names the extractor and the hash of its
weights: numbers are comparable only within one.

InceptionV3 features are an option (``--set feature_extractor=inception --set
inception_weights=PATH``, a torchvision ``inception_v3`` state dict): 2048-d pool features
of images resized to 299x299. Note that the common FID implementations use the TF-ported
"pt_inception-2015-12-05" network, whose numbers differ from torchvision's weights.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.bundle import DataBundle
from genbench.errors import GenbenchError

FEATURE_SEED = 0  # one feature space for every run seed
SUBSET_SEED = 4321  # fixed subsets of real images (floors, references)
Task = Literal["classes", "attributes", "imagenet"]


def default_cache_dir() -> Path:
    """Where evaluator weights are cached: ``$GENBENCH_CACHE`` or ``~/.cache/genbench``."""
    from genbench.store import cache_root

    return cache_root()


def mean_images(x: torch.Tensor, variant: str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1]: E[observation | intensity] for the variant."""
    if variant == "continuous":
        return (x.float() + 0.5) / 256.0
    return x.float() / 255.0


def fixed_subset(total: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first ``n`` of a fixed permutation of ``total`` rows (splits can be class-sorted)."""
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    return torch.randperm(total, generator=gen)[: min(n, total)].to(device)


# -- the network ----------------------------------------------------------------------

class EvaluatorCNN(nn.Module):
    """(N, C, H, W) in [0, 1] -> (features (N, F), logits (N, K)).

    Stages of conv3x3-BN-ReLU-maxpool halve the image until it is at most 8 pixels wide
    (28 -> 14 -> 7: two stages; 64 -> 32 -> 16 -> 8: three), then a linear feature layer
    and the output layer.
    """

    def __init__(self, shape: tuple[int, int, int], outputs: int) -> None:
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        width = 32
        while h > 8:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, width, h, w = width, width * 2, h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.Flatten())  # (N, c * h * w)
        feature_dim = 128 if shape[1] <= 32 else 256
        self.feature = nn.Linear(c * h * w, feature_dim)
        self.head = nn.Linear(feature_dim, outputs)
        # features are reported centred and scaled to unit RMS on the training images (see
        # calibrate): KID's kernel (x.y/d + 1)^3 assumes features of order 1
        self.register_buffer("shift", torch.zeros(feature_dim))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.feature(self.body(x))  # (N, F), before the ReLU
        return (f - self.shift) / self.scale, self.head(F.relu(f))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, chunk: int = 500) -> None:
        """Set the feature shift (mean) and scale (RMS deviation) on images x, eval mode."""
        self.shift.zero_()
        self.scale.fill_(1.0)
        f = torch.cat([self(x[i : i + chunk])[0] for i in range(0, x.shape[0], chunk)])
        self.shift.copy_(f.mean(0))
        self.scale.copy_((f - f.mean(0)).pow(2).mean().sqrt().clamp_min(1e-12))


@dataclass
class Extractor:
    """A frozen feature extractor and what it was: name, weight hash, test accuracy."""

    name: str
    net: nn.Module  # eval mode, returns (features, logits)
    digest: str  # sha1 of the weights
    task: Task
    accuracy: float | None = None
    path: Path | None = None
    trained: bool = False  # trained by this call (False: loaded from the cache)
    # how images in [0, 1] reach the network (part of reference statistics' key)
    preprocessing: str = "as given: [0, 1] at the dataset's size, no resize"
    # the Inception Score of this space's logits as the library that defines the space computes
    # it, (score, standard error); None: genbench's own (the dataset's classifier) or none
    score_logits: Callable[[torch.Tensor], tuple[float, float]] | None = None

    @property
    def feature_space(self) -> str:
        return f"{self.name}:{self.digest[:12]}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of images (N, C, H, W) in [0, 1], ``chunk`` at a time."""
        device = next(self.net.parameters()).device
        feats, logits = [], []
        for start in range(0, images.shape[0], chunk):
            f, lg = self.net(images[start : start + chunk].to(device))
            feats.append(f.to(images.device))
            logits.append(lg.to(images.device))
        return torch.cat(feats), torch.cat(logits)


def weights_digest(net: nn.Module) -> str:
    h = hashlib.sha1()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- training -------------------------------------------------------------------------

def task_of(data: DataBundle) -> tuple[Task, int]:
    if data.info.num_classes:
        return "classes", data.info.num_classes
    if data.info.num_attributes:
        return "attributes", data.info.num_attributes
    raise GenbenchError(f"dataset {data.info.name!r} has no labels: the evaluator classifier "
                        "needs classes or attributes; use feature_extractor=inception")


def shift_images(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image translated by its own random integer shift in [-max_shift, max_shift]."""
    n, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen, device=x.device))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (N, W)
    out = pad[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def _loss(task: Task, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "classes":
        return F.cross_entropy(logits, y)
    return F.binary_cross_entropy_with_logits(logits, y.float())


@torch.no_grad()
def test_accuracy(net: nn.Module, data: DataBundle, task: Task, chunk: int = 500) -> float:
    """Class accuracy, or the mean per-attribute accuracy, on the test split."""
    net.eval()
    x, y = mean_images(data.test.x, data.info.variant), data.test.y
    correct = 0.0
    for start in range(0, x.shape[0], chunk):
        _, logits = net(x[start : start + chunk])
        yy = y[start : start + chunk]
        hit = logits.argmax(1) == yy if task == "classes" else ((logits > 0).float() == yy).float()
        correct += float(hit.float().sum())
    return correct / (x.shape[0] * (1 if task == "classes" else y.shape[1]))


def train_classifier(data: DataBundle, *, epochs: int, seed: int, batch_size: int = 64,
                     progress: Callable[[str], None] | None = None) -> tuple[nn.Module, float]:
    """Train the evaluator on the training split (mean form); returns (net, test accuracy).

    Adam with a cosine-decayed step size and small random translations; deterministic
    given ``seed`` on CPU.
    """
    task, outputs = task_of(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EvaluatorCNN(data.info.shape, outputs).to(data.device)
    x, y = mean_images(data.train.x, data.info.variant), data.train.y
    steps = max(x.shape[0] // batch_size, 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / (epochs * steps), 1.0))))
    gen = torch.Generator(device=data.device).manual_seed(seed)
    max_shift = max(data.info.shape[1] // 14, 1)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(x.shape[0], generator=gen, device=data.device)
        total = 0.0
        for step in range(steps):
            index = order[step * batch_size : (step + 1) * batch_size]  # drop the ragged end
            loss = _loss(task, net(shift_images(x[index], max_shift, gen))[1], y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        if progress:
            progress(f"evaluator epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}")
    net.eval()
    net.calibrate(x)
    return net, test_accuracy(net, data, task)


# -- the cache ------------------------------------------------------------------------

def _code_hash() -> str:
    """sha1 of the source that decides the weights: network, inputs and training."""
    parts = (mean_images, EvaluatorCNN, shift_images, _loss, train_classifier)
    return hashlib.sha1("".join(inspect.getsource(p) for p in parts).encode()).hexdigest()[:12]


CODE_HASH = _code_hash()


def data_digest(data: DataBundle) -> str:
    """sha1 of the training images and labels (what the classifier learns from)."""
    h = hashlib.sha1()
    for t in (data.train.x, data.train.y):
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def extractor_key(data: DataBundle, *, epochs: int, seed: int) -> dict[str, object]:
    """Everything the trained weights depend on."""
    return {"dataset": data.info.name, "variant": data.info.variant,
            "shape": list(data.info.shape), "train": data_digest(data),
            "n_train": len(data.train), "code": CODE_HASH, "epochs": epochs, "seed": seed}


def extractor_path(data: DataBundle, *, epochs: int, cache_dir: Path, seed: int = FEATURE_SEED
                   ) -> Path:
    """Where the evaluator for ``data`` is (or would be) cached: ``<name>-<key hash>.pt``."""
    task, _ = task_of(data)
    key = extractor_key(data, epochs=epochs, seed=seed)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / "features" / f"cnn{data.info.shape[1]}-{task}-{digest}.pt"


def load_cached_extractor(data: DataBundle, *, epochs: int, cache_dir: Path,
                          seed: int = FEATURE_SEED) -> Extractor | None:
    """The cached evaluator for ``data``, or None when it was never trained (never trains)."""
    task, outputs = task_of(data)
    path = extractor_path(data, epochs=epochs, cache_dir=cache_dir, seed=seed)
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    net = EvaluatorCNN(data.info.shape, outputs).to(data.device)
    try:  # a cache entry that fails to load is rebuilt (it is only a cache)
        net.load_state_dict(torch.load(path, map_location=data.device, weights_only=True))
        meta = json.loads(meta_path.read_text())
        cached = Extractor(meta["name"], net.eval(), weights_digest(net), task, meta["accuracy"], path)
    except Exception as err:  # noqa: BLE001  (truncated, corrupt, foreign: all the same here)
        import warnings

        from genbench.errors import GenbenchWarning

        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        warnings.warn(f"the evaluator classifier cache {path} is unreadable ({type(err).__name__}: "
                      f"{why}); rebuilding it", GenbenchWarning, stacklevel=2)
        for stale in (path, meta_path):
            stale.unlink(missing_ok=True)
        return None
    return cached


def find_extractor(data: DataBundle, feature_space: str, cache_dir: Path) -> Extractor | None:
    """The cached evaluator whose weights measured a run (``feature_space`` = "name:digest"),
    or None. Found by the weights' hash, not by the training key: the classifier must be the
    very one behind the run's numbers, even if the code that trains it has changed since."""
    task, outputs = task_of(data)
    name, _, digest = feature_space.partition(":")
    if not digest:
        return None
    for meta_path in sorted((Path(cache_dir) / "features").glob(f"{name or 'cnn'}*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable cache entry is no match
        path = meta_path.with_suffix(".pt")
        if meta.get("weights_sha1", "").startswith(digest) and meta.get("task") == task and path.exists():
            net = EvaluatorCNN(data.info.shape, outputs).to(data.device)
            # strict=False: buffers that only rescale the reported features do not change the logits
            try:
                net.load_state_dict(torch.load(path, map_location=data.device, weights_only=True),
                                    strict=False)
            except Exception:  # noqa: BLE001  (a corrupt entry is no match)
                continue
            return Extractor(meta.get("name", name), net.eval(), meta["weights_sha1"], task,
                             meta.get("accuracy"), path)
    return None


def load_or_train_extractor(data: DataBundle, *, epochs: int, cache_dir: Path,
                            seed: int = FEATURE_SEED,
                            progress: Callable[[str], None] | None = None) -> Extractor:
    """The cached evaluator for ``data``, trained (and cached) on first use."""
    cached = load_cached_extractor(data, epochs=epochs, cache_dir=cache_dir, seed=seed)
    if cached is not None:
        return cached
    from genbench import store

    task, _ = task_of(data)
    name = f"cnn{data.info.shape[1]}-{task}"
    path = extractor_path(data, epochs=epochs, cache_dir=cache_dir, seed=seed)
    net, accuracy = train_classifier(data, epochs=epochs, seed=seed, progress=progress)
    store.save_torch(path, {k: v.cpu() for k, v in net.state_dict().items()})
    wd = weights_digest(net)
    store.write_json(path.with_suffix(".json"), {
        "name": name, "accuracy": accuracy, "task": task, "weights_sha1": wd,
        "key": extractor_key(data, epochs=epochs, seed=seed)})
    return Extractor(name, net, wd, task, accuracy, path, trained=True)


# -- InceptionV3 (optional) -----------------------------------------------------------

class InceptionFeatures(nn.Module):
    """torchvision's InceptionV3: 2048-d pool features and ImageNet logits of [0, 1] images."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.fc = net.fc
        net.fc = nn.Identity()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grey -> RGB
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        f = self.net((x - self.mean) / self.std)  # (N, 2048)
        return f, self.fc(f)


def check_inception_weights(weights: str | None) -> dict[str, torch.Tensor]:
    """The state dict at ``weights`` if it is a torchvision ``inception_v3`` one, else one
    line; loaded with ``weights_only=True`` only (a file holding pickled code is refused).
    ``genbench run`` calls it before any training."""
    if not weights or not Path(weights).is_file():
        raise GenbenchError(
            "InceptionV3 features need a weights file: download torchvision's inception_v3 "
            "weights (inception_v3_google-0cc3c7bd.pth) and pass --set inception_weights=PATH, "
            "or use the default --set feature_extractor=classifier")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch's text would advise weights_only=False)
        raise GenbenchError(f"inception_weights {weights} is not a plain tensor state dict "
                            f"({type(err).__name__}; genbench never loads pickled code); pass "
                            "torchvision's inception_v3_google-0cc3c7bd.pth") from None
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if (not isinstance(fc, torch.Tensor) or tuple(fc.shape) != (1000, 2048)
            or not all(isinstance(v, torch.Tensor) for v in state.values())):
        raise GenbenchError(f"inception_weights {weights} is not a torchvision inception_v3 state "
                            "dict (no 1000 x 2048 fc.weight); pass inception_v3_google-0cc3c7bd.pth")
    return state


def inception_extractor(weights: str | None, device: torch.device | str = "cpu") -> Extractor:
    """InceptionV3 features from a torchvision ``inception_v3`` state-dict file."""
    state = check_inception_weights(weights)
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        net.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        raise GenbenchError(f"{weights} is not a torchvision inception_v3 state dict "
                            f"({str(err).strip().splitlines()[0][:160]})") from None
    net.aux_logits, net.AuxLogits = False, None
    model = InceptionFeatures(net).to(device).eval()
    return Extractor("inception-v3", model, weights_digest(model), "imagenet",
                     preprocessing="grey to RGB, bilinear to 299x299, ImageNet mean/std")


def get_extractor(data: DataBundle, *, kind: str, epochs: int, cache_dir: Path,
                  inception_weights: str | None = None,
                  progress: Callable[[str], None] | None = None,
                  feature_weights: str | None = None) -> Extractor:
    """The extractor a preset asks for (``feature_extractor``: classifier | inception |
    inception-fid | dinov2; the last two from the libraries that define them)."""
    if kind == "classifier":
        return load_or_train_extractor(data, epochs=epochs, cache_dir=cache_dir, progress=progress)
    if kind == "inception":
        return inception_extractor(inception_weights, data.device)
    if kind == "inception-fid":
        return inception_fid_extractor(feature_weights, data.device)
    if kind == "dinov2":
        return dinov2_extractor(feature_weights, data.device)
    raise GenbenchError(f"unknown feature_extractor {kind!r}; use classifier, inception, "
                        "inception-fid or dinov2")


def preset_extractor(data: DataBundle, preset: object, cache_dir: Path,
                     progress: Callable[[str], None] | None = None) -> Extractor:
    """The extractor the sample metrics use for ``data`` under ``preset`` (its
    ``feature_extractor``, ``feature_epochs`` and weights settings): one call, so a model that
    is handed the evaluator (``on_evaluator``, the fooling generator) gets the very network,
    from the same cache entry, that measures it."""
    return get_extractor(data, kind=getattr(preset, "feature_extractor", "classifier"),
                         epochs=preset.feature_epochs, cache_dir=cache_dir,  # type: ignore[attr-defined]
                         inception_weights=getattr(preset, "inception_weights", None),
                         feature_weights=getattr(preset, "feature_weights", None),
                         progress=progress)


# -- the literature's feature spaces, through the libraries that define them -------------
#
# Published FIDs use the TF-ported "pt_inception-2015-12-05" network that pytorch-fid,
# torch-fidelity and clean-fid share, with its own resize; FD-DINOv2 (Stein et al. 2023)
# uses DINOv2 ViT features. genbench calls the libraries (torch-fidelity, timm) rather than
# copying them, and never downloads weights in tests: ``--set feature_weights=PATH``, or
# the library's own cache.

FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name
LITERATURE_EXTRA = 'pip install "genbench[literature]"'


def _library(module: str, what: str):  # noqa: ANN202  (a module)
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise GenbenchError(f"{what} needs the {module} package: {LITERATURE_EXTRA}") from None


def _weights_file(given: str | None, cached: Path, url: str, what: str) -> str | None:
    """The weights to load: ``given``, else the library's cached file, else None (the library
    downloads) unless offline, where one line says what to fetch and where to put it."""
    if given:
        if not Path(given).is_file():
            raise GenbenchError(f"feature_weights={given}: no such file (the {what} weights)")
        return given
    if cached.is_file():
        return str(cached)
    if os.environ.get("GENBENCH_OFFLINE") == "1":
        raise GenbenchError(f"the {what} weights are not on this machine: download {url} into "
                            f"{cached.parent}/ or pass --set feature_weights=PATH")
    return None


class FidelityInception(nn.Module):
    """torch-fidelity's FID InceptionV3 on genbench's [0, 1] images: quantized to uint8 (as
    papers save samples), grey repeated to RGB; the library resizes to 299x299 (TF-compatible
    bilinear) and normalizes. Features of ``layer`` ("2048": pool3, as FID and KID use);
    logits: its unbiased ImageNet logits when asked for (the Inception Score's input)."""

    def __init__(self, net: nn.Module, with_logits: bool) -> None:
        super().__init__()
        self.net, self.with_logits = net, with_logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
        u8 = u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8
        out = self.net(u8)
        logits = out[1] if self.with_logits else out[0].new_zeros(out[0].shape[0], 0)
        return out[0], logits


def inception_fid_extractor(weights: str | None, device: torch.device | str = "cpu",
                            layer: str = "2048", logits: bool = True) -> Extractor:
    """The FID Inception network through torch-fidelity (its weights, resize, normalization)."""
    fe = _library("torch_fidelity.feature_extractor_inceptionv3", "feature_extractor=inception-fid")
    hub = Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_WEIGHTS
    path = _weights_file(weights, hub, fe.URL_INCEPTION_V3, "FID Inception (torch-fidelity)")
    names = [layer, "logits_unbiased"] if logits else [layer]
    try:
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", names,
                                             feature_extractor_weights_path=path)
    except GenbenchError:
        raise
    except Exception as err:  # noqa: BLE001  (a wrong file, a failed download: one line)
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise GenbenchError(f"the FID Inception weights did not load ({why}); download "
                            f"{fe.URL_INCEPTION_V3} into {hub.parent}/ or pass --set "
                            "feature_weights=PATH") from None
    model = FidelityInception(net.eval(), logits).to(device).eval()
    return Extractor(f"inception-fid-{layer}", model, weights_digest(net), "imagenet",
                     preprocessing="round(255 x) to uint8, grey to RGB; torch-fidelity's "
                                   "TF-compatible bilinear resize to 299x299, (x - 128) / 128",
                     score_logits=fidelity_inception_score if logits else None)


def fidelity_inception_score(logits: torch.Tensor) -> tuple[float, float]:
    """The Inception Score as papers report it: torch-fidelity's own of its 1008-way
    ``logits_unbiased`` (``calculate_metrics(isc=True)``: the mean of its default 10 splits'
    scores, the samples shuffled with its seed), and that mean's standard error (the split
    scores' standard deviation over sqrt(splits); torch-fidelity reports the deviation itself,
    ``inception_score_std`` = standard error x sqrt(splits - 1), the ± of papers)."""
    fid_isc = _library("torch_fidelity.metric_isc", "the Inception Score in feature_extractor=inception-fid")
    from torch_fidelity.helpers import get_kwarg

    out = fid_isc.isc_featuresdict_to_metric({"logits_unbiased": logits.detach().cpu()},
                                             "logits_unbiased", verbose=False)
    splits = get_kwarg("isc_splits", {})
    return (float(out[fid_isc.KEY_METRIC_ISC_MEAN]),
            float(out[fid_isc.KEY_METRIC_ISC_STD]) / math.sqrt(max(splits - 1, 1)))


DINOV2_MODEL = "vit_large_patch14_dinov2.lvd142m"  # FD-DINOv2 (Stein et al. 2023): ViT-L/14
DINOV2_SIZE = 224  # Stein et al. resize to 224x224 (bicubic)


class TimmFeatures(nn.Module):
    """A timm backbone on [0, 1] images: grey repeated to RGB, bicubic (antialiased) resize to
    ``size``, the model's own mean/std; features: its pooled output (DINOv2: the CLS token)."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size
        cfg = net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False,
                          antialias=True)
        f = self.net((x - self.mean) / self.std)  # (N, D): num_classes=0, pooled
        return f, f.new_zeros(f.shape[0], 0)


def dinov2_extractor(weights: str | None, device: torch.device | str = "cpu",
                     arch: str = DINOV2_MODEL, size: int = DINOV2_SIZE) -> Extractor:
    """DINOv2 ViT features through timm (FD-DINOv2): weights from ``weights`` (a state dict or
    safetensors file) or timm's Hugging Face cache."""
    timm = _library("timm", "feature_extractor=dinov2")
    repo = f"timm/{arch}"
    path = weights
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(repo, "model.safetensors")
            path = hit if isinstance(hit, str) else None
        except ImportError:
            path = None
    where = (f"download model.safetensors of https://huggingface.co/{repo} and pass --set "
             "feature_weights=PATH")
    if path is None and os.environ.get("GENBENCH_OFFLINE") == "1":
        raise GenbenchError(f"the DINOv2 weights are not on this machine: {where}")
    if path is not None and not Path(path).is_file():
        raise GenbenchError(f"feature_weights={path}: no such file (the DINOv2 weights)")
    try:
        net = timm.create_model(arch, pretrained=True, num_classes=0, img_size=size,
                                pretrained_cfg_overlay={"file": path} if path else None)
    except Exception as err:  # noqa: BLE001  (no internet, a wrong file: one line)
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise GenbenchError(f"the DINOv2 weights did not load ({why}); {where}") from None
    wrapped = TimmFeatures(net.eval(), size).to(device).eval()
    short = arch.split(".")[0]
    return Extractor(f"dinov2-{short}", wrapped, weights_digest(net), "imagenet",
                     preprocessing=f"grey to RGB, bicubic antialiased resize to {size}x{size}, "
                                   "ImageNet mean/std; timm's pooled CLS features")
