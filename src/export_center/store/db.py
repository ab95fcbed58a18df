"""Engine creation and schema migration (Alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from export_center.errors import ConfigError, ServiceUnavailableError, missing_extra, output_error

_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (exports) run while an ingest writes; NORMAL is durable at checkpoints.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _pool_args(url: Any, pool_size: int | None) -> dict[str, Any]:
    """Pool sizing: ``pool_size`` connections kept open (a server passes its thread count, so
    no request waits for a connection and none is closed and reopened, PRAGMAs and all, on
    the way back); a few more for a burst. SQLAlchemy's defaults (5 + 10) otherwise."""
    if pool_size is None or (
        url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    ):
        return {}
    return {"pool_size": pool_size, "max_overflow": max(4, pool_size // 4)}


def make_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """Create an engine for ``url``: ``sqlite:///path`` or ``postgresql+psycopg://...``.

    ``pool_size``: connections to keep open, at least the number of threads that use the
    database at once (default: SQLAlchemy's 5, plus 10 opened and closed as needed).

    Raises:
        ConfigError: the URL is not a URL, or names an unsupported database.
        BadInputError: the directory of a SQLite file cannot be created (a file in the way).
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        shown = re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)  # never print a password
        raise ConfigError(
            f"database URL {shown!r} is not a URL",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        ) from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise output_error(folder, "the SQLite store (STELLA_DATA_DIR)", e) from e
        engine = create_engine(url, **_pool_args(parsed, pool_size))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # psycopg 3 is our driver; accept the plain scheme users paste from elsewhere.
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, pool_pre_ping=True, **_pool_args(parsed, pool_size))
        except ImportError as e:
            raise missing_extra("postgres", "a PostgreSQL database", e) from e
    raise ConfigError(
        f"unsupported database URL scheme {parsed.drivername!r}",
        hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
    )


def unreachable(engine: Engine, cause: OperationalError) -> ServiceUnavailableError:
    """The error for a database that cannot be opened (down, refused, wrong credentials): the
    URL without its password, and the driver's first line of explanation."""
    url = engine.url.render_as_string(hide_password=True)
    reason = str(cause.orig or cause).strip().splitlines()[0]
    return ServiceUnavailableError(f"cannot open the evidence store {url}: {reason}")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
