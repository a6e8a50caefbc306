"""The service's operations: model lines, deletion requests, batches and their steps,
certificates, rollback, API keys.

Everything the HTTP surface (:mod:`unlearnkit.service.app`), the CLI and the durable
workflow (:mod:`unlearnkit.service.workflows`) do goes through :class:`Service`. Every
state change commits in one transaction with the audit entry that records it. A batch's
steps are::

    close ─► resolve ─► unlearn ─► verify ─┬─► promote ─► certify
                                           ├─► (gate failed) escalate (exact retrain) ─► promote ─► certify
                                           ├─► (gate failed, on_failure: reject) fail
                                           └─► (deletion damages unrelated data) hold ─► release | refuse

Each step records its output in ``batches.steps`` and returns that record when run again,
so a step repeated after a crash (DBOS runs an unfinished step again) changes nothing:
the unlearn step's run id is derived from the batch, promotion is a compare-and-swap on
the line's ``current_version``, certificates are written once per request and batch.

Deletions are cumulative: a batch starts from the line's current version, and every
example any request ever named on the line (``tombstones``) leaves the batch's task, its
reference and its verification, except the batch's own, which form its forget set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import ConfigError, UnknownIdsError, UnlearnkitError
from ..methods import get_method
from ..modalities import modality_of_spec
from . import audit, crypto
from .db import (
    api_keys,
    batches,
    certificates,
    deletion_requests,
    idempotency_keys,
    make_engine,
    migrate,
    model_lines,
    model_versions,
    tombstones,
)
from .policy import Policy, line_policy, modality_hook

log = logging.getLogger("unlearnkit.service")

SCOPES = ("deletion:submit", "deletion:read", "model:admin")
#: request states; the terminal ones never change again (but a rollback re-opens answered requests)
REQUEST_STATES = ("queued", "processing", "held", "answered", "failed", "refused")
LINE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
IN_FLIGHT_SECONDS = 120.0  # an idempotency key left in flight longer than this (a crash) may be taken over


class ServiceError(UnlearnkitError):
    """An error the HTTP surface answers as RFC 9457 problem+json with ``status``."""

    def __init__(self, status: int, title: str, detail: str, kind: str | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.kind = kind or title.lower().replace(" ", "-")


def not_found(what: str, detail: str) -> ServiceError:
    return ServiceError(404, f"{what} not found", detail, f"unknown-{what.replace(' ', '-')}")


def unprocessable(detail: str, kind: str = "invalid-request") -> ServiceError:
    return ServiceError(422, "Unprocessable request", detail, kind)


def conflict(detail: str, kind: str = "conflict") -> ServiceError:
    return ServiceError(409, "Conflict", detail, kind)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def body_hash(obj: Any) -> str:
    return crypto.sha256_hex(crypto.canonical_json(obj))


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON null), recursively.

    A step's output holds numbers a method or metric could not compute as NaN (the
    ``final_loss`` of a method that takes no optimiser step: CRAGRU, ``utu``, ``gif``; a
    metric undefined for the request). RFC 8785 has no form for them, and PostgreSQL's JSON
    refuses them, so they are recorded as null *before* they are stored, hashed or signed:
    what the audit log hashes is what the database holds, and finite content canonicalises
    exactly as before (certificates issued earlier verify unchanged)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.floating):
        return finite_json(float(obj))
    return obj


@dataclass
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_minute: int


@dataclass
class Submitted:
    """The answer to a submission: ``status`` (202 new, 200 replayed) and the body."""

    status: int
    body: dict
    replayed: bool = False


class Service:
    """The deletion-request service over a workspace.

    ``home``: the workspace (runs, artifacts, cache) and, by default, the service's SQLite
    database ``service.db`` and its keys (``service-keys/``). ``store_url``: a database URL
    for runs, service tables and DBOS's system tables alike (PostgreSQL to scale out).
    ``policy``: the service-wide policy (a policy file's mapping). ``enqueue``: how a new
    batch's workflow is started, inside the submitting transaction (set by
    :mod:`unlearnkit.service.workflows`).
    """

    def __init__(
        self,
        home: str | Path,
        store_url: str | None = None,
        policy: dict | None = None,
        keys_dir: str | Path | None = None,
        enqueue: Callable[[Connection, str, str, float], None] | None = None,
        read_only: bool = False,
    ):
        from ..orchestration.experiment import Workspace

        self.home = Path(home)
        self.workspace = Workspace.open(self.home, store_url, mode="existing" if read_only else "rw")
        self.url = store_url or f"sqlite:///{(self.home / 'service.db').resolve()}"
        self.engine = make_engine(self.url)  # writes: serialised transactions
        self.reader = make_engine(self.url, immediate=False) if self.engine.dialect.name == "sqlite" else self.engine
        if not read_only:
            try:
                migrate(self.engine)
            except Exception as e:  # noqa: BLE001 - any driver error: one line
                raise ConfigError(f"cannot prepare the service database {self.safe_url}: {e}") from None
        keys = Path(keys_dir) if keys_dir else self.home / "service-keys"
        if not read_only:
            keys.mkdir(parents=True, exist_ok=True)
        self.keys_dir = keys
        self.key = crypto.SigningKey.load_or_create(keys / "signing-key.pem") if not read_only else None
        if self.key is not None and not (keys / "signing-key.pub").exists():
            from ..utils import atomic_path

            with atomic_path(keys / "signing-key.pub") as tmp:  # what an auditor reads
                Path(tmp).write_text(self.key.public_key_pem())
        self.pseudonymizer = crypto.Pseudonymizer.load_or_create(keys / "pseudonym.key") if not read_only else None
        self.policy = dict(policy or {})
        self.enqueue = enqueue
        self._tasks: dict[str, Any] = {}

    @property
    def safe_url(self) -> str:
        """The database URL with any password hidden."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _tx(self):
        """A write transaction that first takes the service's write lock (PostgreSQL's
        advisory lock; SQLite's ``BEGIN IMMEDIATE`` is one already): every writer then
        takes its locks in one order, so writers never deadlock, and "first writer wins"
        checks read what the last writer committed."""
        with self.engine.begin() as conn:
            audit._lock(conn)
            yield conn

    def _line_row(self, conn: Connection, name: str) -> dict:
        row = conn.execute(select(model_lines).where(model_lines.c.name == name)).first()
        if row is None:
            raise not_found("model line", f"no model line named {name!r}; GET /v1/model-lines lists them")
        return dict(row._mapping)

    def _line_by_id(self, conn: Connection, line_id: str) -> dict:
        return dict(conn.execute(select(model_lines).where(model_lines.c.id == line_id)).one()._mapping)

    def _policy(self, line: dict) -> Policy:
        from .policy import parse_policy

        return parse_policy(line["policy"], line["modality"])

    def _task(self, train_run: str):
        """The train run's task (cached per process): its training data resolves subjects.
        A modality with its own flow builds it with its ``line_task`` hook (a federation's,
        from its stored rounds)."""
        from ..orchestration.experiment import task_of_run

        if train_run not in self._tasks:
            run = self.workspace.store.get(train_run)
            own = _task_hook(modality_of_spec(run.task_spec).name, "line_task")
            self._tasks[train_run] = own(self.workspace, run) if own else task_of_run(self.workspace, run)
        return self._tasks[train_run]

    def _batch(self, conn: Connection, batch_id: str) -> dict:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        if row is None:
            raise not_found("batch", f"no batch {batch_id!r}")
        return dict(row._mapping)

    def _set_requests(self, conn: Connection, ids: list[str], **values) -> None:
        if ids:
            conn.execute(
                update(deletion_requests).where(deletion_requests.c.id.in_(ids)).values(updated_at=_now(), **values)
            )

    def _new_batch(self, conn: Connection, line: dict, request_ids: list[str], state: str = "open") -> str:
        batch_id = _new_id("bat")
        at = _now()
        conn.execute(
            insert(batches).values(
                id=batch_id,
                line_id=line["id"],
                state=state,
                opened_at=at,
                closed_at=at if state == "closed" else None,
                request_ids=list(request_ids),
                steps={},
            )
        )
        if self.enqueue is None:
            raise ConfigError("this service has no worker queue to start batches on")
        delay = 0.0 if state == "closed" else self._policy(line).window_seconds
        self.enqueue(conn, batch_id, line["id"], delay)
        audit.append(conn, "service", "batch.opened", "batch", batch_id, {"line": line["name"], "state": state})
        return batch_id

    # ------------------------------------------------------------------ model lines
    def register_line(self, name: str, train_run: str, policy: dict | None = None, actor: str = "admin") -> dict:
        """Register ``train_run``'s model as the deployed version 0 of line ``name``."""
        if not isinstance(name, str) or not LINE_NAME.match(name):
            raise unprocessable("a line name is 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
        try:
            run = self.workspace.store.get(train_run)
        except UnlearnkitError:
            raise not_found("run", f"no run {train_run!r} in the workspace; `unlearnkit runs` lists them") from None
        if run.kind != "train" or run.status != "ok" or not run.artifact:
            raise unprocessable(f"run {run.id} is not a finished train run with a model")
        modality = modality_of_spec(run.task_spec)
        if not modality.supports("service"):
            raise unprocessable(
                f"the service does not serve {modality.name} model lines (the modality lacks the 'service' "
                "capability); `unlearnkit unlearn` answers single requests for them",
                "modality-not-served",
            )
        try:
            pol = line_policy(modality, self.policy, policy, run.task_spec)
            self.workspace.artifacts.load_state_dict(run.artifact)  # present and hash-verified
            task = self._task(run.id)
        except UnlearnkitError as e:
            raise unprocessable(str(e), "invalid-policy" if isinstance(e, ConfigError) else "bad-run") from None
        artifact, state, note = run.artifact, None, "registered"
        if pol.sharding:  # a sharded line deploys a SISA ensemble, trained here once
            artifact, state, note = self._train_sharded(task, pol)
        test_ids = [str(i) for i in task.split.test.example_ids]
        rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
        size = min(pol.canary_size, len(test_ids))
        canary = sorted(rng.choice(test_ids, size=size, replace=False).tolist()) if size else []
        line_id = _new_id("line")
        at = _now()
        try:
            with self._tx() as conn:
                conn.execute(
                    insert(model_lines).values(
                        id=line_id,
                        name=name,
                        train_run=run.id,
                        modality=modality.name,
                        created_at=at,
                        current_version=0,
                        policy=pol.to_dict(),
                        canary_ids=canary,
                    )
                )
                conn.execute(
                    insert(model_versions).values(
                        line_id=line_id,
                        version=0,
                        artifact=artifact,
                        run_id=run.id,
                        created_at=at,
                        status="deployed",
                        note=note,
                        training_state=state,
                    )
                )
                audit.append(
                    conn,
                    actor,
                    "line.registered",
                    "line",
                    line_id,
                    {"name": name, "train_run": run.id, "artifact": artifact, "policy_hash": body_hash(pol.raw)},
                )
        except IntegrityError:
            raise conflict(f"a model line named {name!r} exists already", "line-exists") from None
        log.info("line registered", extra={"event": "line.registered", "line": name})
        return self.get_line(name)

    def _train_sharded(self, task, pol: Policy) -> tuple[str, dict, str]:
        """SISA training of the train run's data for a sharded line's version 0: the
        ensemble's artifact, its training state (checkpoints) and the version's note."""
        from ..engines.sharded import train_sisa
        from ..orchestration.training_state import export_training_state

        sh = pol.sharding
        try:
            ens = train_sisa(
                task.split.train,
                task.model_factory,
                task.adapter,
                task.recipe,
                sh["shards"],
                sh["slices"],
                pol.seed,
                sh["aggregation"],
                task.device,
                assign=sh["by"],
            )
            artifact = self.workspace.artifacts.save(ens)
            state = export_training_state(ens, self.workspace.artifacts)
        except UnlearnkitError as e:
            raise unprocessable(str(e), "invalid-policy") from None
        cost = ens.state.preparation_cost
        note = (
            f"registered: SISA ensemble of {sh['shards']} shards x {sh['slices']} slices trained "
            f"({cost.examples_backward} examples forward/backward, {cost.wall_time_s:.1f} s)"
        )
        return artifact, state, note

    def get_line(self, name: str) -> dict:
        with self.reader.connect() as conn:
            line = self._line_row(conn, name)
            cur = conn.execute(
                select(model_versions).where(
                    model_versions.c.line_id == line["id"], model_versions.c.version == line["current_version"]
                )
            ).one()
            n_deleted = conn.execute(
                select(func.count()).select_from(tombstones).where(tombstones.c.line_id == line["id"])
            ).scalar_one()
        return {
            "name": line["name"],
            "id": line["id"],
            "train_run": line["train_run"],
            "modality": line["modality"],
            "created_at": line["created_at"],
            "current_version": line["current_version"],
            "current_artifact": cur.artifact,
            "deleted_examples": int(n_deleted),
            "policy": line["policy"],
            "canary_size": len(line["canary_ids"]),
        }

    def list_lines(self) -> list[dict]:
        with self.reader.connect() as conn:
            names = [r.name for r in conn.execute(select(model_lines.c.name).order_by(model_lines.c.name))]
        return [self.get_line(n) for n in names]

    def versions(self, name: str) -> list[dict]:
        with self.reader.connect() as conn:
            line = self._line_row(conn, name)
            rows = conn.execute(
                select(model_versions).where(model_versions.c.line_id == line["id"]).order_by(model_versions.c.version)
            )
            return [_version_view(r._mapping) for r in rows]

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        line_name: str,
        subjects: list[str] | None = None,
        example_ids: list[str] | None = None,
        key_id: str = "cli",
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Accept a deletion request for ``subjects`` (resolved through the training data,
        hierarchies expanded) or ``example_ids``; it joins the line's open batch.

        With ``idempotency_key``: the same key and body replay the first answer (200); the
        same key with another body is a 422; a key whose first request is still being
        answered is a 409. Bad input (an unknown line, subject or id, an empty request, one
        that would delete everything) is a :class:`ServiceError` and writes nothing.
        """
        subjects = [str(s) for s in subjects or []]
        example_ids = [str(i) for i in example_ids or []]
        digest = body_hash({"line": line_name, "subjects": subjects, "example_ids": example_ids})
        if idempotency_key is not None:
            replay = self._idempotency_begin(key_id, idempotency_key, digest)
            if replay is not None:
                return replay
        try:
            out = self._submit(line_name, subjects, example_ids, key_id, idempotency_key)
        except BaseException:
            if idempotency_key is not None:  # nothing written: the key is free again
                with self._tx() as conn:
                    conn.execute(
                        idempotency_keys.delete().where(
                            idempotency_keys.c.key_id == key_id, idempotency_keys.c.key == idempotency_key
                        )
                    )
            raise
        return out

    def _idempotency_begin(self, key_id: str, key: str, digest: str) -> Submitted | None:
        with self._tx() as conn:
            row = conn.execute(
                select(idempotency_keys).where(idempotency_keys.c.key_id == key_id, idempotency_keys.c.key == key)
            ).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(idempotency_keys).values(
                                key_id=key_id, key=key, body_hash=digest, state="in_flight", created_at=_now()
                            )
                        )
                    return None
                except IntegrityError:  # another submission took the key first (PostgreSQL)
                    row = conn.execute(
                        select(idempotency_keys).where(
                            idempotency_keys.c.key_id == key_id, idempotency_keys.c.key == key
                        )
                    ).one()
            if row.body_hash != digest:
                raise unprocessable(
                    "this Idempotency-Key was used with another request body; use a new key", "idempotency-key-reused"
                )
            if row.state == "done":
                return Submitted(200, dict(row.response), replayed=True)
            age = (datetime.now(timezone.utc) - datetime.fromisoformat(row.created_at)).total_seconds()
            if age < IN_FLIGHT_SECONDS:
                raise conflict(
                    "a request with this Idempotency-Key is still being answered; retry in a second", "in-flight"
                )
            conn.execute(  # abandoned by a crashed process: take it over
                update(idempotency_keys)
                .where(idempotency_keys.c.key_id == key_id, idempotency_keys.c.key == key)
                .values(created_at=_now())
            )
            return None

    def _resolve(self, line: dict, subjects: list[str], example_ids: list[str]) -> list[str]:
        if bool(subjects) == bool(example_ids):
            raise unprocessable("give either subjects or example_ids, non-empty", "empty-request")
        train = self._task(line["train_run"]).split.train
        # a modality whose ids take others along (a graph node its edges) resolves them itself
        expand = _task_hook(line["modality"], "resolve_request_ids")
        try:
            if subjects:
                ids = train.ids_of_subjects(subjects)
            else:
                ids = expand(train, example_ids) if expand else train.select(example_ids).example_ids
        except UnknownIdsError as e:
            # never echo raw subject ids (they are personal data): count them only
            what = "subject id(s)" if subjects else "example id(s)"
            n = str(e).split(" ", 1)[0]
            why = getattr(e, "reasons", None) if not subjects else None  # counted by reason, no id named
            reason = f" ({why})" if why else ""
            raise unprocessable(
                f"{n} {what} of this request are not in the training data of line {line['name']!r}{reason}",
                "unknown-subject" if subjects else "unknown-example",
            ) from None
        return sorted({str(i) for i in ids})

    def _submit(self, line_name, subjects, example_ids, key_id, idempotency_key) -> Submitted:
        with self.reader.connect() as conn:
            line = self._line_row(conn, line_name)
        resolved = self._resolve(line, subjects, example_ids)
        pol = self._policy(line)
        n_train = len(self._task(line["train_run"]).split.train)
        pseudonyms = sorted({self.pseudonymizer.pseudonym(s) for s in subjects})
        closed = None
        with self._tx() as conn:
            deleted = {
                r.example_id
                for r in conn.execute(select(tombstones.c.example_id).where(tombstones.c.line_id == line["id"]))
            }
            new = [i for i in resolved if i not in deleted]
            if not new:
                raise unprocessable("every example of this request was deleted before", "already-deleted")
            if len(deleted) + len(new) >= n_train:
                raise unprocessable(
                    "this request would delete every remaining example of the training data", "deletes-everything"
                )
            check = _task_hook(line["modality"], "check_deletion")
            check_line = _task_hook(line["modality"], "check_line_deletion")
            if check is not None or check_line is not None:  # a graph keeps an edge, a federation a client
                try:
                    if check is not None:
                        check(self._task(line["train_run"]).split.train, sorted(deleted | set(new)))
                    if check_line is not None:
                        check_line(self._task(line["train_run"]), sorted(deleted | set(new)))
                except UnlearnkitError as e:
                    raise unprocessable(
                        f"this request cannot be answered with the line's deletions before it: {e}",
                        "deletes-everything",
                    ) from None
            if len(new) > pol.max_fraction_per_request * n_train:
                raise unprocessable(
                    f"this request deletes {len(new)} of {n_train} training examples, more than the policy's "
                    f"{pol.max_fraction_per_request:.0%} per request",
                    "request-too-large",
                )
            seq = int(conn.execute(select(func.coalesce(func.max(deletion_requests.c.seq), 0))).scalar_one()) + 1
            req_id = _new_id("req")
            at = _now()
            open_batch = conn.execute(
                select(batches)
                .where(batches.c.line_id == line["id"], batches.c.state == "open")
                .order_by(batches.c.opened_at)
                .limit(1)
            ).first()
            conn.execute(
                insert(deletion_requests).values(
                    id=req_id,
                    seq=seq,
                    line_id=line["id"],
                    state="queued",
                    created_at=at,
                    updated_at=at,
                    subjects=pseudonyms,
                    example_ids=example_ids,
                    resolved_ids=new,
                    n_resolved=len(new),
                    key_id=key_id,
                )
            )
            conn.execute(
                insert(tombstones),
                [{"line_id": line["id"], "example_id": i, "request_id": req_id, "created_at": at} for i in new],
            )
            if open_batch is None:
                state = "closed" if pol.max_batch <= 1 else "open"
                batch_id = self._new_batch(conn, line, [req_id], state)
                if state == "closed":
                    closed = batch_id
            else:
                batch_id = open_batch.id
                members = list(open_batch.request_ids) + [req_id]
                values = {"request_ids": members}
                if len(members) >= pol.max_batch:
                    values.update(state="closed", closed_at=at)
                    closed = batch_id
                conn.execute(update(batches).where(batches.c.id == batch_id).values(**values))
            conn.execute(update(deletion_requests).where(deletion_requests.c.id == req_id).values(batch_id=batch_id))
            audit.append(
                conn,
                key_id,
                "request.received",
                "request",
                req_id,
                {
                    "line": line["name"],
                    "subjects": pseudonyms,
                    "examples": len(new),
                    "examples_root": crypto.merkle_root(new),
                    "batch": batch_id,
                },
            )
            if closed:
                audit.append(conn, "service", "batch.closed", "batch", closed, {"reason": "full"})
            body = self._request_view(conn, req_id)
            if idempotency_key is not None:
                conn.execute(
                    update(idempotency_keys)
                    .where(idempotency_keys.c.key_id == key_id, idempotency_keys.c.key == idempotency_key)
                    .values(state="done", status_code=202, response=body)
                )
        log.info("request received", extra={"event": "request.received", "request": req_id, "batch": batch_id})
        return Submitted(202, body)

    def _request_view(self, conn: Connection, req_id: str) -> dict:
        r = conn.execute(select(deletion_requests).where(deletion_requests.c.id == req_id)).first()
        if r is None:
            raise not_found("deletion request", f"no deletion request {req_id!r}")
        line = self._line_by_id(conn, r.line_id)
        cert = conn.execute(
            select(certificates.c.id)
            .where(certificates.c.request_id == req_id, certificates.c.revoked_at.is_(None))
            .limit(1)
        ).first()
        return {
            "id": r.id,
            "line": line["name"],
            "state": r.state,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "subjects": list(r.subjects),
            "examples": r.n_resolved,
            "batch": r.batch_id,
            "version": r.version,
            "reason": r.reason,
            "certificate": cert.id if cert else None,
        }

    def get_request(self, req_id: str, timeline: bool = True) -> dict:
        with self.reader.connect() as conn:
            out = self._request_view(conn, req_id)
            if timeline:
                out["timeline"] = self._timeline(conn, req_id, out["batch"])
        return out

    def _timeline(self, conn: Connection, req_id: str, batch_id: str | None) -> list[dict]:
        ids = [req_id] + ([batch_id] if batch_id else [])
        from .db import audit_log

        rows = conn.execute(select(audit_log).where(audit_log.c.entity_id.in_(ids)).order_by(audit_log.c.seq))
        return [{"at": r.at, "event": r.action, "seq": r.seq} for r in rows]

    def list_requests(
        self, line: str | None = None, state: str | None = None, after: int | None = None, limit: int = 50
    ) -> tuple[list[dict], int | None]:
        """Requests in submission order after the cursor ``after`` (keyset pagination);
        returns ``(items, next_cursor)``."""
        if state is not None and state not in REQUEST_STATES:
            raise unprocessable(f"state must be one of {', '.join(REQUEST_STATES)}")
        with self.reader.connect() as conn:
            q = select(deletion_requests.c.id, deletion_requests.c.seq).order_by(deletion_requests.c.seq)
            if line is not None:
                q = q.where(deletion_requests.c.line_id == self._line_row(conn, line)["id"])
            if state is not None:
                q = q.where(deletion_requests.c.state == state)
            if after is not None:
                q = q.where(deletion_requests.c.seq > after)
            rows = conn.execute(q.limit(limit + 1)).all()
            items = [self._request_view(conn, r.id) for r in rows[:limit]]
        return items, (rows[limit - 1].seq if len(rows) > limit else None)

    def certificate(self, req_id: str) -> dict:
        with self.reader.connect() as conn:
            self._request_view(conn, req_id)
            row = conn.execute(
                select(certificates)
                .where(certificates.c.request_id == req_id, certificates.c.revoked_at.is_(None))
                .limit(1)
            ).first()
        if row is None:
            raise not_found("certificate", f"request {req_id} has no certificate yet (it is answered first)")
        return dict(row.document)

    def get_batch(self, batch_id: str) -> dict:
        with self.reader.connect() as conn:
            b = self._batch(conn, batch_id)
            line = self._line_by_id(conn, b["line_id"])
        steps = {k: _summary(k, v) for k, v in (b["steps"] or {}).items()}
        return {
            "id": b["id"],
            "line": line["name"],
            "state": b["state"],
            "opened_at": b["opened_at"],
            "closed_at": b["closed_at"],
            "finished_at": b["finished_at"],
            "requests": list(b["request_ids"]),
            "steps": steps,
            "reason": b["reason"],
        }

    # ------------------------------------------------------------------ batch steps
    def _record_step(self, batch_id: str, name: str, out: dict, state: str | None = None, extra=None) -> dict:
        """Store step ``name``'s output (first writer wins) with its audit entry; ``extra``
        (``conn, batch -> None``) makes the step's own writes in the same transaction."""
        with self._tx() as conn:
            b = self._batch(conn, batch_id)
            if name in (b["steps"] or {}):
                return b["steps"][name]
            if extra is not None:
                extra(conn, b)  # may fill ``out`` in
            out = finite_json(out)  # NaN has no JSON form: stored, hashed and signed as null
            steps = dict(b["steps"] or {})
            steps[name] = out
            values: dict = {"steps": steps}
            if state:
                values["state"] = state
            if state in ("refused", "failed") or name == "certify":
                values["finished_at"] = _now()
            conn.execute(update(batches).where(batches.c.id == batch_id).values(**values))
            audit.append(conn, "worker", f"batch.{name}", "batch", batch_id, _summary(name, out))
        log.info(f"batch {name}", extra={"event": f"batch.{name}", "batch": batch_id})
        return out

    def _steps(self, batch_id: str) -> tuple[dict, dict, Policy]:
        with self.reader.connect() as conn:
            b = self._batch(conn, batch_id)
            line = self._line_by_id(conn, b["line_id"])
        return b, line, self._policy(line)

    def step_close(self, batch_id: str) -> dict:
        """No request joins the batch after this; its members are read in the same
        transaction that closes it (a request joining a moment before is in it)."""
        out: dict = {}

        def close(conn, b):
            if b["state"] == "open":
                conn.execute(update(batches).where(batches.c.id == batch_id).values(closed_at=_now()))
            out["requests"] = list(b["request_ids"])
            self._set_requests(conn, out["requests"], state="processing")

        return self._record_step(batch_id, "close", out, state="closed", extra=close)

    def step_resolve(self, batch_id: str) -> dict:
        """The batch's forget set, what was deleted before it, and the version it starts from."""
        b, line, _ = self._steps(batch_id)
        if "resolve" in b["steps"]:
            return b["steps"]["resolve"]
        members = b["steps"]["close"]["requests"]
        with self.reader.connect() as conn:
            reqs = conn.execute(select(deletion_requests).where(deletion_requests.c.id.in_(members))).all()
            forget = sorted({i for r in reqs for i in r.resolved_ids})
            excluded = sorted(
                {
                    r.example_id
                    for r in conn.execute(select(tombstones.c.example_id).where(tombstones.c.line_id == line["id"]))
                }
                - set(forget)
            )
            line = self._line_by_id(conn, line["id"])
            base = conn.execute(
                select(model_versions).where(
                    model_versions.c.line_id == line["id"], model_versions.c.version == line["current_version"]
                )
            ).one()
        out = {
            "forget_ids": forget,
            "forget_root": crypto.merkle_root(forget),
            "excluded_ids": excluded,
            "excluded_root": crypto.merkle_root(excluded),
            "base_version": int(base.version),
            "base_artifact": base.artifact,
            "base_run": base.run_id,
        }
        if base.training_state:  # a sharded line's checkpoints, or a method-built model's shape
            out["base_state"] = base.training_state
        return self._record_step(batch_id, "resolve", out)

    def _answer(self, b: dict, line: dict, pol: Policy, method: str, params: dict, run_id: str) -> dict:
        """Answer the batch's forget set with ``method`` from its base version (or find the
        run stored under ``run_id`` before); a method that fails (it diverged, the data
        cannot form the task) gives ``{"error": ...}``, which the gate treats as a failure."""
        from ..requests import DeletionRequest, answer_request

        r = b["steps"]["resolve"]
        rec = self.workspace.store.find(run_id)
        if rec is None:
            history = {"excluded_ids": r["excluded_ids"], "base_artifact": r["base_artifact"]}
            if r.get("base_state"):
                history["base_state"] = r["base_state"]
            try:
                rec = answer_request(
                    self.workspace,
                    DeletionRequest(
                        run=line["train_run"],
                        method=method,
                        params=params,
                        ids=r["forget_ids"],
                        seed=pol.seed,
                        history=history,
                        run_id=run_id,
                    ),
                ).record
            except UnlearnkitError as e:
                return {"error": f"{type(e).__name__}: {e}", "method": method, "params": params}
        out = {"run_id": rec.id, "artifact": rec.artifact, "method": method, "params": rec.params, "cost": rec.cost}
        state = (rec.tags or {}).get("training_state")
        base_state = r.get("base_state")
        if state is None and base_state and base_state["kind"] == "sisa":  # an approximate method
            from ..orchestration.training_state import after_approximate  # changed the ensemble

            forgotten = self._task(line["train_run"]).split.train.select(r["forget_ids"])
            state = after_approximate(base_state, forgotten)
        elif state is None:  # the shape of the method's model, where it is not model_factory's
            from ..orchestration.training_state import after_method

            own = _task_hook(line["modality"], "version_state")  # a modality with methods of its own
            try:
                state = (own or after_method)(base_state, method, rec.params, self._task(line["train_run"]))
            except UnlearnkitError as e:  # a model no later request could load: not a candidate
                return {"error": f"{type(e).__name__}: {e}", "method": method, "params": params}
        if state is not None:
            out["training_state"] = state
        return out

    def step_unlearn(self, batch_id: str) -> dict:
        """The policy's method on the batch's forget set, from the base version; the run's id
        is derived from the batch, so a repeated step finds the run it stored."""
        b, line, pol = self._steps(batch_id)
        if "unlearn" in b["steps"]:
            return b["steps"]["unlearn"]
        out = self._answer(b, line, pol, pol.method, pol.params, f"{batch_id}-unlearn")
        return self._record_step(batch_id, "unlearn", out)

    def step_verify(self, batch_id: str, candidate: str = "unlearn") -> dict:
        """The gate: the policy's checks on the candidate's metrics against the retrained
        reference, and the canary measures (see :mod:`unlearnkit.service.policy`)."""
        name = "verify" if candidate == "unlearn" else f"verify_{candidate}"
        b, line, pol = self._steps(batch_id)
        if name in b["steps"]:
            return b["steps"][name]
        if "error" in b["steps"][candidate]:  # the method failed: nothing to verify
            out = {"passed": False, "hold": False, "error": b["steps"][candidate]["error"], "checks": [], "canary": []}
            out.update(deletion_effect=[], metrics={})
            return self._record_step(batch_id, name, out)
        out = self._verify(b["steps"][candidate]["run_id"], line, pol, b["steps"]["resolve"]["base_version"])
        return self._record_step(batch_id, name, out)

    def _previous_exact(self, line: dict, base_version: int, task):
        """The exact model of the base version's deletion state: the reference its batch was
        verified against (or the original, for version 0), to measure what this batch's
        deletion alone changes."""
        with self.reader.connect() as conn:
            v = conn.execute(
                select(model_versions).where(
                    model_versions.c.line_id == line["id"], model_versions.c.version == base_version
                )
            ).one()
            artifact = v.artifact
            if v.batch_id is None:  # the train run's own model (a sharded line deploys an ensemble of it)
                artifact = self.workspace.store.get(v.run_id).artifact
            else:
                steps = self._batch(conn, v.batch_id)["steps"]
                artifact = (steps.get("verify_escalate") or steps.get("verify") or {}).get("reference_artifact")
        model = task.model_factory(task.seed).to(task.device)
        self.workspace.artifacts.load(artifact, model)
        return model.eval()

    def _verify(self, run_id: str, line: dict, pol: Policy, base_version: int) -> dict:
        from ..evaluation.metrics import metrics_for
        from ..orchestration.experiment import evaluate_model
        from ..requests import evaluate_run

        ev = evaluate_run(self.workspace, run_id, privacy=pol.privacy_shadows)  # U-LiRA where asked
        metrics = {k: v for k, v in ev.metrics.items() if isinstance(v, (int, float))}
        rec = self.workspace.store.get(run_id)
        ref_metrics: dict = {}
        task, model, ref = ev.task, ev.model, ev.reference_model
        if ev.reference_scores is None:  # the modality's own flow evaluated it (a federation's reference)
            own = _task_hook(line["modality"], "reference_metrics")
            if pol.needs_reference_metrics and own is not None:
                ref_metrics = own(task, ev.reference, rec.seed)
        elif pol.needs_reference_metrics:
            # the reference as evaluate_run scored it, and only the metrics the checks read (an
            # LM's FADE sampling and membership attacks are not among the default checks')
            names = metrics_for(pol.reference_metric_keys, task.modality)
            ref_ev = evaluate_model(
                ref,
                task,
                ev.reference_scores,
                ev.reference_cost,
                ev.reference_cost,
                rec.seed,
                metrics=names,
                scores=ev.reference_scores,
                reference_model=ref,
            )
            ref_metrics = {k: v for k, v in ref_ev.metrics.items() if isinstance(v, (int, float))}
        checks = [c.evaluate(metrics, ref_metrics) for c in pol.checks]
        ref_artifact = self.workspace.artifacts.save(ref)  # kept with the runs: certificates name it
        previous = self._previous_exact(line, base_version, task)
        canary = canary_measures(task, previous, ref, model, line["canary_ids"])
        canary_checks = []
        hold = []
        for k, limit in pol.canary_limits.items():
            _, side, measure = k.split("_", 2)
            value = canary.get(f"{side}_{measure}")
            passed = value is not None and value <= limit
            item = {"measure": f"{side}_{measure}", "threshold": limit, "value": value, "passed": passed}
            (hold if side == "reference" else canary_checks).append(item)
        passed = all(c["passed"] for c in checks) and all(c["passed"] for c in canary_checks)
        return {
            "passed": bool(passed),
            "hold": not all(c["passed"] for c in hold),
            "checks": checks,
            "canary": canary_checks,
            "deletion_effect": hold,
            "metrics": metrics,
            "evaluation_id": ev.evaluation.id,
            "reference_artifact": ref_artifact,
        }

    def step_escalate(self, batch_id: str) -> dict:
        """The exact path: the retrained reference (train data without every deleted
        example) becomes the candidate, stored as a ``retrain`` run; on a sharded line,
        SISA's restore-and-retrain of the affected shards from the base version's
        checkpoints (a ``sisa`` run), which removes what approximate answers removed before
        exactly too."""
        from ..requests import record_reference

        b, line, pol = self._steps(batch_id)
        if "escalate" in b["steps"]:
            return b["steps"]["escalate"]
        run_id = f"{batch_id}-retrain"
        if pol.sharding:
            out = self._answer(b, line, pol, "sisa", pol.sisa_params, f"{batch_id}-sisa")
        elif "run_id" in b["steps"]["unlearn"]:  # the reference the gate retrained is the answer
            try:
                rec = record_reference(self.workspace, b["steps"]["unlearn"]["run_id"], pol.seed, run_id)
                out = {"run_id": rec.id, "artifact": rec.artifact, "method": "retrain", "params": {}, "cost": rec.cost}
            except UnlearnkitError as e:
                out = {"error": f"{type(e).__name__}: {e}", "method": "retrain", "params": {}}
        else:  # the method failed before any reference was trained
            out = self._answer(b, line, pol, "retrain", {}, run_id)
        return self._record_step(batch_id, "escalate", out)

    def step_hold(self, batch_id: str) -> dict:
        """The deletion itself changes unrelated predictions beyond the policy: a person
        decides (``POST /v1/batches/{id}/decision``)."""

        def hold(conn, b):
            self._set_requests(conn, list(b["steps"]["close"]["requests"]), state="held")

        b, _, _ = self._steps(batch_id)
        v = b["steps"]["verify"]
        return self._record_step(batch_id, "hold", {"deletion_effect": v["deletion_effect"]}, state="held", extra=hold)

    def decide(self, batch_id: str, decision: str, reason: str, actor: str) -> dict:
        """A person's decision on a held batch: ``release`` (answer it) or ``refuse``
        (refuse its requests; their examples are no longer tombstoned)."""
        if decision not in ("release", "refuse"):
            raise unprocessable("decision must be release or refuse")
        with self.reader.connect() as conn:
            b = self._batch(conn, batch_id)
        if b["state"] != "held":
            raise conflict(f"batch {batch_id} is {b['state']}, not held", "not-held")
        if "decision" in b["steps"]:
            raise conflict(f"batch {batch_id} was decided already", "decided")
        out = {"decision": decision, "reason": str(reason or "")[:500], "by": actor}
        self._record_step(batch_id, "decision", out)
        return self.get_batch(batch_id)

    def decision_of(self, batch_id: str) -> str | None:
        b, _, _ = self._steps(batch_id)
        d = b["steps"].get("decision")
        return d["decision"] if d else None

    def step_refuse(self, batch_id: str) -> dict:
        def refuse(conn, b):
            members = list(b["steps"]["close"]["requests"])
            reason = "refused: " + (b["steps"].get("decision", {}).get("reason") or "removal damages unrelated data")
            self._set_requests(conn, members, state="refused", reason=reason)
            conn.execute(tombstones.delete().where(tombstones.c.request_id.in_(members)))

        return self._record_step(batch_id, "refuse", {"refused": True}, state="refused", extra=refuse)

    def step_fail(self, batch_id: str) -> dict:
        """Gate failed and the policy says reject: the deployed version stays; the requests
        say why (their examples stay tombstoned: a person must answer them)."""
        b, _, _ = self._steps(batch_id)
        s = b["steps"]
        errors = [s[k]["error"] for k in ("unlearn", "escalate") if k in s and "error" in s[k]]
        failed = [c["metric"] for c in s["verify"]["checks"] if not c["passed"]] + [
            c["measure"] for c in s["verify"]["canary"] if not c["passed"]
        ]
        reason = "; ".join(
            ([f"verification failed: {', '.join(failed)}"] if failed else [])
            + [f"could not answer: {e}" for e in errors]
        )

        def fail(conn, b):
            self._set_requests(conn, list(b["steps"]["close"]["requests"]), state="failed", reason=reason)

        return self._record_step(batch_id, "fail", {"reason": reason}, state="failed", extra=fail)

    def abandon(self, batch_id: str, why: str) -> bool:
        """A batch whose workflow can no longer run: its unanswered requests fail with
        ``why`` (their examples stay tombstoned: a person must answer them); False when the
        batch had finished (or was abandoned) already."""
        from .db import deletion_requests as reqs

        with self._tx() as conn:
            try:
                b = self._batch(conn, batch_id)
            except ServiceError:
                return False
            if b["state"] in ("promoted", "failed", "refused", "superseded") or "abandon" in b["steps"]:
                return False
            members = list(b["request_ids"])
            open_ = [
                r.id
                for r in conn.execute(select(reqs.c.id, reqs.c.state).where(reqs.c.id.in_(members)))
                if r.state not in ("answered", "failed", "refused")
            ]
            self._set_requests(conn, open_, state="failed", reason=f"not answered: {why}")
            steps = dict(b["steps"] or {})
            steps["abandon"] = {"reason": why, "requests": open_}
            conn.execute(
                update(batches).where(batches.c.id == batch_id).values(steps=steps, state="failed", finished_at=_now())
            )
            audit.append(conn, "worker", "batch.abandoned", "batch", batch_id, {"reason": why, "requests": open_})
        log.warning("batch abandoned", extra={"event": "batch.abandoned", "batch": batch_id})
        return True

    def step_promote(self, batch_id: str) -> dict:
        """Compare-and-swap the line's current version from the batch's base to a new one
        holding the candidate; on a lost swap (a rollback meanwhile) the batch is
        superseded and its requests join a new batch from the new current version."""
        b, line, _ = self._steps(batch_id)
        if "promote" in b["steps"]:
            return b["steps"]["promote"]
        cand = b["steps"].get("escalate") or b["steps"]["unlearn"]
        base = b["steps"]["resolve"]["base_version"]
        result: dict = {}

        def promote(conn, b):
            lid = line["id"]
            new = (
                int(
                    conn.execute(
                        select(func.max(model_versions.c.version)).where(model_versions.c.line_id == lid)
                    ).scalar_one()
                )
                + 1
            )
            swapped = conn.execute(
                update(model_lines)
                .where(model_lines.c.id == lid, model_lines.c.current_version == base)
                .values(current_version=new)
            ).rowcount
            members = list(b["steps"]["close"]["requests"])
            if swapped != 1:
                result.update(superseded=True, reason=f"the line's version moved from {base} meanwhile")
                fresh = self._new_batch(conn, line, members, state="closed")
                self._set_requests(conn, members, state="queued", batch_id=fresh)
                result["requeued_in"] = fresh
                return
            conn.execute(
                update(model_versions)
                .where(model_versions.c.line_id == lid, model_versions.c.version == base)
                .values(status="superseded")
            )
            conn.execute(
                insert(model_versions).values(
                    line_id=lid,
                    version=new,
                    artifact=cand["artifact"],
                    run_id=cand["run_id"],
                    parent_version=base,
                    batch_id=batch_id,
                    created_at=_now(),
                    status="deployed",
                    note=f"exact {cand['method']} (gate escalation)" if "escalate" in b["steps"] else "promoted",
                    training_state=cand.get("training_state"),
                )
            )
            self._set_requests(conn, members, version=new)
            result.update(version=new, artifact=cand["artifact"], previous=base)

        # the swap and the step's record commit together
        with self._tx() as conn:
            bb = self._batch(conn, batch_id)
            if "promote" in bb["steps"]:
                return bb["steps"]["promote"]
            promote(conn, bb)
            steps = dict(bb["steps"])
            steps["promote"] = result
            state = "superseded" if result.get("superseded") else "promoted"
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(steps=steps, state=state, finished_at=_now() if state == "superseded" else None)
            )
            audit.append(conn, "worker", "batch.promote", "batch", batch_id, result)
        log.info("batch promote", extra={"event": "batch.promote", "batch": batch_id, "version": result.get("version")})
        return result

    def step_certify(self, batch_id: str) -> dict:
        """One signed certificate per request of the batch, then a signed audit checkpoint."""
        b, line, pol = self._steps(batch_id)
        if "certify" in b["steps"]:
            return b["steps"]["certify"]
        issued: dict = {}

        def certify(conn, b):
            s = b["steps"]
            cand = s.get("escalate") or s["unlearn"]
            verify = s.get("verify_escalate") or s["verify"]
            members = list(s["close"]["requests"])
            head_seq, head_hash = audit.head(conn)
            for r in conn.execute(select(deletion_requests).where(deletion_requests.c.id.in_(members))).all():
                cert_id = _new_id("cert")
                body = {
                    "type": "unlearnkit.deletion-certificate/v1",
                    "certificate_id": cert_id,
                    "request_id": r.id,
                    "issued_at": _now(),
                    "model_line": {"id": line["id"], "name": line["name"], "sharding": pol.sharding},
                    "subjects": list(r.subjects),
                    "pseudonymisation": "HMAC-SHA256 with the service's secret key (raw ids are never stored)",
                    "examples": {"count": r.n_resolved, "merkle_root": crypto.merkle_root(r.resolved_ids)},
                    "batch": {
                        "id": batch_id,
                        "requests": len(members),
                        "examples": len(s["resolve"]["forget_ids"]),
                        "merkle_root": s["resolve"]["forget_root"],
                    },
                    "deleted_before": {
                        "count": len(s["resolve"]["excluded_ids"]),
                        "merkle_root": s["resolve"]["excluded_root"],
                    },
                    "merkle_tree": "RFC 6962 SHA-256 over the sorted example ids",
                    "method": {
                        "name": cand["method"],
                        "params": cand["params"],
                        "config_hash": body_hash(
                            {"method": cand["method"], "params": cand["params"], "seed": pol.seed}
                        ),
                        "exact": _is_exact(line["modality"], cand["method"]),
                    },
                    "model": {
                        "before": {"version": s["resolve"]["base_version"], "artifact": s["resolve"]["base_artifact"]},
                        "after": {"version": s["promote"]["version"], "artifact": s["promote"]["artifact"]},
                    },
                    "verification": {
                        "passed": verify["passed"],
                        "checks": verify["checks"],
                        "canary": verify["canary"],
                        "deletion_effect": verify["deletion_effect"],
                        "reference": {"method": "retrain", "artifact": verify.get("reference_artifact")},
                        "escalated": "escalate" in s,
                        "first_candidate_passed": s["verify"]["passed"],
                    },
                    "timeline": self._timeline(conn, r.id, batch_id),
                    "audit": {"seq": head_seq, "hash": head_hash},
                    "key_id": self.key.key_id,
                }
                doc = crypto.sign_document(body, self.key)
                conn.execute(
                    insert(certificates).values(
                        id=cert_id, request_id=r.id, batch_id=batch_id, created_at=body["issued_at"], document=doc
                    )
                )
                issued[r.id] = cert_id
                audit.append(
                    conn,
                    "worker",
                    "certificate.issued",
                    "request",
                    r.id,
                    {"certificate": cert_id, "document_hash": body_hash(doc), "version": s["promote"]["version"]},
                )
            self._set_requests(conn, members, state="answered", reason=None)

        out = self._record_step(batch_id, "certify", {"certificates": issued}, extra=certify)
        with self._tx() as conn:
            audit.checkpoint(conn, self.key)
        return out

    # ------------------------------------------------------------------ rollback
    def rollback(self, line_name: str, to_version: int, actor: str = "admin") -> dict:
        """Deploy an earlier version again. The requests answered by the versions after it
        are re-opened (their certificates revoked) and answered again from it; their
        examples stay tombstoned, so no retrain ever takes them back."""
        if isinstance(to_version, bool) or not isinstance(to_version, int) or to_version < 0:
            raise unprocessable("to_version must be an integer >= 0")
        with self._tx() as conn:
            line = self._line_row(conn, line_name)
            cur = line["current_version"]
            if to_version >= cur:
                raise conflict(f"line {line_name} is at version {cur}; roll back to an earlier one", "not-earlier")
            exists = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.line_id == line["id"], model_versions.c.version == to_version
                )
            ).first()
            if exists is None:
                raise not_found("version", f"line {line_name} has no version {to_version}")
            swapped = conn.execute(
                update(model_lines)
                .where(model_lines.c.id == line["id"], model_lines.c.current_version == cur)
                .values(current_version=to_version)
            ).rowcount
            if swapped != 1:
                raise conflict("the line's version changed meanwhile; try again", "version-moved")
            conn.execute(
                update(model_versions)
                .where(model_versions.c.line_id == line["id"], model_versions.c.version > to_version)
                .values(status="rolled_back")
            )
            conn.execute(
                update(model_versions)
                .where(model_versions.c.line_id == line["id"], model_versions.c.version == to_version)
                .values(status="deployed")
            )
            reopened = [
                r.id
                for r in conn.execute(
                    select(deletion_requests.c.id).where(
                        deletion_requests.c.line_id == line["id"], deletion_requests.c.version > to_version
                    )
                )
            ]
            batch = None
            if reopened:
                conn.execute(
                    update(certificates)
                    .where(certificates.c.request_id.in_(reopened), certificates.c.revoked_at.is_(None))
                    .values(revoked_at=_now())
                )
                batch = self._new_batch(conn, line, reopened, state="closed")
                self._set_requests(conn, reopened, state="queued", version=None, batch_id=batch)
            audit.append(
                conn,
                actor,
                "line.rolled_back",
                "line",
                line["id"],
                {"from": cur, "to": to_version, "reopened": reopened, "batch": batch},
            )
        return {"line": line_name, "from": cur, "to": to_version, "reopened": reopened, "batch": batch}

    # ------------------------------------------------------------------ audit
    def audit_entries(self, after: int = 0, limit: int = 100) -> tuple[list[dict], int | None]:
        with self.reader.connect() as conn:
            rows = audit.read(conn, after=after, limit=limit + 1)
        return rows[:limit], (rows[limit - 1]["seq"] if len(rows) > limit else None)

    def export_audit(self) -> dict:
        with self.reader.connect() as conn:
            return audit.export(conn, self.public_key_pem())

    def public_key_pem(self) -> str:
        if self.key is not None:
            return self.key.public_key_pem()
        return (self.keys_dir / "signing-key.pub").read_text()

    # ------------------------------------------------------------------ API keys
    def create_key(
        self, name: str, scopes: list[str], rate_per_minute: int = 600, actor: str = "cli"
    ) -> tuple[str, dict]:
        """A new API key: returns ``(token, info)``; the token is shown once, only its
        SHA-256 is stored (a 256-bit random secret needs no slow hash)."""
        check_key_args(name, scopes, rate_per_minute)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._tx() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key_id,
                    name=name,
                    secret_hash=hashlib.sha256(secret.encode()).digest(),
                    scopes=sorted(set(scopes)),
                    rate_per_minute=rate_per_minute,
                    created_at=_now(),
                )
            )
            audit.append(conn, actor, "key.created", "key", key_id, {"name": name, "scopes": sorted(set(scopes))})
        return f"uk_{key_id}_{secret}", {"id": key_id, "name": name, "scopes": sorted(set(scopes))}

    def revoke_key(self, key_id: str, actor: str = "cli") -> None:
        with self._tx() as conn:
            n = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            ).rowcount
            if n != 1:
                raise ConfigError(f"no active key {key_id!r}")
            audit.append(conn, actor, "key.revoked", "key", key_id, {})

    def list_keys(self) -> list[dict]:
        with self.reader.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [{k: v for k, v in r._mapping.items() if k != "secret_hash"} for r in rows]

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The key of ``token`` (None when unknown, malformed or revoked)."""
        m = re.fullmatch(r"uk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})", token or "")
        if not m:
            return None
        with self.reader.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == m.group(1))).first()
        if row is None or row.revoked_at is not None:
            return None
        import hmac

        if not hmac.compare_digest(row.secret_hash, hashlib.sha256(m.group(2).encode()).digest()):
            return None
        return ApiKey(row.id, row.name, tuple(row.scopes), int(row.rate_per_minute))

    # ------------------------------------------------------------------ observability
    def counts(self) -> dict:
        """Requests and batches by state, gate failures, finished batch latencies (seconds)."""
        with self.reader.connect() as conn:
            req = dict(
                conn.execute(select(deletion_requests.c.state, func.count()).group_by(deletion_requests.c.state)).all()
            )
            bat = dict(conn.execute(select(batches.c.state, func.count()).group_by(batches.c.state)).all())
            done = conn.execute(
                select(batches.c.opened_at, batches.c.finished_at, batches.c.steps).where(
                    batches.c.finished_at.is_not(None)
                )
            ).all()
        lat = [(datetime.fromisoformat(f) - datetime.fromisoformat(o)).total_seconds() for o, f, _ in done if f and o]
        gate_failures = sum(1 for *_, s in done if s and "verify" in s and not s["verify"].get("passed"))
        return {"requests": req, "batches": bat, "latencies": lat, "gate_failures": gate_failures}

    def ready(self) -> None:
        """Raise unless the database answers."""
        with self.reader.connect() as conn:
            conn.execute(select(func.count()).select_from(model_lines))


def _version_view(row) -> dict:
    """A version as the API shows it: a sharded line's training state summarised (how many
    shards and slices, how many deletions are pending in its checkpoints, stale shards)."""
    out = {k: v for k, v in row.items() if k not in ("line_id", "training_state")}
    st = row.get("training_state")
    if not st:
        out["training_state"] = None
    elif st["kind"] == "model":  # a method-built shape (GNNDelete's operators around the GNN)
        out["training_state"] = {"kind": "model", "methods": [m["name"] for m in st["methods"]]}
    else:
        out["training_state"] = {
            "kind": st["kind"],
            "shards": st["num_shards"],
            "slices": st["num_slices"],
            "pending_deletions": len(st.get("pending") or []),
            "stale_shards": len(st.get("stale") or []),
        }
    return out


def check_key_args(name: str, scopes: list[str], rate_per_minute: int) -> None:
    """Raise :class:`ConfigError` unless these make an API key (checked before anything is opened)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    if not name or len(name) > 128:
        raise ConfigError("a key needs a name of 1-128 characters")
    if isinstance(rate_per_minute, bool) or not isinstance(rate_per_minute, int) or rate_per_minute < 1:
        raise ConfigError("rate_per_minute must be an integer >= 1")


