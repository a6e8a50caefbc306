"""The service's first tables: model lines and versions, deletion requests, batches,
tombstones, certificates, the audit log and its checkpoints, API keys, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_lines",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("train_run", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("canary_ids", sa.JSON, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("line_id", sa.String(40), sa.ForeignKey("model_lines.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("artifact", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("parent_version", sa.Integer),
        sa.Column("batch_id", sa.String(40)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_table(
        "deletion_requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("line_id", sa.String(40), sa.ForeignKey("model_lines.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("subjects", sa.JSON, nullable=False),
        sa.Column("example_ids", sa.JSON, nullable=False),
        sa.Column("resolved_ids", sa.JSON, nullable=False),
        sa.Column("n_resolved", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.String(40)),
        sa.Column("version", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("key_id", sa.String(40)),
    )
    op.create_index("ix_deletion_requests_line_id", "deletion_requests", ["line_id"])
    op.create_index("ix_deletion_requests_state", "deletion_requests", ["state"])
    op.create_index("ix_deletion_requests_batch_id", "deletion_requests", ["batch_id"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("line_id", sa.String(40), sa.ForeignKey("model_lines.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("request_ids", sa.JSON, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_batches_line_id", "batches", ["line_id"])
    op.create_index("ix_batches_state", "batches", ["state"])
    op.create_index("batches_line_state", "batches", ["line_id", "state"])
    op.create_table(
        "tombstones",
        sa.Column("line_id", sa.String(40), sa.ForeignKey("model_lines.id"), primary_key=True),
        sa.Column("example_id", sa.String(256), primary_key=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("request_id", sa.String(40), sa.ForeignKey("deletion_requests.id"), nullable=False),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("revoked_at", sa.String(40)),
    )
    op.create_index("ix_certificates_batch_id", "certificates", ["batch_id"])
    op.create_index("ix_certificates_request_id", "certificates", ["request_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_audit_log_entity_id", "audit_log", ["entity_id"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("rate_per_minute", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40)),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response", sa.JSON),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "idempotency_keys",
        "api_keys",
        "audit_checkpoints",
        "audit_log",
        "certificates",
        "tombstones",
        "batches",
        "deletion_requests",
        "model_versions",
        "model_lines",
    ):
        op.drop_table(name)
