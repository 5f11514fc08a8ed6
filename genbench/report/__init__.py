"""``genbench report``: what a person reads.

- :mod:`tables` results -> comparison tables (mean ± std over seeds, best marked, n/a, failures);
- :mod:`plots` seaborn/matplotlib figures; :mod:`document` markdown and self-contained HTML;
- :mod:`galleries` the report's gallery section: it places the pictures found in the store;
- :mod:`build` puts them together (the CLI commands are in :mod:`genbench.interfaces.report_cli`).

The report reads only the store: it never trains and imports no plugin, checkpoint loading
or gallery code. The galleries are drawn where models are loaded, at the end of a run's
evaluation or by ``genbench gallery --results`` (:mod:`genbench.galleries.stored`).
"""
