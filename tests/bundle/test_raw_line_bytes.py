"""``raw_line`` builds a json:raw/mirror raw line by hand (keys in sorted order, each value
serialized by orjson) instead of dumping a dict: its bytes must be exactly the dict's, for
every record of the real corpora (advisories, VEX, SBOMs) and for content that is not UTF-8."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from export_center.bundle.jsonl import raw_line
from export_center.ingest.pipeline import ingest_paths
from export_center.store.repository import EvidenceStore, RawView

FEEDS = [
    ("pypa", "pypa-advisory-database/vulns"),
    ("go-vulndb", "golang-vulndb/data/osv"),
    ("rustsec", "rustsec-advisory-db-osv/crates"),
    ("vexhub", "aquasecurity-vexhub"),
    ("ctrliq", "ctrliq-advisories"),
    ("cyclonedx", "cyclonedx-bom-examples"),
    ("bom-shelter", "chainguard-bom-shelter"),
]


def _as_dict(rec: RawView) -> bytes:
    """The line as the exporter wrote it before: a dict, keys sorted by orjson."""
    import base64

    try:
        content, encoding = rec.content.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(rec.content).decode(), "base64"
    return orjson.dumps(
        {
            "content": content,
            "contentEncoding": encoding,
            "digest": rec.digest,
            "format": rec.format,
            "mediaType": rec.media_type,
            "observationId": rec.observation_id,
            "revision": rec.revision,
            "source": rec.source,
            "supersedes": rec.supersedes,
            "upstreamId": rec.upstream_id,
            "withdrawn": rec.withdrawn,
        },
        option=orjson.OPT_SORT_KEYS,
    )


@pytest.mark.slow
def test_raw_lines_are_the_dict_bytes_on_the_real_corpora(corpora: Path, tmp_path: Path) -> None:
    store = EvidenceStore.open(f"sqlite:///{tmp_path / 'stella.db'}")
    for source, path in FEEDS:
        ingest_paths(store, [corpora / path], source=source, tenant="t", max_bytes=1 << 26)
    seq = store.current_sequence("t")
    checked: dict[str, int] = {}
    for doc_type in ("advisory", "vex", "sbom"):
        for rec, _data in store.iter_records("t", seq, doc_type=doc_type):
            assert raw_line(rec) == _as_dict(rec), rec.observation_id
            checked[doc_type] = checked.get(doc_type, 0) + 1
    assert checked["advisory"] > 8000 and checked["vex"] > 100 and checked["sbom"] > 10, checked


@pytest.mark.parametrize(
    ("content", "withdrawn", "supersedes"),
    [
        (b"\xff\xfe not UTF-8", False, None),
        ('{"s": "quote \\" backslash \\\\ tab \t nl \n é \u2028 \U0001f600"}'.encode(), True, "x"),
        (b"", False, "t:s:ID:1"),
    ],
)
def test_raw_lines_are_the_dict_bytes_for_unusual_content(
    content: bytes, withdrawn: bool, supersedes: str | None
) -> None:
    rec = RawView(
        1, "t", "s\u00e9", 'ID "1"', 2, "t:s:ID:2", "advisory", "osv", "application/json",
        "sha256:" + "0" * 64, len(content), content, withdrawn, 7, supersedes,
    )  # fmt: skip
    assert raw_line(rec) == _as_dict(rec)
    assert orjson.loads(raw_line(rec))["withdrawn"] is withdrawn
