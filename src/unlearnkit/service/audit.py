"""The audit log: an append-only hash chain of every state change, with signed checkpoints.

Entry ``n`` (``seq`` from 1) holds ``at, actor, action, entity, entity_id, payload`` and
``prev_hash`` (entry ``n-1``'s hash; 64 zeros for the first); its hash is
``SHA-256(JCS({seq, at, actor, action, entity, entity_id, payload, prev_hash}))``, JCS being
RFC 8785 canonical JSON. Changing, removing or reordering any entry breaks every later
link. A checkpoint is the service's Ed25519 signature over ``JCS({seq, hash})`` of the chain
head at that moment; it is taken after each batch and when asked, so truncating the log
behind a checkpoint is detected too, and a verifier holding only the public key trusts
nothing the service says: :func:`verify_log` recomputes every hash.

Appends are serialised: the caller's transaction is ``BEGIN IMMEDIATE`` on SQLite (one
writer at a time) and takes ``pg_advisory_xact_lock`` on PostgreSQL before reading the head;
``seq`` is the primary key, so two appends can never both succeed with one position.
This follows the hash-chained log of Schneier & Kelsey 1999 ("Secure audit logs to support
computer forensics") and Crosby & Wallach 2009 without their forward-secure MAC keys: the
chain plus signed checkpoints detect tampering, they do not hide entries from the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection

from . import crypto
from .db import audit_checkpoints, audit_log

GENESIS = "0" * 64
_PG_LOCK = 0x756E6C6B  # "unlk": the advisory lock serialising appends on PostgreSQL


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def entry_hash(entry: dict) -> str:
    body = {k: entry[k] for k in ("seq", "at", "actor", "action", "entity", "entity_id", "payload", "prev_hash")}
    return crypto.sha256_hex(crypto.canonical_json(body))


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})


def head(conn: Connection) -> tuple[int, str]:
    """``(seq, hash)`` of the newest entry (``(0, GENESIS)`` for an empty log)."""
    row = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    return (int(row.seq), row.hash) if row else (0, GENESIS)


def append(conn: Connection, actor: str, action: str, entity: str, entity_id: str, payload: dict | None = None) -> dict:
    """Append one entry inside the caller's transaction (the state change it records
    commits with it, or neither does); returns the entry."""
    _lock(conn)
    seq, prev = head(conn)
    entry = {
        "seq": seq + 1,
        "at": now(),
        "actor": str(actor),
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "payload": payload or {},
        "prev_hash": prev,
    }
    entry["hash"] = entry_hash(entry)
    conn.execute(insert(audit_log).values(**entry))
    return entry


def checkpoint(conn: Connection, key: "crypto.SigningKey") -> dict | None:
    """Sign the chain head (inside the caller's transaction); None for an empty log or a
    head already signed."""
    _lock(conn)
    seq, h = head(conn)
    if seq == 0:
        return None
    if conn.execute(select(audit_checkpoints.c.seq).where(audit_checkpoints.c.seq == seq)).first():
        return None
    row = {
        "seq": seq,
        "hash": h,
        "at": now(),
        "key_id": key.key_id,
        "signature": key.sign(crypto.canonical_json({"seq": seq, "hash": h})),
    }
    conn.execute(insert(audit_checkpoints).values(**row))
    return row


def read(conn: Connection, after: int = 0, limit: int | None = None, entity_id: str | None = None) -> list[dict]:
    q = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq)
    if entity_id is not None:
        q = q.where(audit_log.c.entity_id == entity_id)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def export(conn: Connection, public_key_pem: str) -> dict:
    """The whole log, its checkpoints and the public key: what ``unlearnkit audit verify``
    checks offline."""
    return {
        "format": "unlearnkit.audit-log/v1",
        "public_key": public_key_pem,
        "entries": read(conn),
        "checkpoints": [
            dict(r._mapping) for r in conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.seq))
        ],
        "count": conn.execute(select(func.count()).select_from(audit_log)).scalar_one(),
    }


@dataclass
class LogReport:
    entries: int = 0
    checkpoints: int = 0
    last_signed_seq: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last signed checkpoint (chained, not yet signed)."""
        return max(0, self.entries - self.last_signed_seq)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "last_signed_seq": self.last_signed_seq,
            "unsigned_tail": self.unsigned_tail,
            "problems": self.problems,
        }


def verify_log(entries: list[dict], checkpoints: list[dict], public_key_pem: str) -> LogReport:
    """Recompute every hash and link and check every checkpoint's signature."""
    report = LogReport(entries=len(entries), checkpoints=len(checkpoints))
    by_seq: dict[int, str] = {}
    prev = GENESIS
    for i, e in enumerate(entries, start=1):
        try:
            if int(e["seq"]) != i:
                report.problems.append(f"entry {i}: seq is {e['seq']} (entries missing or reordered)")
                break
            if e["prev_hash"] != prev:
                report.problems.append(f"entry {i}: prev_hash does not link to entry {i - 1}")
            h = entry_hash(e)
            if h != e["hash"]:
                report.problems.append(f"entry {i}: content does not match its hash (altered)")
        except (KeyError, TypeError, ValueError) as ex:
            report.problems.append(f"entry {i}: malformed ({ex})")
            break
        by_seq[i] = e["hash"]
        prev = e["hash"]
    key_id = crypto.key_id_of(public_key_pem) if public_key_pem else None
    for c in checkpoints:
        try:
            seq, h = int(c["seq"]), c["hash"]
            if c.get("key_id") != key_id:
                report.problems.append(f"checkpoint {seq}: signed by key {c.get('key_id')}, not {key_id}")
                continue
            if not crypto.verify_signature(
                public_key_pem, crypto.canonical_json({"seq": seq, "hash": h}), c["signature"]
            ):
                report.problems.append(f"checkpoint {seq}: bad signature")
                continue
            if seq not in by_seq:
                report.problems.append(f"checkpoint {seq}: the log ends before it (entries removed)")
            elif by_seq[seq] != h:
                report.problems.append(f"checkpoint {seq}: the entry there has another hash (log rewritten)")
            else:
                report.last_signed_seq = max(report.last_signed_seq, seq)
        except (KeyError, TypeError, ValueError) as ex:
            report.problems.append(f"checkpoint: malformed ({ex})")
    return report
