"""covering index for the per-type counts and per-source stats of a store state

``stats`` and ``counts`` (every plan, ``stella evidence stats``, the API's plan preview) read
``seq``, ``superseded_seq``, ``withdrawn`` and ``size`` of every visible record. In the table
those columns sit after ``content``, so a scan followed each row's overflow pages (tens of
milliseconds for the real corpora); from this index alone they take a few.

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = ["tenant", "doc_type", "source", "seq", "superseded_seq", "withdrawn", "size"]


def upgrade() -> None:
    op.create_index("ix_raw_stats", "raw_records", _COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_raw_stats", table_name="raw_records")
