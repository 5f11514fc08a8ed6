"""Attribute edits for every model that can make them: one API, three ways.

``Editor.edit(x, attribute, delta)`` returns the decoded, edited images (N, C, H, W):

1. the model's own ``edit`` hook (JMVAE: encode with q(z|x, y), move the attribute in y,
   decode);
2. a conditional model whose condition holds the attribute (CVAE on CelebA's 40
   attributes): encode with the true condition, decode the same code with the changed one;
3. latent arithmetic for everything with an encoder (VAE, AE, VAE-GAN; CVAE and M2 on
   attributes outside their condition, which is then held fixed): z + delta * v, where v is
   the mean code of reference images with the attribute high minus the mean code of those
   with it low (Radford et al. 2016; Larsen et al. 2016), the arithmetic gallery's vector.

Units of ``delta``: standard deviations of the training data for a measured (continuous)
attribute, and the raw value for a binary one (0 -> 1 adds the attribute). The arithmetic
vector is calibrated to those units: for a measure it is divided by the gap between the mean
attribute values of the high and low quartiles (in sd), so that delta = 1 asks for one sd
whichever way the edit is made. A zero edit returns the model's reconstruction (the decoded
mean code; JMVAE's through its joint encoder).

This module imports only the contract and data layers, so metrics and galleries both use it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from genbench.contract import generate_from
from genbench.data.bundle import DataBundle
from genbench.errors import GenbenchError

REFERENCE_N = 1000  # training images whose codes give the arithmetic vectors
QUARTILE = 0.25  # high / low groups of a measured attribute: top and bottom quarter


@dataclass
class Attributes:
    """The editable attributes of a dataset and their values on a set of images."""

    names: tuple[str, ...]
    values: torch.Tensor  # (N, A) raw values: measures in their units, binary in {0, 1}
    scale: torch.Tensor  # (A,) one unit of delta: the training sd, or 1 for binary
    binary: tuple[bool, ...]

    def column(self, name: str) -> int:
        if name not in self.names:
            raise GenbenchError(f"no attribute {name!r} to edit; this dataset has "
                                f"{', '.join(self.names) or 'none'}")
        return self.names.index(name)


def dataset_attributes(data: DataBundle, split: str = "train", n: int | None = None
                       ) -> Attributes:
    """Measured attributes (``*-morpho`` datasets) or binary ones (CelebA) of a split."""
    part = data.split(split)
    train = data.train
    if data.measure_names and part.measures is not None:
        values = part.measures[:n].float()
        scale = train.measures.float().std(0).clamp_min(1e-6)
        return Attributes(tuple(data.measure_names), values, scale,
                          (False,) * len(data.measure_names))
    if data.info.num_attributes and part.y is not None:
        values = part.y[:n].float()
        names = tuple(data.info.label_names)
        return Attributes(names, values, torch.ones(len(names), device=values.device),
                          (True,) * len(names))
    raise GenbenchError(f"dataset {data.info.name!r} has no attributes to edit: use a "
                        "*-morpho dataset (measured thickness, slant, ...) or celeba")


def _accepts(fn: object, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def encode_mean(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The mean code of q(z|x) (given y for a conditional model)."""
    if getattr(model, "conditional", False):
        if y is None:
            raise GenbenchError("a conditional model's edit needs the images' labels y")
        return model.encode(x, y=y).mean
    return model.encode(x).mean


