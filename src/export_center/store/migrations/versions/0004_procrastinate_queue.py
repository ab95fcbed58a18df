"""procrastinate job queue (PostgreSQL only)

Revision ID: 0004
Revises: 0003

On PostgreSQL the worker queue is procrastinate's (docs/runbook.md): its schema is applied here so
that one migration path brings a database up to date. SQLite, the embedded default, has no queue
tables: there the in-process worker claims runs straight from ``export_runs``.

The schema applied is the one shipped with the installed procrastinate; upgrading procrastinate
across a schema change means applying its migration files (``procrastinate schema
--migrations-path``), see docs/runbook.md.
"""

from __future__ import annotations

from typing import Any

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _run_script(bind: Any, script: str) -> None:
    # Straight to the driver with no parameters at all, so that psycopg sends the script as is
    # (SQLAlchemy would pass an empty parameter list, and '%' would then read as a placeholder).
    cursor = bind.connection.cursor()
    try:
        cursor.execute(script)
    finally:
        cursor.close()


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from procrastinate.schema import SchemaManager

    _run_script(bind, SchemaManager.get_schema())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    _run_script(
        bind,
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT tablename FROM pg_tables
                     WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate_%'
            LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
            END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate_%'
            LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.sig);
            END LOOP;
            FOR r IN SELECT t.typname FROM pg_type t
                     JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate_%'
                       AND t.typtype IN ('e', 'c')
            LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
            END LOOP;
        END $$;
        """,
    )
