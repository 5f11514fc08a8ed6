"""`python tests/sigint_child.py POINT genbench-args...`: the genbench CLI, with a real SIGINT
sent to this process at POINT, as a user's Ctrl-C would land (for the resume tests).

POINT is ``step:N`` (right after the N-th optimizer step of this process, inside the
training step), ``grid:N`` (inside the N-th image grid saved: the epoch-end sample grid, then
the final images), ``metric:NAME`` (inside metric NAME, after it computed its numbers) or
``none``.
"""

from __future__ import annotations

import os
import signal
import sys

from genbench.plugins import load_plugins
from genbench.registry import METRICS

point, args = sys.argv[1], sys.argv[2:]
kind, _, arg = point.partition(":")
counts = {"n": 0}


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def count() -> None:
    counts["n"] += 1
    if counts["n"] == int(arg):
        ctrl_c()


load_plugins()
if kind == "step":
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(lambda *a: count())
elif kind == "grid":
    import genbench.images

    def save_grid(*a, _save=genbench.images.save_grid, **k):
        count()
        return _save(*a, **k)

    genbench.images.save_grid = save_grid
elif kind == "metric":
    import dataclasses

    entry = METRICS[arg]

    def fn(ctx, _fn=entry.fn):
        out = _fn(ctx)
        ctrl_c()
        return out

    METRICS[arg] = dataclasses.replace(entry, fn=fn)

from genbench.cli import app  # noqa: E402

app(args, prog_name="genbench")