def _task_hook(modality: str, name: str) -> Callable | None:
    """The service hook ``name`` of a modality, where it has one: in its ``service`` module
    (the recommender's, the federation's) if it has that module, else in its ``task`` module
    (the graph's). The hooks: ``resolve_request_ids``, ``check_deletion``, ``canary_examples``
    (the graph's, the recommender's); for a modality answering with its own flow (the
    federation's) ``line_task`` (the train run's task), ``check_line_deletion`` (on that
    task), ``version_state`` (a version's training-state manifest), ``method_is_exact``,
    ``reference_metrics`` and ``policy_method`` (:mod:`unlearnkit.service.policy`)."""
    return modality_hook(modality, name)


def _is_exact(modality: str, method: str) -> bool:
    """Whether ``method`` answers exactly (the modality's own ``method_is_exact`` where it has
    one, else the method registry's ``exact``)."""
    own = _task_hook(modality, "method_is_exact")
    return bool(own(method)) if own is not None else bool(get_method(method).exact)


def _summary(step: str, out: dict) -> dict:
    """A step's output as the audit log and the API show it: id lists become counts and roots."""
    if not isinstance(out, dict):
        return out
    s = {}
    for k, v in out.items():
        if k in ("forget_ids", "excluded_ids"):
            s[k.replace("_ids", "_count")] = len(v)
        elif k == "metrics":
            continue
        else:
            s[k] = v
    return finite_json(json.loads(json.dumps(s, default=str)))


