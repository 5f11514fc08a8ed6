"""Dataset sources and their offline rules. Importing this package registers them."""

from __future__ import annotations

from genbench.data import celeba, mnist, mnist5k, morpho, render3d, synthetic  # noqa: F401  (registration)
from genbench.data.bundle import (
    VARIANTS,
    Batch,
    DataBundle,
    DataRequest,
    Split,
    make_bundle,
    transform,
)
from genbench.registry import get_dataset


def load_dataset(request: DataRequest) -> DataBundle:
    """Load ``request.name`` through its registered source."""
    return get_dataset(request.name).loader(request)


# transform: a model that keeps raw images (M2's labelled set) turns them into its variant
__all__ = ["VARIANTS", "Batch", "DataBundle", "DataRequest", "Split", "load_dataset",
           "make_bundle", "transform"]
