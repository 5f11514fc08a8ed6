"""genbench: a comparative benchmark suite for deep generative models."""

from genbench.registry import register_dataset, register_metric, register_model

__version__ = "0.1.0"
__all__ = ["__version__", "register_dataset", "register_metric", "register_model"]
