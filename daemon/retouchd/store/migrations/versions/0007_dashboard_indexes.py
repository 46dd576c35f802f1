"""The dashboard at 100 000 jobs, and the daily summary sent once a day.

- ix_jobs_finished_at (finished_at) becomes ix_jobs_finished_at_state (finished_at, state): the last hour's
  throughput is read from the index alone;
- ix_jobs_state_finished_at, and ix_jobs_retrying (partial: queued jobs with an error): the newest failures
  and retries are the first entries of an index instead of a sort of every failed or queued job;
- summaries_sent: the local days whose summary went out (not again after a restart, nor by a second host).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouchd.store.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_finished_at_state", "jobs", ["finished_at", "state"])
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    op.create_index("ix_jobs_state_finished_at", "jobs", ["state", "finished_at", "id"])
    retrying = sa.text("state = 'queued' AND error IS NOT NULL")
    op.create_index("ix_jobs_retrying", "jobs", ["updated_at", "id"], sqlite_where=retrying, postgresql_where=retrying)
    op.create_table(
        "summaries_sent",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_summaries_sent")),
    )


def downgrade() -> None:
    op.drop_table("summaries_sent")
    op.drop_index("ix_jobs_retrying", table_name="jobs")
    op.drop_index("ix_jobs_state_finished_at", table_name="jobs")
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.drop_index("ix_jobs_finished_at_state", table_name="jobs")
