"""genbench: a comparative benchmark suite for deep generative models.

From Python: ``genbench.run``, ``genbench.evaluate``, ``genbench.load_results``,
``genbench.summary``, ``genbench.load_history``, ``genbench.load_per_image``,
``genbench.load_model``, ``genbench.sample``, ``genbench.score`` (see
:mod:`genbench.interfaces.api`); bad input raises ``genbench.GenbenchError`` with one line that
says what to do.

Where things are (README "How genbench is built"): the core at the top (``contract``,
``registry``, ``store``, ``data/``, ``settings``...), the model-building kit in ``kit/``,
``metrics/`` and ``galleries/``, training, evaluation and scheduling in ``running/`` and
``executors/``, ``report/``, and the front doors (CLI, Python API) in ``interfaces/``. The old
flat paths (``genbench.nn``, ``genbench.training``, ``genbench.cli``...) still import the
moved modules (:mod:`genbench.moved`).
"""

from genbench import moved
from genbench.errors import GenbenchError
from genbench.registry import register_dataset, register_metric, register_model

moved.install()

__version__ = "0.1.0"
_API = ("run", "evaluate", "load_results", "summary", "load_history", "load_per_image", "load_model",
        "sample", "export_results", "score")
__all__ = ["__version__", "GenbenchError", "register_dataset", "register_metric", "register_model", *_API]


def __getattr__(name: str):  # the API loads pandas and torch on first use, not on import
    if name == "export_results":  # (genbench.interfaces.export is the module)
        from genbench.interfaces.export import export_results

        return export_results
    if name in _API:
        from genbench.interfaces import api

        return getattr(api, name)
    if f"genbench.{name}" in moved.MOVED:  # an old path, as `genbench.training` after `import genbench`
        import importlib

        return importlib.import_module(f"genbench.{name}")
    raise AttributeError(f"module 'genbench' has no attribute {name!r}")
