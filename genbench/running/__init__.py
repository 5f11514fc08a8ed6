"""Running models: scheduling, the training runner, evaluation and what they show or log.

Three layers, top to bottom (tests/test_layers.py):

- runs: :mod:`~genbench.running.runs` (sweeps of models and seeds),
  :mod:`~genbench.running.costs` (``--plan``), :mod:`~genbench.running.check`
  (``genbench check``), :mod:`~genbench.running.scoring` (``genbench score``), and the
  executors in :mod:`genbench.executors`;
- training: :mod:`~genbench.running.training` (loop, checkpoints, resume),
  :mod:`~genbench.running.display` (the terminal display), :mod:`~genbench.running.loggers`,
  :mod:`~genbench.running.tblog` and :mod:`~genbench.running.wandblog` (``--log``);
- evaluation: :mod:`~genbench.running.evaluation` (runs the metrics, writes their results) and
  :mod:`~genbench.running.outside` (samples from a model genbench did not train).

The old paths (``genbench.training``...) still import these modules.
"""
