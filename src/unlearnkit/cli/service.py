"""``unlearnkit serve``, ``worker``, ``keys`` and ``audit``: the deletion-request service.

``serve`` runs the HTTP API (and, unless ``--no-worker``, a worker in the same process);
``worker`` runs batches only (several, on several machines, sharing a PostgreSQL
``--store`` and the workspace's artifacts). ``keys create`` makes an API key (shown once).
``audit verify`` checks certificates and the whole audit log offline; ``audit export``
writes the log for someone who has no access to the database.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from . import app, audit_app, keys_app
from .common import HomeOpt, JsonOpt, StoreOpt, out

PolicyOpt = typer.Option(
    None, "--policy", help="YAML or JSON policy file (method, batching, gate); see docs/service.md."
)
WorkerIdOpt = typer.Option(
    "local",
    "--worker-id",
    help="Stable id of this worker (DBOS executor id): a restarted worker resumes its own unfinished batches.",
)


def _existing(home, store) -> None:
    """Raise unless the workspace (and its service database) exist: commands that change
    or read keys never create a workspace."""
    from ..orchestration.experiment import default_home

    root = Path(home) if home else default_home()
    if store is None and not (root / "service.db").is_file():
        raise ConfigError(
            f"no service database in {root}; start `unlearnkit serve --home {root}` or create a key first"
        )


def _service(home, store, policy: Optional[Path], read_only: bool = False, attach_queue: bool = True):
    try:
        from ..service.core import Service
        from ..service.policy import BASE_POLICY, load_policy_file, merge, parse_policy
    except ImportError as e:  # the extra is missing
        raise ConfigError(
            f"the service needs its extra: pip install 'unlearnkit[service]' ({e.name} missing)"
        ) from None
    if store is not None:  # a URL, checked before anything is created (a bare path would become a file)
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(store)
        except ArgumentError:
            raise ConfigError(f"not a database URL: {store!r} (e.g. postgresql+psycopg://user@host/db)") from None
    pol = load_policy_file(policy)
    if pol:
        parse_policy(merge(BASE_POLICY, pol))  # a bad file fails here, before anything starts
    home = Path(home) if home else None
    from ..orchestration.experiment import default_home

    svc = Service(home or default_home(), store, pol, read_only=read_only)
    if attach_queue and not read_only:
        from ..service import workflows

        workflows.attach(svc)
    return svc


@app.command("serve")
def serve(
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    policy: Optional[Path] = PolicyOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Also run batches in this process."),
    worker_id: str = WorkerIdOpt,
    openapi: Optional[Path] = typer.Option(None, "--openapi", help="Write the OpenAPI document to FILE and exit."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the deletion-request service: HTTP API on HOST:PORT, batches answered by an
    in-process worker (SQLite in the workspace by default; --store postgresql+psycopg://...)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, not {port}")
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-level must be debug, info, warning or error")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", worker_id):
        raise ConfigError("--worker-id: 1-64 of letters, digits, '.', '_', '-'")
    if openapi is not None:
        from ..requests import check_output_path

        check_output_path(openapi, "--openapi")
        from ..service.app import openapi_document
        from ..utils import atomic_path

        svc = _service(home, store, policy, attach_queue=False)
        with atomic_path(openapi) as tmp:
            Path(tmp).write_text(openapi_document(svc))
        typer.echo(f"wrote {openapi}")
        return
    import socket

    try:  # the port is free (before any database work)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    import uvicorn

    from ..service import workflows
    from ..service.app import create_app
    from ..service.observe import configure_logging

    configure_logging(log_level)
    svc = _service(home, store, policy)
    if worker:
        workflows.launch(svc, worker_id)
    application = create_app(svc, notify=lambda b: workflows.notify_decision(svc, b))
    typer.echo(
        json.dumps({"event": "service.start", "url": f"http://{host}:{port}", "db": svc.safe_url, "worker": worker}),
        err=True,
    )
    try:
        uvicorn.run(application, host=host, port=port, log_config=None, access_log=False)
    finally:
        workflows.shutdown()


@app.command("worker")
def worker_cmd(
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    policy: Optional[Path] = PolicyOpt,
    worker_id: str = WorkerIdOpt,
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Answer batches of deletion requests (no HTTP): several workers may share one
    PostgreSQL --store; each resumes its own unfinished batches after a crash."""
    import signal
    import threading

    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", worker_id):
        raise ConfigError("--worker-id: 1-64 of letters, digits, '.', '_', '-'")
    from ..service import workflows
    from ..service.observe import configure_logging

    configure_logging(log_level)
    svc = _service(home, store, policy)
    workflows.launch(svc, worker_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    typer.echo(json.dumps({"event": "worker.start", "worker_id": worker_id, "db": svc.safe_url}), err=True)
    stop.wait()
    workflows.shutdown()


# --------------------------------------------------------------------------- keys
@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="Who the key is for."),
    scopes: str = typer.Option(
        "deletion:submit,deletion:read",
        "--scopes",
        help="Comma-separated: deletion:submit, deletion:read, model:admin.",
    ),
    rate: int = typer.Option(600, "--rate", help="Requests per minute this key may make."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create an API key; the token is printed once (only its hash is stored)."""
    from ..service.core import check_key_args

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    check_key_args(name, wanted, rate)  # before anything is created
    svc = _service(home, store, None, attach_queue=False)
    token, info = svc.create_key(name, wanted, rate)
    out(
        {"token": token, **info},
        as_json,
        f"{token}\n(key {info['id']}, scopes {', '.join(info['scopes'])}; shown once)",
    )


@keys_app.command("list")
def keys_list(home: Optional[Path] = HomeOpt, store: Optional[str] = StoreOpt, as_json: bool = JsonOpt) -> None:
    """List API keys (never their secrets)."""
    _existing(home, store)
    svc = _service(home, store, None, attach_queue=False)
    keys = svc.list_keys()
    text = "\n".join(
        f"{k['id']}  {k['name']:<20} {','.join(k['scopes']):<45} {'revoked' if k['revoked_at'] else 'active'}"
        for k in keys
    )
    out(keys, as_json, text or "no keys")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(...), home: Optional[Path] = HomeOpt, store: Optional[str] = StoreOpt
) -> None:
    """Revoke an API key."""
    _existing(home, store)
    _service(home, store, None, attach_queue=False).revoke_key(key_id)
    typer.echo(f"revoked {key_id}")


# --------------------------------------------------------------------------- audit
def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"{what} {path} is not JSON: {e}") from None


@audit_app.command("export")
def audit_export(
    out_file: Path = typer.Option(..., "--out", help="JSON file to write."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
) -> None:
    """Write the whole audit log, its signed checkpoints and the public key to a file."""
    from ..requests import check_output_path
    from ..utils import atomic_path

    check_output_path(out_file, "--out")
    _existing(home, store)
    svc = _service(home, store, None, read_only=True, attach_queue=False)
    doc = svc.export_audit()
    with atomic_path(out_file) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1))
    typer.echo(f"wrote {out_file} ({doc['count']} entries, {len(doc['checkpoints'])} checkpoints)")


@audit_app.command("verify")
def audit_verify(
    certificate: Optional[List[Path]] = typer.Option(
        None, "--certificate", help="A certificate JSON file (repeatable)."
    ),
    log_file: Optional[Path] = typer.Option(
        None, "--log", help="An exported audit log (`audit export`); default: the workspace's database."
    ),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="The service's public key (PEM) you trust; default: the one beside the log."
    ),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check certificates and the whole audit log offline: every hash and link of the
    chain, every checkpoint's and certificate's Ed25519 signature, and that each
    certificate is in the log. Exit status 1 when anything fails."""
    from ..service import audit, crypto
    from ..service.core import body_hash

    if log_file is not None:
        exported = _read_json(log_file, "audit log")
        if not isinstance(exported, dict) or "entries" not in exported:
            raise ConfigError(f"{log_file} is not an exported audit log (`unlearnkit audit export`)")
        entries, checkpoints, key_in_log = (
            exported["entries"],
            exported.get("checkpoints", []),
            exported.get("public_key"),
        )
    else:
        _existing(home, store)
        svc = _service(home, store, None, read_only=True, attach_queue=False)
        exported = svc.export_audit()
        entries, checkpoints, key_in_log = exported["entries"], exported["checkpoints"], exported["public_key"]
    if public_key is not None:
        try:
            pem = Path(public_key).read_text()
            crypto.key_id_of(pem)
        except OSError as e:
            raise ConfigError(f"cannot read --public-key {public_key}: {e.strerror or e}") from None
        except ValueError:
            raise ConfigError(f"--public-key {public_key} is not an Ed25519 public key (PEM)") from None
        key_source = str(public_key)
    else:
        pem, key_source = key_in_log, "the log's own (compare its id with the one you trust)"
    report = audit.verify_log(entries, checkpoints, pem)
    result = {"key_id": crypto.key_id_of(pem), "key_source": key_source, "log": report.to_dict(), "certificates": []}
    by_seq = {int(e["seq"]): e for e in entries if isinstance(e, dict) and "seq" in e}
    issued = {
        e["payload"].get("certificate"): e
        for e in entries
        if isinstance(e, dict) and e.get("action") == "certificate.issued"
    }
    ok = report.ok
    for path in certificate or []:
        doc = _read_json(path, "certificate")
        problems = crypto.verify_document(doc, pem)
        body = doc.get("body") if isinstance(doc, dict) else None
        if isinstance(body, dict):
            pos = body.get("audit") or {}
            at = by_seq.get(pos.get("seq"))
            if pos.get("seq") and (at is None or at["hash"] != pos.get("hash")):
                problems.append(f"its audit position {pos.get('seq')} is not in the log with the hash it names")
            entry = issued.get(body.get("certificate_id"))
            if entry is None:
                problems.append("the log has no certificate.issued entry for it")
            elif entry["payload"].get("document_hash") != body_hash(doc):
                problems.append("the log's certificate.issued entry names another document (altered)")
        result["certificates"].append({"file": str(path), "ok": not problems, "problems": problems})
        ok = ok and not problems
    result["ok"] = ok
    lines = [
        f"key {result['key_id']} ({key_source})",
        f"log: {'OK' if report.ok else 'FAILED'}: {report.entries} entries, {report.checkpoints} signed checkpoints"
        + (f", {report.unsigned_tail} entries after the last checkpoint" if report.unsigned_tail else ""),
        *[f"  - {p}" for p in report.problems],
    ]
    for c in result["certificates"]:
        lines.append(f"certificate {c['file']}: {'OK' if c['ok'] else 'FAILED'}")
        lines.extend(f"  - {p}" for p in c["problems"])
    out(result, as_json, "\n".join(lines))
    if not ok:
        sys.exit(1)
