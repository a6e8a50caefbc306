"""The comparator web UI (``unlearnkit ui``): a read-only JSON API over a workspace and the
page that draws it (docs/comparator.md).

Modules: ``models`` (run specs -> hash-verified models and their tasks), ``analysis`` (pure
computations: class-wise accuracy, prediction matrices, embeddings, CKA, attack features),
``cache`` (JSON results under ``<home>/ui-cache``), ``views`` (what each endpoint returns),
``app`` (the FastAPI app). FastAPI is imported only by :func:`create_app`.
"""

from __future__ import annotations

from pathlib import Path

#: the built page (index.html, app.js, app.css), shipped in the package
STATIC = Path(__file__).resolve().parent / "static"


def create_app(workspace):
    """The FastAPI app serving ``workspace`` (see :func:`unlearnkit.ui.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(workspace)


__all__ = ["STATIC", "create_app"]
