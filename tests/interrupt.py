"""A Ctrl-C in the middle of training, for the resume tests: the plan's batches raise
KeyboardInterrupt when the n-th one is asked for, as a user's keypress would."""

from __future__ import annotations

from genbench.training import Plan


def interrupt_at_batch(plan: Plan, n: int) -> None:
    original, calls = plan.data.train_batches, {"n": 0}

    def interrupting(*args, **kwargs):
        for batch in original(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            yield batch

    object.__setattr__(plan.data, "train_batches", interrupting)
