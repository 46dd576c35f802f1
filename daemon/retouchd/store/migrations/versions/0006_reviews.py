"""The review loop: verdicts on results, inboxes paused by a person, experiment variants.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouchd.store.schema import FsPath, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("moved_from", FsPath(), nullable=True),
        sa.Column("moved_to", FsPath(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_reviews_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_reviews")),
    )
    op.create_index("ix_reviews_verdict", "reviews", ["verdict"])
    op.create_table(
        "inbox_pauses",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("rule", name=op.f("pk_inbox_pauses")),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("variant", sa.String(64), nullable=True))
        batch.add_column(sa.Column("device_seconds", sa.Float(), nullable=True))
    _backfill_device_seconds()
    op.create_index("ix_jobs_rule_variant_state", "jobs", ["rule", "variant", "state", "device_seconds"])
    op.create_index("ix_jobs_rule_id", "jobs", ["rule", "id"])
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])
    # Results routed to review/ before this revision wait for a verdict like new ones.
    op.execute(
        "INSERT INTO reviews (job_id, verdict, created_at) "
        "SELECT id, 'pending', COALESCE(finished_at, updated_at) FROM jobs WHERE state = 'review'"
    )


def _backfill_device_seconds() -> None:
    from retouchd.store.review_schema import step_seconds

    jobs = sa.table("jobs", sa.column("id", sa.Integer()), sa.column("steps", sa.JSON()),
                    sa.column("device_seconds", sa.Float()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(jobs.c.id, jobs.c.steps).where(jobs.c.steps.is_not(None))).all()
    update = jobs.update().where(jobs.c.id == sa.bindparam("job_id")).values(device_seconds=sa.bindparam("seconds"))
    for start in range(0, len(rows), 5000):
        chunk = [{"job_id": i, "seconds": step_seconds(steps)} for i, steps in rows[start:start + 5000]]
        if chunk:
            conn.execute(update, chunk)


def downgrade() -> None:
    op.drop_index("ix_jobs_state_id", table_name="jobs")
    op.drop_index("ix_jobs_rule_id", table_name="jobs")
    op.drop_index("ix_jobs_rule_variant_state", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("device_seconds")
        batch.drop_column("variant")
    op.drop_table("inbox_pauses")
    op.drop_index("ix_reviews_verdict", table_name="reviews")
    op.drop_table("reviews")
