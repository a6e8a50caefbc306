"""The comparator's deletion-request views: what the service recorded, read without writing.

The deletion-request service (:mod:`unlearnkit.service`) keeps its tables in the
workspace's ``service.db`` (SQLite, beside ``runs.db``) or, when the workspace's runs live
in a database named by URL, in that same database (``Service.__init__``: ``store_url or
sqlite:///<home>/service.db``). These views find them there, open them read-only (an
SQLite file through a ``mode=ro`` URI: nothing is created, migrated or locked for writing)
and answer:

* :func:`has_service`: whether the service's tables are there;
* :func:`list_requests`: every request (newest :data:`MAX_REQUESTS`), in submission order;
* :func:`request_detail`: one request, its timeline from the audit log, the verification
  gate's checks against their thresholds, and its certificate with the Ed25519 signature
  checked against the service's public key (``service-keys/signing-key.pub``) by
  :func:`unlearnkit.service.crypto.verify_document`.

Subjects appear only as the service stores them: HMAC pseudonyms (raw subject ids never
reach the service's tables, so they never reach the page either). Every failure is a
:class:`~unlearnkit.ui.models.UIError`; every number in an answer is finite or None.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..orchestration.experiment import Workspace
from ..orchestration.store import _readonly_sqlite_url
from ..service import crypto
from ..service.db import audit_log, batches, certificates, deletion_requests, model_lines
from .cache import finite_json
from .models import UIError

#: the tables the views read; all of them must exist for the workspace to "have" the service
TABLES = ("model_lines", "deletion_requests", "batches", "certificates", "audit_log")
#: the list view shows at most this many requests (the newest)
MAX_REQUESTS = 5000
SERVICE_DB = "service.db"
PUBLIC_KEY = Path("service-keys") / "signing-key.pub"

#: audit actions as the timeline names them (the batch steps of ``Service``: close ─►
#: resolve ─► unlearn ─► verify ─► promote | escalate ─► verify_escalate ─► promote ─► certify)
EVENTS = {
    "request.received": "received",
    "batch.opened": "batch opened",
    "batch.closed": "batched",
    "batch.close": "batched",
    "batch.resolve": "resolved",
    "batch.unlearn": "unlearned",
    "batch.verify": "verified",
    "batch.escalate": "escalated",
    "batch.verify_escalate": "verified (exact)",
    "batch.hold": "held",
    "batch.decision": "decided",
    "batch.refuse": "refused",
    "batch.fail": "failed",
    "batch.abandoned": "abandoned",
    "batch.promote": "promoted",
    "batch.certify": "certified",
    "certificate.issued": "certificate issued",
}


# --------------------------------------------------------------------------- helpers


def _default_store(ws: Workspace) -> bool:
    """Whether the workspace's runs are in its own ``runs.db`` (then the service's tables
    are in ``service.db`` beside it)."""
    path = getattr(ws.store, "sqlite_path", None)
    if path is None:
        return False
    try:
        return Path(path).resolve() == (Path(ws.root) / "runs.db").resolve()
    except OSError:
        return False


def _sqlite_reader(path: Path) -> Engine:
    engine = create_engine(_readonly_sqlite_url(path), connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def _has_tables(engine: Engine) -> bool:
    try:
        insp = inspect(engine)
        return all(insp.has_table(t) for t in TABLES)
    except SQLAlchemyError:
        return False


@contextlib.contextmanager
def _database(ws: Workspace) -> Iterator[Engine | None]:
    """The engine of the database holding the service's tables (None when there is none):
    ``<home>/service.db`` next to a workspace's own ``runs.db``, else the run store's own
    database; opened for reading only."""
    if _default_store(ws):
        path = Path(ws.root) / SERVICE_DB
        if path.is_file():
            engine = _sqlite_reader(path)
            try:
                if _has_tables(engine):
                    yield engine
                    return
            finally:
                engine.dispose()
    engine = ws.store.engine  # the service shares a database named by URL
    yield engine if _has_tables(engine) else None


@contextlib.contextmanager
def _connect(ws: Workspace) -> Iterator[Connection]:
    with _database(ws) as engine:
        if engine is None:
            raise UIError(
                404,
                "this workspace has no deletion-request service tables (start `unlearnkit serve` to create them)",
                "no-service",
            )
        try:
            with engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise UIError(500, f"the service's database cannot be read: {type(e).__name__}", "store") from None


def has_service(ws: Workspace) -> bool:
    """Whether the deletion-request service's tables exist in this workspace's database
    (read-only: nothing is created)."""
    with _database(ws) as engine:
        return engine is not None


def _row(r, line: str) -> dict:
    return {
        "id": r.id,
        "line": line,
        "state": r.state,
        "received_at": r.created_at,
        "updated_at": r.updated_at,
        "batch": r.batch_id,
        "version": r.version,
        "n_examples": int(r.n_resolved),
        "n_subjects": len(r.subjects or []),
        "reason": r.reason,
    }


def _runs_of(steps: Any) -> dict:
    """The runs a batch's steps name: ``unlearn_run`` (the policy's method), ``escalate_run``
    (the exact path, after a failed gate), ``run`` (the one that answers: the escalation's
    when there is one, else the unlearn run; None before the batch unlearned or when its
    method failed) and ``runs`` (every one, in order)."""
    steps = steps if isinstance(steps, dict) else {}
    ids = {}
    for name in ("unlearn", "escalate"):
        step = steps.get(name)
        rid = step.get("run_id") if isinstance(step, dict) else None
        ids[name] = rid if isinstance(rid, str) and rid else None
    return {
        "unlearn_run": ids["unlearn"],
        "escalate_run": ids["escalate"],
        "run": ids["escalate"] or ids["unlearn"],
        "runs": [r for r in (ids["unlearn"], ids["escalate"]) if r],
    }


def _line_names(conn: Connection) -> dict[str, str]:
    return {r.id: r.name for r in conn.execute(select(model_lines.c.id, model_lines.c.name))}


# --------------------------------------------------------------------------- the list
def list_requests(ws: Workspace) -> dict:
    """``{"requests": [{id, line, state, received_at, updated_at, batch, version, n_examples,
    n_subjects, reason, certificate, unlearn_run, escalate_run, run, runs}], "truncated":
    bool}`` in submission order (the newest :data:`MAX_REQUESTS`); the run ids are those of
    the request's batch (:func:`_runs_of`); 404 ``no-service`` without the service's tables."""
    with _connect(ws) as conn:
        names = _line_names(conn)
        rows = conn.execute(
            select(deletion_requests).order_by(deletion_requests.c.seq.desc()).limit(MAX_REQUESTS + 1)
        ).all()
        certified = {
            r.request_id: r.id
            for r in conn.execute(
                select(certificates.c.request_id, certificates.c.id).where(certificates.c.revoked_at.is_(None))
            )
        }
        wanted = sorted({r.batch_id for r in rows[:MAX_REQUESTS] if r.batch_id})
        steps: dict = {}
        for i in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[i : i + 500]
            steps.update(
                {
                    b.id: b.steps
                    for b in conn.execute(select(batches.c.id, batches.c.steps).where(batches.c.id.in_(chunk)))
                }
            )
    truncated = len(rows) > MAX_REQUESTS
    out = []
    for r in reversed(rows[:MAX_REQUESTS]):
        item = _row(r, names.get(r.line_id, r.line_id))
        item["certificate"] = certified.get(r.id)
        item.update(_runs_of(steps.get(r.batch_id)))
        out.append(item)
    return finite_json({"requests": out, "truncated": truncated})


# --------------------------------------------------------------------------- one request
def _event(action: str, payload: Any) -> str:
    name = EVENTS.get(action, action.replace(".", " "))
    p = payload if isinstance(payload, dict) else {}
    if action in ("batch.verify", "batch.verify_escalate") and p.get("passed") is False:
        return "gate failed" + (" (exact)" if action == "batch.verify_escalate" else "")
    if action in ("batch.unlearn", "batch.escalate") and p.get("error"):
        return "unlearning failed" if action == "batch.unlearn" else "escalation failed"
    if action == "batch.promote" and p.get("superseded"):
        return "superseded"
    return name


def _detail(action: str, payload: Any) -> str | None:
    """A short line about an entry (never ids of examples or subjects)."""
    p = payload if isinstance(payload, dict) else {}
    if action in ("batch.unlearn", "batch.escalate"):
        return f"{p.get('method')}: {p['error']}" if p.get("error") else p.get("method")
    if action == "batch.promote":
        return p.get("reason") if p.get("superseded") else (f"version {p['version']}" if "version" in p else None)
    if action in ("batch.verify", "batch.verify_escalate") and isinstance(p.get("checks"), list):
        n, ok = len(p["checks"]), sum(1 for c in p["checks"] if isinstance(c, dict) and c.get("passed"))
        return f"{ok}/{n} checks passed"
    if action == "batch.resolve" and "forget_count" in p:
        return f"{p['forget_count']} examples to forget"
    return None


def _timeline(conn: Connection, req_id: str, batch_id: str | None) -> list[dict]:
    """Audit entries of the request and of the batch answering it (the service's own
    ``Service._timeline``), with readable event names."""
    ids = [req_id] + ([batch_id] if batch_id else [])
    rows = conn.execute(select(audit_log).where(audit_log.c.entity_id.in_(ids)).order_by(audit_log.c.seq))
    return [
        {
            "at": r.at,
            "event": _event(r.action, r.payload),
            "action": r.action,
            "actor": r.actor,
            "seq": int(r.seq),
            "detail": _detail(r.action, r.payload),
        }
        for r in rows
    ]


def _attempt(name: str, candidate: dict | None, verify: dict) -> dict:
    cand = candidate or {}
    return {
        "candidate": name,
        "method": cand.get("method"),
        "run_id": cand.get("run_id"),
        "error": verify.get("error") or cand.get("error"),
        "passed": bool(verify.get("passed")),
        "hold": bool(verify.get("hold")),
        "checks": list(verify.get("checks") or []),
        "canary": list(verify.get("canary") or []),
        "deletion_effect": list(verify.get("deletion_effect") or []),
        "reference_artifact": verify.get("reference_artifact"),
    }


def _gate(steps: dict) -> dict | None:
    """The verification gate of a batch: the checks of the candidate that answered (the
    exact path's after an escalation) and every attempt; None before the batch is verified."""
    if not isinstance(steps, dict) or "verify" not in steps:
        return None
    attempts = [_attempt("unlearn", steps.get("unlearn"), steps["verify"])]
    if "verify_escalate" in steps:
        attempts.append(_attempt("escalate", steps.get("escalate"), steps["verify_escalate"]))
    final = attempts[-1]
    return {
        "passed": final["passed"],
        "escalated": "escalate" in steps,
        "candidate": final["candidate"],
        "method": final["method"],
        "checks": final["checks"],
        "canary": final["canary"],
        "deletion_effect": final["deletion_effect"],
        "hold": final["hold"],
        "error": final["error"],
        "attempts": attempts,
    }


def public_key(ws: Workspace) -> str | None:
    """The service's public key (PEM) the certificates are checked against, or None."""
    try:
        return (Path(ws.root) / PUBLIC_KEY).read_text()
    except OSError:
        return None


def verify_certificate(document: Any, request_id: str, public_key_pem: str | None) -> tuple[bool, str | None]:
    """``(verified, why not)``: the Ed25519 signature over the canonical body checks out with
    the service's key and the body is this request's certificate."""
    if public_key_pem is None:
        return False, f"the service's public key ({PUBLIC_KEY}) is not in this workspace"
    problems = crypto.verify_document(document, public_key_pem)
    if problems:
        return False, "; ".join(problems)
    body = document["body"]
    if body.get("request_id") != request_id:
        return False, f"the certificate is signed for request {body.get('request_id')!r}, not {request_id!r}"
    return True, None


def _certificate(conn: Connection, ws: Workspace, req_id: str) -> dict | None:
    rows = conn.execute(
        select(certificates).where(certificates.c.request_id == req_id).order_by(certificates.c.created_at.desc())
    ).all()
    if not rows:
        return None
    row = next((r for r in rows if r.revoked_at is None), rows[0])  # the valid one, else the newest revoked
    verified, why = verify_certificate(row.document, req_id, public_key(ws))
    return {
        "id": row.id,
        "batch": row.batch_id,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
        "document": row.document,
        "verified": verified,
        "why": why,
    }


def request_detail(ws: Workspace, request_id: str) -> dict:
    """``{"request": {...}, "batch": {...} | None, "timeline": [{at, event, action, actor, seq,
    detail}], "gate": {passed, escalated, checks: [{metric, bound, threshold, value, passed,
    reference?, why?}], canary, deletion_effect, attempts, ...} | None, "certificate": {id,
    document, verified, why, revoked_at, ...} | None}``; 404 for an unknown request."""
    request_id = (request_id or "").strip()
    with _connect(ws) as conn:
        r = conn.execute(select(deletion_requests).where(deletion_requests.c.id == request_id)).first()
        if r is None:
            raise UIError(
                404,
                f"no deletion request {request_id!r} in this workspace; the requests list shows them",
                "unknown-request",
            )
        line = conn.execute(select(model_lines).where(model_lines.c.id == r.line_id)).first()
        b = conn.execute(select(batches).where(batches.c.id == r.batch_id)).first() if r.batch_id else None
        request = _row(r, line.name if line else r.line_id)
        request.update(
            subjects=list(r.subjects or []),  # pseudonyms, as the service stores them
            n_named_examples=len(r.example_ids or []),
            modality=line.modality if line else None,
        )
        steps = dict(b.steps or {}) if b is not None else {}
        batch = None
        if b is not None:
            cand = steps.get("escalate") or steps.get("unlearn") or {}
            batch = {
                "id": b.id,
                "state": b.state,
                "opened_at": b.opened_at,
                "closed_at": b.closed_at,
                "finished_at": b.finished_at,
                "n_requests": len(b.request_ids or []),
                "steps": list(steps),
                "method": cand.get("method"),
                "run_id": cand.get("run_id"),
                "unlearn_run": _runs_of(steps)["unlearn_run"],
                "escalate_run": _runs_of(steps)["escalate_run"],
                "base_version": (steps.get("resolve") or {}).get("base_version"),
                "reason": b.reason,
            }
        out = {
            "request": request,
            "batch": batch,
            "timeline": _timeline(conn, r.id, r.batch_id),
            "gate": _gate(steps),
            "certificate": _certificate(conn, ws, r.id),
        }
    return finite_json(out)


__all__ = ["has_service", "list_requests", "request_detail", "verify_certificate", "public_key"]
