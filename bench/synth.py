"""Synthetic corpus generator: scales the real OSV corpora by a factor, keeping their shape.

Each synthetic advisory is a real advisory (chosen by a seeded RNG) with new ids: the ecosystem
mix, range kinds, number of affected packages, alias chains and text lengths of the real corpora
carry over. Package names are the real ones with a numeric suffix drawn from a bounded pool, so
packages collect several advisories each, as real ones do. Deterministic for a seed.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from export_center.ingest.detect import parse_document

TEMPLATE_DIRS = (
    ("pypa-advisory-database/vulns", "*.yaml"),
    ("golang-vulndb/data/osv", "*.json"),
    ("rustsec-advisory-db-osv/crates", "*.json"),
)


def load_templates(corpora: Path) -> list[dict[str, Any]]:
    """Every OSV advisory of the PyPA, Go and RustSec corpora, parsed."""
    out: list[dict[str, Any]] = []
    for folder, pattern in TEMPLATE_DIRS:
        for path in sorted((corpora / folder).rglob(pattern)):
            # Parsed as ingest parses them: YAML timestamps stay the strings OSV writes (a bare
            # libyaml load made them datetimes, which the OSV reader refuses in `withdrawn`).
            doc = parse_document(path.read_bytes(), str(path))
            if isinstance(doc, dict) and "id" in doc:
                out.append(doc)
    return out


def _rename(value: str, k: int) -> str:
    return f"{value}-syn{k}"


def synthesize(templates: list[dict[str, Any]], n: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    """``n`` synthetic OSV advisories (dicts), deterministic for ``seed``."""
    rng = random.Random(seed)
    pool = max(1, n // 8)  # ~8 advisories per synthetic package on average
    for i in range(n):
        doc = copy.deepcopy(templates[rng.randrange(len(templates))])
        prefix = str(doc["id"]).split("-", 1)[0]
        doc["id"] = f"{prefix}-SYN-{i:07d}"
        year = 2000 + i % 27
        aliases = []
        for alias in doc.get("aliases") or ():
            if alias.startswith("CVE-"):
                aliases.append(f"CVE-{year}-{1000000 + i}")
            elif alias.startswith("GHSA-"):
                aliases.append(f"GHSA-syn{i:07d}-{alias[-4:]}")
            else:
                aliases.append(f"{alias.split('-', 1)[0]}-SYN-{i:07d}")
        doc["aliases"] = aliases
        suffix = rng.randrange(pool)
        for aff in doc.get("affected") or ():
            pkg = aff.get("package") or {}
            if "name" in pkg:
                pkg["name"] = _rename(pkg["name"], suffix)
            pkg.pop("purl", None)
        for key in ("modified", "published"):
            value = doc.get(key)
            # Missing in some templates; Go has placeholder dates.
            if not isinstance(value, str) or value.startswith("0001"):
                doc[key] = f"{year}-01-01T00:00:00Z"
        yield doc


def write_corpus(corpora: Path, out_dir: Path, n: int, seed: int = 42, per_file: int = 5000) -> int:
    """Write ``n`` synthetic advisories as OSV ``{"vulns": [...]}`` files; return how many files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    templates = load_templates(corpora)
    batch: list[dict[str, Any]] = []
    files = 0
    for doc in synthesize(templates, n, seed):
        batch.append(doc)
        if len(batch) == per_file:
            (out_dir / f"synthetic-{files:05d}.json").write_bytes(orjson.dumps({"vulns": batch}))
            files += 1
            batch = []
    if batch:
        (out_dir / f"synthetic-{files:05d}.json").write_bytes(orjson.dumps({"vulns": batch}))
        files += 1
    return files
