"""Initial schema: jobs and duplicates.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouchd.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("content_key", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("rel_path", sa.Text(), nullable=False),
        sa.Column("sidecar_path", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires", UTCDateTime(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("current_step", sa.String(32), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=True),
        sa.Column("output_path", sa.Text(), nullable=True),
        sa.Column("output_sha256", sa.String(64), nullable=True),
        sa.Column("output_tmp", sa.Text(), nullable=True),
        sa.Column("archive_path", sa.Text(), nullable=True),
        sa.Column("sidecar_archive_path", sa.Text(), nullable=True),
        sa.Column("failed_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_step", sa.String(32), nullable=True),
        sa.Column("traceback_id", sa.String(16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("rule", "content_key", name="uq_jobs_rule_content"),
    )
    op.create_index("ix_jobs_state_not_before", "jobs", ["state", "not_before"])
    op.create_index(op.f("ix_jobs_sha256"), "jobs", ["sha256"])
    op.create_table(
        "duplicates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("archive_path", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_duplicates_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicates")),
    )
    op.create_index(op.f("ix_duplicates_job_id"), "duplicates", ["job_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_duplicates_job_id"), table_name="duplicates")
    op.drop_table("duplicates")
    op.drop_index(op.f("ix_jobs_sha256"), table_name="jobs")
    op.drop_index("ix_jobs_state_not_before", table_name="jobs")
    op.drop_table("jobs")
