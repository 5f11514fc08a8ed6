"""``genbench report`` and ``genbench gallery``: what a person reads.

- :mod:`tables` results -> comparison tables (mean ± std over seeds, best marked, n/a, failures);
- :mod:`plots` seaborn/matplotlib figures; :mod:`document` markdown and self-contained HTML;
- :mod:`gallery`, :mod:`arithmetic`, :mod:`latent` pictures decoded from checkpoints;
- :mod:`build` puts them together; :mod:`commands` holds the two thin CLI commands.

The report reads only the store and never trains.
"""
