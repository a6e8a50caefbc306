"""The comparator's FastAPI app: the read-only JSON API under ``/api/v1`` and the page.

``create_app(workspace)`` serves

* ``/``: the built page (``static/index.html``), or a short HTML page saying to run
  ``make ui`` when the bundle is absent; ``/static/<file>`` (and ``/<file>`` for a file at
  the top of the bundle): its assets;
* ``/api/v1/...``: the endpoints of docs/comparator.md, answered by :mod:`unlearnkit.ui.views`
  (and by ``unlearnkit.ui.lm`` / ``unlearnkit.ui.requests`` where those modules exist;
  without them their routes answer a 404 problem ``not-available``).

Every error is RFC 9457 ``application/problem+json`` ``{type, title, status, detail,
instance}`` in the service's style (:mod:`unlearnkit.service.app`); the page shows ``detail``.
Every number in a JSON answer is finite or ``null``.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UnlearnkitError
from . import STATIC, views
from .analysis import nan_to_none
from .models import UIError

log = logging.getLogger("unlearnkit.ui")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://unlearnkit.dev/problems/"

NO_BUNDLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>unlearnkit comparator</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>unlearnkit comparator</h1>
<p>The page's bundle is not built: <code>src/unlearnkit/ui/static/index.html</code> is missing.
Run <code>make ui</code> in the repository (it needs Node), or install a released package,
which ships the bundle.</p>
<p>The JSON API works without it: <a href="api/v1/workspace">api/v1/workspace</a>,
<a href="api/v1/runs">api/v1/runs</a>.</p>
</body></html>
"""

#: content types of the bundle's files
MEDIA = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


def problem(status: int, title: str, detail: str, kind: str, instance: str | None = None) -> JSONResponse:
    """An RFC 9457 problem answer."""
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail, "instance": instance}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _json(obj: Any) -> JSONResponse:
    return JSONResponse(nan_to_none(obj))


def optional_module(name: str) -> ModuleType | None:
    """``unlearnkit.ui.<name>`` where it exists (the LM and deletion-request views), else None;
    an import error inside an existing module is raised, not hidden."""
    full = f"{__package__}.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as e:
        if e.name == full:
            return None
        raise


def _needs(name: str) -> ModuleType:
    mod = optional_module(name)
    if mod is None:
        raise UIError(404, f"the {name} views are not available in this version", "not-available", "Not available")
    return mod


def _static_file(name: str) -> FileResponse | None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = STATIC / name
    try:
        inside = path.resolve().parent == STATIC.resolve()
    except OSError:
        return None
    if not inside or not path.is_file():
        return None
    return FileResponse(path, media_type=MEDIA.get(path.suffix))