def direction(codes: torch.Tensor, values: torch.Tensor, binary: bool, scale: float
              ) -> torch.Tensor:
    """The arithmetic vector of one attribute, per unit of delta: (N, D), (N,) -> (D,).

    Binary: mean(z | present) - mean(z | absent). Measured: mean code of the top quartile
    minus the bottom quartile, divided by their gap in attribute value (in units of scale).
    """
    if binary:
        on, off = values > 0.5, values <= 0.5
        if not on.any() or not off.any():
            raise GenbenchError("an attribute present in all or none of the reference images "
                                "has no direction")
        return codes[on].mean(0) - codes[off].mean(0)
    lo, hi = torch.quantile(values, QUARTILE), torch.quantile(values, 1 - QUARTILE)
    low, high = values <= lo, values >= hi
    gap = (values[high].mean() - values[low].mean()) / scale
    if not low.any() or not high.any() or gap <= 0:
        raise GenbenchError("a measured attribute without spread has no direction")
    return (codes[high].mean(0) - codes[low].mean(0)) / gap


@dataclass
class Editor:
    """Edits one model's images (see the module docstring for the three ways)."""

    model: torch.nn.Module
    attributes: Attributes  # names and scales (values: the reference images')
    how: str  # "hook" | "condition" | "arithmetic"
    vectors: dict[str, torch.Tensor] = field(default_factory=dict)  # arithmetic, per unit

    def method(self, attribute: str) -> str:
        """How ``attribute`` is edited: the hook, the condition or latent arithmetic."""
        if self.how == "condition" and self.attributes.binary[self.attributes.column(attribute)]:
            return "condition"
        return "hook" if self.how == "hook" else "arithmetic"

    @torch.no_grad()
    def edit(self, x: torch.Tensor, attribute: str, delta: float, y: torch.Tensor | None = None,
             measures: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded images with ``attribute`` moved by ``delta`` (sd, or raw for binary)."""
        col = self.attributes.column(attribute)
        model, how = self.model, self.method(attribute)
        if how == "hook":
            kwargs = {"measures": measures} if _accepts(model.edit, "measures") else {}
            return model.edit(x, attribute, float(delta), y=y, **kwargs)
        cond = y if getattr(model, "conditional", False) else None
        z = encode_mean(model, x, cond)
        if how == "condition":  # CVAE: the same code, decoded under the changed condition
            y2 = y.float().clone()
            y2[:, col] += delta
            return generate_from(model, z, y2)
        if attribute not in self.vectors:
            raise GenbenchError(f"no arithmetic vector for {attribute!r}")
        return generate_from(model, z + delta * self.vectors[attribute].to(z), cond)


def edit_method(model: torch.nn.Module) -> str:
    """"hook", "condition" or "arithmetic" for ``model``; a GenbenchError when it cannot edit."""
    if callable(getattr(model, "edit", None)):
        return "hook"
    if not callable(getattr(model, "encode", None)):
        raise GenbenchError("no encoder: edits need encode(x) (or an edit hook)")
    if not (callable(getattr(model, "generate", None)) or callable(getattr(model, "decode", None))):
        raise GenbenchError("no decoder: edits need generate(z) or decode(z)")
    if getattr(model, "conditional", False):
        return "condition"
    return "arithmetic"


@torch.no_grad()
def make_editor(model: torch.nn.Module, data: DataBundle, n_reference: int = REFERENCE_N
                ) -> Editor:
    """An :class:`Editor` for ``model`` on ``data``'s attributes; arithmetic vectors come from
    the first ``n_reference`` training images (their evaluation form, encoded)."""
    attrs = dataset_attributes(data, "train", n_reference)
    how = edit_method(model)
    editor = Editor(model, attrs, how)
    needs_vectors = how == "arithmetic" or (how == "condition" and not all(attrs.binary))
    if needs_vectors:
        x = data.eval_x("train", n_reference)
        y = data.eval_y("train", n_reference)
        codes = torch.cat([encode_mean(model, x[i : i + 500], None if y is None else y[i : i + 500]
                                       if getattr(model, "conditional", False) else None)
                           for i in range(0, x.shape[0], 500)])
        for j, name in enumerate(attrs.names):
            if how == "condition" and attrs.binary[j]:
                continue
            editor.vectors[name] = direction(codes, attrs.values[:, j].to(codes.device),
                                             attrs.binary[j], float(attrs.scale[j]))
    return editor
