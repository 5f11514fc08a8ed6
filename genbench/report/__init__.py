"""``genbench report`` and ``genbench gallery``: what a person reads.

- :mod:`tables` results -> comparison tables (mean ± std over seeds, best marked, n/a, failures);
- :mod:`plots` seaborn/matplotlib figures; :mod:`document` markdown and self-contained HTML;
- :mod:`galleries` the report's gallery section, drawn by :func:`genbench.galleries.render_all`;
- :mod:`build` puts them together; :mod:`commands` holds the two thin CLI commands.

The report reads only the store and never trains; pictures decoded from checkpoints come
from :mod:`genbench.galleries` through ``render``/``render_all``, which load the checkpoint.
"""