def create_app(workspace) -> FastAPI:
    """The comparator over ``workspace`` (a :class:`~unlearnkit.orchestration.experiment.Workspace`;
    read-only ones are served without writing anything)."""
    from .. import __version__

    ws = workspace
    app = FastAPI(
        title="unlearnkit comparator",
        version=__version__,
        description="Read-only JSON API of the comparator web UI (docs/comparator.md).",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )

    # ------------------------------------------------------------- errors
    @app.exception_handler(UIError)
    async def _ui_error(request: Request, e: UIError):
        return problem(e.status, e.title, e.detail, e.kind, request.url.path)

    @app.exception_handler(UnlearnkitError)
    async def _unlearnkit_error(request: Request, e: UnlearnkitError):
        return problem(422, "Unprocessable request", str(e), "invalid-request", request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path")) or "query"
            parts.append(f"{where}: {err.get('msg')}")
        return problem(422, "Invalid request", "; ".join(parts), "validation", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed"}
        kind = {404: "not-found", 405: "method-not-allowed"}.get(e.status_code, "http-error")
        return problem(e.status_code, titles.get(e.status_code, "Error"), str(e.detail), kind, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("comparator: unexpected error on %s", request.url.path)
        return problem(
            500,
            "Internal error",
            f"the comparator failed ({type(e).__name__}); see the log of `unlearnkit ui`",
            "internal",
            request.url.path,
        )

    # ------------------------------------------------------------- the page
    @app.get("/", include_in_schema=False)
    def index():
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(NO_BUNDLE)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        found = _static_file(name)
        if found is None:
            raise UIError(404, f"no file {name!r} in the page's bundle", "not-found")
        return found

    # ------------------------------------------------------------- core views
    A = Query(..., min_length=1, max_length=200, description="a model: run id, reference:<run> or original:<run>")
    B = Query(None, max_length=200, description="the other model (default: a's reference)")

    @app.get("/api/v1/workspace")
    def workspace_():
        return _json(views.workspace_view(ws))

    @app.get("/api/v1/runs")
    def runs(
        task: str | None = Query(None, max_length=200),
        scenario: str | None = Query(None, max_length=200),
        method: str | None = Query(None, max_length=200),
        seed: int | None = Query(None),
        kind: str | None = Query(None, max_length=32),
    ):
        return _json(views.runs_view(ws, task, scenario, method, seed, kind))

    @app.get("/api/v1/pair")
    def pair(a: str = A, b: str | None = B):
        return _json(views.pair_view(ws, a, b))

    @app.get("/api/v1/classifier/classes")
    def classes(a: str = A, b: str | None = B):
        return _json(views.classes_view(ws, a, b))

    @app.get("/api/v1/classifier/embeddings")
    def embeddings(
        a: str = A,
        b: str | None = B,
        projection: str = Query("pca", pattern="^(pca|umap)$"),
        sample: int = Query(views.DEFAULT_SAMPLE, ge=1, le=views.MAX_SAMPLE),
    ):
        return _json(views.embeddings_view(ws, a, b, projection, sample))

    @app.get("/api/v1/classifier/cka")
    def cka(a: str = A, b: str | None = B):
        return _json(views.cka_view(ws, a, b))

    @app.get("/api/v1/classifier/instances")
    def instances(a: str = A, b: str | None = B, ids: str = Query("", max_length=20000)):
        return _json(views.instances_view(ws, a, b, ids))

    @app.get("/api/v1/attack")
    def attack(a: str = A, b: str | None = B):
        return _json(views.attack_view(ws, a, b))

    # ------------------------------------------------------------- language models (unlearnkit.ui.lm)
    @app.get("/api/v1/lm/overview")
    def lm_overview():
        return _json(_needs("lm").overview(ws))

    @app.get("/api/v1/lm/probes")
    def lm_probes(a: str = A, b: str | None = B):
        return _json(_needs("lm").probes(ws, a, b))

    @app.get("/api/v1/lm/questions")
    def lm_questions(a: str = A, b: str | None = B, split: str = Query("forget", pattern="^(forget|retain)$")):
        return _json(_needs("lm").questions(ws, a, b, split))

    @app.get("/api/v1/lm/question")
    def lm_question(
        a: str = A,
        b: str | None = B,
        split: str = Query("forget", pattern="^(forget|retain)$"),
        index: int = Query(..., ge=0),
    ):
        return _json(_needs("lm").question(ws, a, b, split, index))

    # ------------------------------------------------------------- deletion requests (unlearnkit.ui.requests)
    def _service():
        mod = _needs("requests")
        if not mod.has_service(ws):
            raise UIError(
                404,
                "this workspace has no deletion-request service tables (start `unlearnkit serve` to create them)",
                "no-service",
            )
        return mod

    @app.get("/api/v1/requests")
    def requests_list():
        return _json(_service().list_requests(ws))

    @app.get("/api/v1/requests/{request_id}")
    def request_detail(request_id: str):
        return _json(_service().request_detail(ws, request_id))

    # ------------------------------------------------------------- other bundle files
    @app.get("/{name}", include_in_schema=False)
    def top_file(name: str):
        found = _static_file(name)
        if found is None:
            raise UIError(404, f"no page or file at /{name}", "not-found")
        return found

    @app.head("/", include_in_schema=False)
    def index_head():
        return Response(status_code=200, media_type="text/html")

    return app
