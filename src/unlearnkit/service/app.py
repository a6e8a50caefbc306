"""The HTTP surface of the deletion-request service (FastAPI).

Paths are versioned (``/v1/...``); every error is RFC 9457 ``application/problem+json``
(``type``, ``title``, ``status``, ``detail``, ``instance``); lists are keyset-paginated
(``?after=<cursor>&limit=N``, the answer's ``next`` is the next cursor, ``null`` at the end).
Authentication is an API key (``Authorization: Bearer uk_...`` or ``X-API-Key``) with
scopes ``deletion:submit``, ``deletion:read``, ``model:admin``; each key has a rate limit
(requests per minute, a token bucket per process). ``/healthz``, ``/readyz``, ``/metrics``
(Prometheus) and ``/v1/signing-key`` need no key.

The OpenAPI document is checked in at ``docs/openapi.json`` (``unlearnkit serve
--openapi FILE`` writes it) and a test compares it with this app's.
"""

import json
import logging
import threading
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UnlearnkitError
from .core import REQUEST_STATES, ApiKey, Service, ServiceError

log = logging.getLogger("unlearnkit.service")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://unlearnkit.dev/problems/"
MAX_BODY_BYTES = 1_000_000

ID = Annotated[str, Field(min_length=1, max_length=256)]


# --------------------------------------------------------------------------- models
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    train_run: str = Field(min_length=1, max_length=64, description="id (or unique prefix) of a `train` run")
    policy: dict[str, Any] | None = Field(None, description="overrides of the service's policy for this line")


class DeletionIn(Strict):
    subjects: list[ID] = Field(
        default_factory=list,
        max_length=1000,
        description="subject ids (paths such as institution/patient name everything under them)",
    )
    example_ids: list[ID] = Field(default_factory=list, max_length=10000)


class RollbackIn(Strict):
    # strict: JSON false/true or "0" must not roll a line back (lax mode makes them 0/1)
    to_version: StrictInt = Field(ge=0)


class DecisionIn(Strict):
    decision: str = Field(pattern="^(release|refuse)$")
    reason: str = Field("", max_length=500)


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class Line(BaseModel):
    name: str
    id: str
    train_run: str
    modality: str
    created_at: str
    current_version: int
    current_artifact: str
    deleted_examples: int
    policy: dict[str, Any]
    canary_size: int


class Version(BaseModel):
    version: int
    artifact: str
    run_id: str
    parent_version: int | None
    batch_id: str | None
    created_at: str
    status: str
    note: str | None
    training_state: dict | None = Field(
        None,
        description="a sharded line's SISA state: shards, slices, pending_deletions (answered "
        "approximately, still in the checkpoints), stale_shards; a version whose model a method "
        "built around the original (GNNDelete's operators): kind model and the methods, in order; "
        "null otherwise",
    )


class TimelineEvent(BaseModel):
    at: str
    event: str
    seq: int


class DeletionRequestOut(BaseModel):
    id: str
    line: str
    state: str
    created_at: str
    updated_at: str
    subjects: list[str] = Field(description="HMAC-SHA256 pseudonyms of the subjects, never the raw ids")
    examples: int
    batch: str | None
    version: int | None
    reason: str | None
    certificate: str | None
    timeline: list[TimelineEvent] | None = None


class RequestPage(BaseModel):
    items: list[DeletionRequestOut]
    next: int | None = None


class Batch(BaseModel):
    id: str
    line: str
    state: str
    opened_at: str
    closed_at: str | None
    finished_at: str | None
    requests: list[str]
    steps: dict[str, Any]
    reason: str | None


class Rollback(BaseModel):
    line: str
    to: int
    reopened: list[str]
    batch: str | None
    model_config = ConfigDict(populate_by_name=True)
    from_: int = Field(alias="from")


