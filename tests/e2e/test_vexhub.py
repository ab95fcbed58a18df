"""VEX Hub ingested whole, through the `stella` command, in two file orders.

VEX Hub reuses one OpenVEX ``@id`` across 36 documents (and another across 13, a third across
3) about different products. Every distinct document must be stored and visible in
``evidence stats``, in a json:raw export and in ``stella findings``, whatever the order the
files come in; the repository's own index files are skipped with their reason, and the shared
ids are reported as collisions.

Expected numbers come from the corpus itself (hashlib over the files), not from the code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from export_center.archive.reader import safe_extract

pytestmark = pytest.mark.slow

STELLA = str(Path(sys.executable).with_name("stella"))
VEXHUB = "aquasecurity-vexhub"
WEBHOOK = "pkg:golang/github.com/rancher/webhook@v0.4.7"
NORMAN = "pkg:golang/github.com/rancher/norman@v0.0.0-20240206180703-6eda4bc94b4c"


def _stella(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STELLA, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _documents(root: Path) -> dict[str, Path]:
    """sha256 → file of every OpenVEX document of VEX Hub (identical copies counted once)."""
    docs: dict[str, Path] = {}
    for path in sorted((root / "pkg").rglob("*.json")):
        if path.name != "manifest.json":
            docs.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return docs


def _sbom(tmp: Path) -> Path:
    """A CycloneDX SBOM of rancher/webhook v0.4.7 with the rancher/norman version that
    GO-2024-2536 (CVE-2023-32193) affects; webhook's own VEX Hub document says not_affected."""
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:00000000-0000-4000-8000-0000000000aa",
        "version": 1,
        "metadata": {
            "component": {
                "type": "application",
                "name": "github.com/rancher/webhook",
                "version": "v0.4.7",
                "purl": WEBHOOK,
            }
        },
        "components": [
            {
                "type": "library",
                "name": "github.com/rancher/norman",
                "version": "v0.0.0-20240206180703-6eda4bc94b4c",
                "purl": NORMAN,
            }
        ],
    }
    path = tmp / "webhook.cdx.json"
    path.write_bytes(orjson.dumps(doc))
    return path


@pytest.mark.parametrize("order", ["folder", "reversed-files"])
def test_vexhub_is_ingested_whole_in_any_order(corpora: Path, tmp_path: Path, order: str) -> None:
    root = corpora / VEXHUB
    documents = _documents(root)
    assert len(documents) == 57  # 59 files, the three oci.openvex.json are byte-identical
    env = {**os.environ, "STELLA_DATA_DIR": str(tmp_path / "data")}
    env.pop("STELLA_DATABASE_URL", None)

    advisory = corpora / "golang-vulndb/data/osv/GO-2024-2536.json"
    assert _stella(env, "ingest", str(advisory), "--source", "go-vulndb").returncode == 0
    if order == "folder":
        inputs = [str(root)]
    else:
        inputs = [str(p) for p in sorted(root.rglob("*.json"), reverse=True)]
    res = _stella(env, "ingest", *inputs, "--source", "vexhub", "--format", "json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["inserted"] == 57 and summary["unchanged"] == 2
    assert summary["refused"] == [] and summary["revisions"] == 0
    # index.json, vex-repository.json and 57 manifest.json (+ README.md and LICENSE in a folder)
    reasons = [s["reason"] for s in summary["skipped"]]
    assert sum(r.startswith("VEX repository manifest") for r in reasons) == 57
    assert sum(r.startswith("VEX repository index") for r in reasons) == 1
    assert sum(r.startswith("VEX repository description") for r in reasons) == 1
    assert summary["skippedFiles"] == (61 if order == "folder" else 59)
    assert summary["files"] == summary["filesRead"] + summary["skippedFiles"]
    # Three shared @ids: 36 + 13 + 3 documents, all but one of each stored apart.
    apart = [c for c in summary["collisions"] if c["kind"] == "kept-apart"]
    assert len(apart) == 35 + 12 + 2
    assert len({c["upstreamId"] for c in apart}) == 3

    stats = json.loads(_stella(env, "evidence", "stats", "--format", "json").stdout)
    rows = {(r["source"], r["type"]): r["records"] for r in stats["rows"]}
    assert rows[("vexhub", "vex")] == 57

    # json:raw export: every distinct document, byte for byte.
    assert _stella(env, "keys", "generate", "--type", "ed25519").returncode == 0
    made = _stella(env, "export", "profile", "create", "raw", "--kind", "json", "--variant", "raw")
    assert made.returncode == 0, made.stderr
    run = _stella(env, "export", "run", "raw", "--out", str(tmp_path / "out"), "--format", "json")
    assert run.returncode == 0, run.stderr
    safe_extract(Path(json.loads(run.stdout)["archive"]), tmp_path / "bundle")
    exported: set[str] = set()
    for shard in sorted((tmp_path / "bundle" / "data" / "raw" / "vex").glob("*.jsonl")):
        for line in shard.read_text().splitlines():
            rec = json.loads(line)
            if rec["source"] == "vexhub":
                exported.add(hashlib.sha256(rec["content"].encode()).hexdigest())
    assert exported == set(documents)

    # stella findings: webhook's norman finding is suppressed by webhook's own document.
    found = _stella(env, "findings", str(_sbom(tmp_path)), "--format", "json")
    assert found.returncode == 0, found.stderr
    findings = json.loads(found.stdout)["findings"]
    (norman,) = [f for f in findings if f["purl"] == NORMAN]
    assert norman["vulnerabilityId"] == "CVE-2023-32193"
    assert norman["subject"] == WEBHOOK
    assert norman["effectiveStatus"] == "not_affected"
    assert norman["vex"]["provider"] == "Rancher Security team"
    assert norman["vex"]["justification"] == "vulnerable_code_not_present"
