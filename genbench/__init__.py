"""genbench: a comparative benchmark suite for deep generative models.

From Python: ``genbench.run``, ``genbench.evaluate``, ``genbench.load_results``,
``genbench.summary``, ``genbench.load_history``, ``genbench.load_per_image``,
``genbench.load_model``, ``genbench.sample``, ``genbench.score`` (see :mod:`genbench.api`); bad
input raises ``genbench.GenbenchError`` with one line that says what to do.
"""

from genbench.errors import GenbenchError
from genbench.registry import register_dataset, register_metric, register_model

__version__ = "0.1.0"
_API = ("run", "evaluate", "load_results", "summary", "load_history", "load_per_image", "load_model",
        "sample", "export_results", "score")
__all__ = ["__version__", "GenbenchError", "register_dataset", "register_metric", "register_model", *_API]


def __getattr__(name: str):  # the API loads pandas and torch on first use, not on import
    if name == "export_results":  # (genbench.export is the module)
        from genbench.export import export_results

        return export_results
    if name in _API:
        from genbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'genbench' has no attribute {name!r}")