class AuditEntry(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    entity: str
    entity_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next: int | None = None


class SigningKeyOut(BaseModel):
    key_id: str
    public_key: str


ERRORS = {
    s: {"model": Problem, "content": {PROBLEM: {}}, "description": d}
    for s, d in {
        400: "malformed body or headers",
        401: "no or unknown API key",
        403: "the key lacks the scope",
        404: "not found",
        409: "conflict",
        413: "body too large",
        422: "invalid request",
        429: "rate limit exceeded",
    }.items()
}


# --------------------------------------------------------------------------- the app
class _Buckets:
    """Per-key token buckets (this process): ``rate`` per minute, bursts up to ``rate``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: ApiKey) -> float | None:
        """None when allowed, else seconds until a token is free."""
        rate = key.rate_per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key.id, (float(key.rate_per_minute), now))
            tokens = min(float(key.rate_per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._state[key.id] = (tokens, now)
                return (1.0 - tokens) / rate
            self._state[key.id] = (tokens - 1.0, now)
            return None


def problem(status: int, title: str, detail: str, kind: str, instance: str | None = None, headers=None) -> JSONResponse:
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail, "instance": instance}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def create_app(service: Service, notify=None) -> FastAPI:
    """The app over ``service``; ``notify(batch_id)`` wakes a held batch after a decision."""
    from .. import __version__

    app = FastAPI(
        title="unlearnkit deletion-request service",
        version=__version__,
        description="Deletion requests in; verified models, signed certificates and an audit log out.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    buckets = _Buckets()

    # ------------------------------------------------------------- errors
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, e: ServiceError):
        headers = {"Retry-After": "1"} if e.kind == "in-flight" else None  # the first answer is moments away
        return problem(e.status, e.title, e.detail, e.kind, request.url.path, headers)

    @app.exception_handler(UnlearnkitError)
    async def _unlearnkit_error(request: Request, e: UnlearnkitError):
        return problem(422, "Unprocessable request", str(e), "invalid-request", request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {err.get('msg')}")
        return problem(422, "Invalid request", "; ".join(parts), "validation", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        titles = {
            400: "Bad request",
            404: "Not found",
            405: "Method not allowed",
            401: "Unauthorized",
            403: "Forbidden",
        }
        kind = {404: "not-found", 405: "method-not-allowed"}.get(e.status_code, "http-error")
        return problem(
            e.status_code, titles.get(e.status_code, "Error"), str(e.detail), kind, request.url.path, e.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.error(
            "unexpected error", extra={"event": "http.error", "path": request.url.path, "error": type(e).__name__}
        )
        return problem(500, "Internal error", "the service failed; see its log", "internal", request.url.path)

    @app.middleware("http")
    async def _limits_and_log(request: Request, call_next):
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return problem(400, "Bad request", "Content-Length is not a number", "bad-request", request.url.path)
            if int(length) > MAX_BODY_BYTES:
                return problem(
                    413, "Body too large", f"bodies are at most {MAX_BODY_BYTES} bytes", "too-large", request.url.path
                )
        elif request.method in ("POST", "PUT", "PATCH"):
            body = await request.body()  # chunked: read it (bounded by uvicorn's limits) and measure
            if len(body) > MAX_BODY_BYTES:
                return problem(
                    413, "Body too large", f"bodies are at most {MAX_BODY_BYTES} bytes", "too-large", request.url.path
                )
        response = await call_next(request)
        route = request.scope.get("route")
        log.info(
            "http",
            extra={
                "event": "http.request",
                "method": request.method,
                "route": getattr(route, "path", "?"),  # the template: ids are not logged twice, bodies never
                "status": response.status_code,
                "ms": round(1000 * (time.perf_counter() - started), 2),
            },
        )
        return response

    # ------------------------------------------------------------- auth
    def scoped(scope: str):
        def check(
            request: Request,
            authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
            x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
        ) -> ApiKey:
            token = x_api_key
            if authorization and authorization.lower().startswith("bearer "):
                token = authorization[7:].strip()
            key = service.authenticate(token)
            if key is None:
                raise ServiceError(
                    401, "Unauthorized", "give a valid API key (Authorization: Bearer uk_...)", "unauthorized"
                )
            if scope not in key.scopes:
                raise ServiceError(403, "Forbidden", f"this key lacks the scope {scope}", "forbidden")
            wait = buckets.take(key)
            if wait is not None:
                raise _RateLimited(wait)
            return key

        return check

    class _RateLimited(Exception):
        def __init__(self, wait: float):
            self.wait = wait

    @app.exception_handler(_RateLimited)
    async def _rate(request: Request, e: _RateLimited):
        return problem(
            429,
            "Too many requests",
            "this key's rate limit is exceeded; retry after the Retry-After seconds",
            "rate-limited",
            request.url.path,
            {"Retry-After": str(max(1, int(e.wait + 0.999)))},
        )

    Submit = Annotated[ApiKey, Depends(scoped("deletion:submit"))]
    Read = Annotated[ApiKey, Depends(scoped("deletion:read"))]
    Admin = Annotated[ApiKey, Depends(scoped("model:admin"))]
    LineName = Annotated[str, Path(min_length=1, max_length=64)]
    Cursor = Annotated[int | None, Query(ge=0, le=2**62, description="the previous page's `next`")]
    Limit = Annotated[int, Query(ge=1, le=500)]

    # ------------------------------------------------------------- health
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: ERRORS[409] | {"description": "not ready"}})
    def readyz():
        """The database answers."""
        try:
            service.ready()
        except Exception as e:  # noqa: BLE001
            return problem(
                503, "Not ready", f"the database does not answer ({type(e).__name__})", "not-ready", "/readyz"
            )
        return {"status": "ready"}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics: requests and batches by state, gate failures, batch latency."""
        from .observe import render

        text, content_type = render(service)
        return Response(text, media_type=content_type)

    @app.get("/v1/signing-key", tags=["audit"])
    def signing_key() -> SigningKeyOut:
        """The public key certificates and audit checkpoints are signed with."""
        return SigningKeyOut(key_id=service.key.key_id, public_key=service.public_key_pem())

    # ------------------------------------------------------------- model lines
    @app.post("/v1/model-lines", status_code=201, tags=["model lines"], responses=ERRORS)
    def register_line(body: LineIn, key: Admin) -> Line:
        """Register a `train` run's model as version 0 of a deployed model line."""
        return Line(**service.register_line(body.name, body.train_run, body.policy, actor=key.id))

    @app.get("/v1/model-lines", tags=["model lines"], responses=ERRORS)
    def list_lines(key: Read) -> list[Line]:
        return [Line(**x) for x in service.list_lines()]

    @app.get("/v1/model-lines/{name}", tags=["model lines"], responses=ERRORS)
    def get_line(name: LineName, key: Read) -> Line:
        return Line(**service.get_line(name))

    @app.get("/v1/model-lines/{name}/versions", tags=["model lines"], responses=ERRORS)
    def versions(name: LineName, key: Read) -> list[Version]:
        return [Version(**v) for v in service.versions(name)]

    @app.post("/v1/model-lines/{name}/rollback", tags=["model lines"], responses=ERRORS)
    def rollback(name: LineName, body: RollbackIn, key: Admin) -> Rollback:
        """Deploy an earlier version; the requests answered after it are answered again."""
        return Rollback(**service.rollback(name, body.to_version, actor=key.id))

    # ------------------------------------------------------------- deletion requests
    @app.post(
        "/v1/model-lines/{name}/deletion-requests",
        status_code=202,
        tags=["deletion requests"],
        responses={**ERRORS, 200: {"model": DeletionRequestOut, "description": "replayed (same Idempotency-Key)"}},
    )
    def submit(
        name: LineName,
        body: DeletionIn,
        key: Submit,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=256)] = None,
    ):
        """Submit a deletion request (subjects or example ids). ``Idempotency-Key``: the same
        key and body replay the first answer; another body is a 422; in flight, a 409."""
        out = service.submit(name, body.subjects, body.example_ids, key_id=key.id, idempotency_key=idempotency_key)
        return JSONResponse(
            DeletionRequestOut(**out.body).model_dump(exclude_none=False),
            status_code=out.status,
            headers={"Location": f"/v1/deletion-requests/{out.body['id']}"},
        )

    @app.get("/v1/deletion-requests", tags=["deletion requests"], responses=ERRORS)
    def list_requests(
        key: Read,
        line: Annotated[str | None, Query(max_length=64)] = None,
        state: Annotated[str | None, Query(pattern="^(" + "|".join(REQUEST_STATES) + ")$")] = None,
        after: Cursor = None,
        limit: Limit = 50,
    ) -> RequestPage:
        items, nxt = service.list_requests(line, state, after, limit)
        return RequestPage(items=[DeletionRequestOut(**i) for i in items], next=nxt)

    @app.get("/v1/deletion-requests/{request_id}", tags=["deletion requests"], responses=ERRORS)
    def get_request(request_id: Annotated[str, Path(max_length=64)], key: Read) -> DeletionRequestOut:
        return DeletionRequestOut(**service.get_request(request_id))

    @app.get("/v1/deletion-requests/{request_id}/certificate", tags=["deletion requests"], responses=ERRORS)
    def certificate(request_id: Annotated[str, Path(max_length=64)], key: Read) -> dict[str, Any]:
        """The signed certificate (``body`` and its Ed25519 ``signature``); verify it offline
        with ``unlearnkit audit verify --certificate FILE``."""
        return service.certificate(request_id)

    # ------------------------------------------------------------- batches
    @app.get("/v1/batches/{batch_id}", tags=["batches"], responses=ERRORS)
    def get_batch(batch_id: Annotated[str, Path(max_length=64)], key: Read) -> Batch:
        return Batch(**service.get_batch(batch_id))

    @app.post("/v1/batches/{batch_id}/decision", tags=["batches"], responses=ERRORS)
    def decide(batch_id: Annotated[str, Path(max_length=64)], body: DecisionIn, key: Admin) -> Batch:
        """Release or refuse a held batch (its deletion changes unrelated predictions more
        than the policy allows)."""
        out = service.decide(batch_id, body.decision, body.reason, actor=key.id)
        if notify is not None:
            notify(batch_id)
        return Batch(**out)

    # ------------------------------------------------------------- audit
    @app.get("/v1/audit", tags=["audit"], responses=ERRORS)
    def audit_log(key: Read, after: Cursor = None, limit: Limit = 100) -> AuditPage:
        items, nxt = service.audit_entries(after or 0, limit)
        return AuditPage(items=[AuditEntry(**i) for i in items], next=nxt)

    @app.get("/v1/audit/export", tags=["audit"], responses=ERRORS)
    def audit_export(key: Read) -> dict[str, Any]:
        """The whole log, its signed checkpoints and the public key, for ``unlearnkit audit verify``."""
        return service.export_audit()

    return app


def openapi_document(service: Service) -> str:
    """The app's OpenAPI document as stable, indented JSON (what ``docs/openapi.json`` holds)."""
    return json.dumps(create_app(service).openapi(), indent=2, sort_keys=True) + "\n"
