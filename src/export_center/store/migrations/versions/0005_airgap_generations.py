"""air-gap import generations

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "airgap_generations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("manifest_digest", sa.String(length=71), nullable=False),
        sa.Column("root_hash", sa.String(length=71), nullable=False),
        sa.Column("rerun_hash", sa.String(length=71), nullable=False),
        sa.Column("source_seq", sa.BigInteger(), nullable=False),
        sa.Column("source_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("base_export_id", sa.String(length=64), nullable=True),
        sa.Column("base_manifest_digest", sa.String(length=71), nullable=True),
        sa.Column("store_seq", sa.BigInteger(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("tuf_root", sa.Text(), nullable=False),
        sa.Column("imported_by", sa.String(length=128), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "generation", name="uq_airgap_generation"),
    )
    with op.batch_alter_table("airgap_generations", schema=None) as batch_op:
        batch_op.create_index("ix_airgap_manifest", ["tenant", "manifest_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("airgap_generations", schema=None) as batch_op:
        batch_op.drop_index("ix_airgap_manifest")
    op.drop_table("airgap_generations")