def canary_measures(task, base, reference, candidate, canary_ids: list[str]) -> dict:
    """How much a deletion moves never-trained examples: ``reference_*`` compares the
    retrained reference with ``base``, the exact model before this deletion (the previous
    reference, or the original: the deletion's own effect), ``excess_*`` the candidate with
    the reference (the method's collateral damage). ``flip_rate``: share
    of canary examples whose predicted class differs (where the model outputs one class
    distribution per example); ``loss_shift``: mean absolute difference of per-example loss."""
    import torch

    if not canary_ids:
        return {}
    rows = _task_hook(task.modality_info.name, "canary_examples")  # scored as every split is
    data = rows(task, canary_ids) if rows else task.split.test.select(canary_ids)
    adapter = task.adapter
    outs = {"base": ([], []), "reference": ([], []), "candidate": ([], [])}
    models = {"base": base, "reference": reference, "candidate": candidate}
    with torch.no_grad():
        for batch in data.batches(256):
            batch = adapter.to_device(batch) if hasattr(adapter, "to_device") else batch
            for name, m in models.items():
                m.eval()
                outs[name][0].append(adapter.per_example_loss(m, batch).float().cpu())
                logits = adapter.logits(m, batch)
                outs[name][1].append(logits.argmax(-1).cpu() if logits.dim() == 2 else None)
    loss = {k: torch.cat(v[0]) for k, v in outs.items()}
    res = {
        "reference_loss_shift": float((loss["reference"] - loss["base"]).abs().mean()),
        "excess_loss_shift": float((loss["candidate"] - loss["reference"]).abs().mean()),
    }
    if all(p is not None for v in outs.values() for p in v[1]):
        pred = {k: torch.cat(v[1]) for k, v in outs.items()}
        res["reference_flip_rate"] = float((pred["reference"] != pred["base"]).float().mean())
        res["excess_flip_rate"] = float((pred["candidate"] != pred["reference"]).float().mean())
    return res
