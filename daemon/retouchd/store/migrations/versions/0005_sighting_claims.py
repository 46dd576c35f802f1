"""Sighting claims: with several hosts, only the host that claims a (rule, path, size, mtime) sighting
reads the file to hash it.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouchd.store.schema import UTCDateTime

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sighting_claims",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sighting_claims")),
    )
    op.create_index(op.f("ix_sighting_claims_claimed_at"), "sighting_claims", ["claimed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sighting_claims_claimed_at"), table_name="sighting_claims")
    op.drop_table("sighting_claims")
