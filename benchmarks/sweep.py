"""What the hyperparameter sweeps (``llm_tuning.py``, ``classifier_tuning.py``) share."""

from __future__ import annotations

import itertools


def configs(grids: dict) -> list[tuple[str, dict]]:
    """Every ``(method, hyperparameters)`` of ``{method: {name: [values]}}`` grids (full product)."""
    out = []
    for m, grid in grids.items():
        keys = sorted(grid)
        out += [(m, dict(zip(keys, vals))) for vals in itertools.product(*(grid[k] for k in keys))]
    return out
