"""air-gap import generations per mirror stream; document ownership per stream

Revision ID: 0007
Revises: 0005

Generations become per (tenant, stream) (a stream is the mirror profile a full bundle names,
continued by its deltas), with the delta's base sequence and the stream a generation replaced;
``airgap_stream_records`` says which stream holds each imported document.

Existing rows: before streams, a tenant had one implicit stream, whatever profile its bundles
came from. Each tenant's generations get the profile of its newest full (or reset) generation
as their stream, and every current document of the tenant is that stream's (a full import
used to replace all of them, so that is what they were).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("airgap_generations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stream", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("base_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("replaced_stream", sa.String(length=64), nullable=True))
    op.create_table(
        "airgap_stream_records",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("upstream_id", sa.String(length=512), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "source", "upstream_id"),
    )
    with op.batch_alter_table("airgap_stream_records", schema=None) as batch_op:
        batch_op.create_index("ix_airgap_stream_records", ["tenant", "stream"], unique=False)

    conn = op.get_bind()
    gens = sa.table(
        "airgap_generations",
        sa.column("id", sa.Integer),
        sa.column("tenant", sa.String),
        sa.column("profile", sa.String),
        sa.column("kind", sa.String),
        sa.column("stream", sa.String),
    )
    tenants = [r[0] for r in conn.execute(sa.select(gens.c.tenant).distinct())]
    for tenant in tenants:
        rows = conn.execute(
            sa.select(gens.c.profile, gens.c.kind)
            .where(gens.c.tenant == tenant)
            .order_by(gens.c.id.desc())
        ).all()
        full = [p for p, kind in rows if kind in ("full", "reset")]
        stream = (full or [rows[0][0]])[0]
        conn.execute(sa.update(gens).where(gens.c.tenant == tenant).values(stream=stream))
        conn.execute(
            sa.text(
                "INSERT INTO airgap_stream_records (tenant, source, upstream_id, stream) "
                "SELECT DISTINCT tenant, source, upstream_id, :stream FROM raw_records "
                "WHERE tenant = :tenant AND superseded_seq IS NULL"
            ),
            {"tenant": tenant, "stream": stream},
        )

    with op.batch_alter_table("airgap_generations", schema=None) as batch_op:
        batch_op.alter_column("stream", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("uq_airgap_generation", type_="unique")
        batch_op.create_unique_constraint(
            "uq_airgap_stream_generation", ["tenant", "stream", "generation"]
        )


def downgrade() -> None:
    # Going back to one generation sequence per tenant is only sound with one stream per tenant.
    with op.batch_alter_table("airgap_stream_records", schema=None) as batch_op:
        batch_op.drop_index("ix_airgap_stream_records")
    op.drop_table("airgap_stream_records")
    with op.batch_alter_table("airgap_generations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_airgap_stream_generation", type_="unique")
        batch_op.create_unique_constraint("uq_airgap_generation", ["tenant", "generation"])
        batch_op.drop_column("replaced_stream")
        batch_op.drop_column("base_seq")
        batch_op.drop_column("stream")
