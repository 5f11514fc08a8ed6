"""The front doors: parse, call one library function, print; nothing below imports them.

- :mod:`~genbench.interfaces.cli` (the ``genbench`` command), with
  :mod:`~genbench.interfaces.commands`, :mod:`~genbench.interfaces.report_cli` (``genbench
  report``, ``genbench gallery``), :mod:`~genbench.interfaces.listing` and
  :mod:`~genbench.interfaces.listcache` (``genbench list``);
- :mod:`~genbench.interfaces.api` (``genbench.run``, ``genbench.load_results``...),
  :mod:`~genbench.interfaces.export` and :mod:`~genbench.interfaces.notebook`.

The old paths (``genbench.cli``...) still import these modules.
"""
