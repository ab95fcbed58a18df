"""The importer decodes record lines as JSON (the bundle's one JSONL codec), not by their layout:
a line whose keys come in another order holds the same record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import zstandard

from export_center.signing.keyfile import FileSigner
from support.mirror import Instance, advisory, evidence, extract, options, resign, retuf


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in sorted(value, reverse=True)}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def _reorder_shard(shard: Path) -> int:
    """Rewrite every line of a zstd shard with its keys (and its data's keys) reversed."""
    lines = zstandard.ZstdDecompressor().decompress(shard.read_bytes()).splitlines()
    out = [orjson.dumps(_reversed_keys(orjson.loads(line))) for line in lines]
    assert out != lines
    shard.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"".join(x + b"\n" for x in out)))
    return len(out)


def test_lines_with_keys_in_another_order_import_the_same_records(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path
) -> None:
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(5)), advisory("GONE", withdrawn=True))
    full = a.export(a.profile("mirror-full", {"kind": "mirror", "variant": "full"}), signer)
    bundle = extract(full.archive_path, tmp_path / "bundle")
    shards = sorted((bundle / "data").glob("*/advisories/*.jsonl.zst"))
    assert [p.relative_to(bundle).as_posix() for p in shards] == [
        "data/normalized/advisories/feed.jsonl.zst",
        "data/raw/advisories/feed.jsonl.zst",
    ]
    assert [_reorder_shard(p) for p in shards] == [6, 6]
    first = zstandard.ZstdDecompressor().decompress(shards[0].read_bytes()).splitlines()[0]
    assert first.startswith(b'{"withdrawn":')  # really not the writer's sorted order
    # Signed again by the exporter's key (TUF targets, manifest, checksums): a valid bundle.
    retuf(bundle, signer)
    resign(bundle, signer)

    outcome = b.import_(bundle, options(signer))
    assert outcome.status == "imported" and outcome.stats is not None
    assert outcome.stats.added == 6
    # Same records, same bytes, same normalized JSON (in the store's canonical form).
    assert evidence(b.store) == evidence(a.store)
