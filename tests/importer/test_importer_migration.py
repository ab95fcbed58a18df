"""Migration 0007 on SQLite and PostgreSQL: an instance that imported before streams existed
keeps working (its generations become one stream, its documents that stream's), and the
migration goes back down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from export_center.importer import generations
from export_center.signing.keyfile import FileSigner
from export_center.store import db
from support.mirror import TENANT, Instance, advisory, evidence, options


def _to(inst: Instance, revision: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with inst.store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_generations_before_streams_become_one_stream(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path, db_url: str
) -> None:
    a = make_instance("A")
    b = Instance.create(tmp_path / "B", url=db_url)
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(6)))
    full = a.export(a.profile("mirror-full", {"kind": "mirror", "variant": "full"}), signer)
    b.import_(full.archive_path, options(signer))
    # Back to the schema before streams: one generation sequence per tenant, no owners.
    _to(b, "0005", down=True)
    with b.store.engine.connect() as c:
        cols = set(c.execute(text("SELECT * FROM airgap_generations")).keys())
    assert "stream" not in cols and "export_id" in cols
    # And up again: the old rows are read as they were meant.
    _to(b, "head")
    [gen] = generations.installed(b.store, TENANT)
    assert (gen.stream, gen.generation, gen.export_id) == ("mirror-full", 1, full.export_id)
    with b.store.session() as s:
        owners = generations.owners(s, TENANT)
    assert owners == {("feed", f"ADV-{i}"): "mirror-full" for i in range(6)}
    # The stream goes on: a newer full replaces its documents (ADV-5 is gone upstream).
    a.put("feed", advisory("ADV-5", version="3.0"), advisory("NEW-1"))
    newer = a.export(
        a.profile("mirror-full", {"kind": "mirror", "variant": "full"}), signer, a.root / "o2"
    )
    got = b.import_(newer.archive_path, options(signer))
    assert (got.generation.stream, got.generation.generation) == ("mirror-full", 2)
    assert evidence(b.store) == evidence(a.store)
