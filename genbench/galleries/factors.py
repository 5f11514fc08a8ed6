"""Factor sweeps on data with set factors (synthetic-3d): for each factor, a few test images
(rows) edited from -2 to +2 training sd of that factor (columns), the picture behind the
``edits`` numbers on rendered data.

The edit is the one ``edits`` measures (:mod:`genbench.kit.edits`): a model with its own ``edit``
hook moves what it assigned to the factor (DC-IGN: the factor's latent unit alone); a VAE or
AE moves its code along the latent-arithmetic vector found from the training images'
factors; a CVAE does the same with its condition held. The first column is the input; the
labels under a row's first two tiles say the factor and how it was edited.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.data import render3d
from genbench.errors import GenbenchError
from genbench.galleries.core import NotApplicable, display_order, register_gallery
from genbench.galleries.sweeps import labelled_grid, save_image
from genbench.kit.edits import edit_method, make_editor
from genbench.loading import LoadedRun

HOW = {"hook": "own edit", "arithmetic": "arithmetic", "condition": "condition"}


@register_gallery("factors", needs=frozenset({"encode"}),
                  description="Factor sweeps on synthetic-3d: for each set factor, test images "
                              "(rows) edited from -2 to +2 sd (DC-IGN: its assigned unit; "
                              "others: latent arithmetic).")
@torch.no_grad()
def factors(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 3,
            steps: int = 7) -> Path:
    """Rows: ``n`` test images per factor; columns: the input, then ``steps`` edits."""
    data = run.data
    if tuple(data.measure_names or ()) != render3d.FACTORS:
        raise NotApplicable("the factors gallery needs data with set factors (synthetic-3d)")
    try:
        edit_method(run.model)
    except GenbenchError as err:
        raise NotApplicable(str(err)) from None
    editor = make_editor(run.model, data)
    idx = display_order(data.eval_y("test"), len(data.test))[:n].to(data.device)
    x = data.eval_x("test")[idx]
    y = None if data.test.y is None else data.eval_y("test")[idx]
    m = data.test.measures[idx]
    deltas = [round(d, 6) + 0.0 for d in torch.linspace(-2, 2, steps).tolist()]  # no "-0.0"
    rows, labels = [], []
    for name in render3d.FACTORS:
        how = HOW[editor.method(name)]
        edits = [editor.edit(x, name, d, y=y, measures=m).clamp(0, 1) for d in deltas]
        rows.append(torch.stack([x, *edits], 1))  # (n, K, C, H, W)
        labels += [[name, how] + [""] * (steps - 1) for _ in range(n)]
    headers = ["input"] + [f"{d:+.1f} sd" for d in deltas]
    return save_image(labelled_grid(torch.cat(rows), labels, headers, scale=3), out_path)
