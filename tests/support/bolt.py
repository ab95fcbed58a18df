"""Helpers for the bbolt tests: the digest gocheck prints, and a synthetic million-key writer.

Run as a script (``python -m support.bolt million OUT``) the writer measures itself in a fresh
process, so the peak RSS it prints is the writer's own and not the test session's.
"""

from __future__ import annotations

import hashlib
import json
import resource
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from export_center.model import Advisory, AffectedPackage, RangeEvent, Severity, VersionRange
from export_center.trivy.bbolt import BoltReader, BoltWriter, ReadBucket

#: Runs gocheck on a file and returns its JSON report (see conftest.py).
GoCheck = Callable[[Path], dict[str, Any]]


def _feed(h: hashlib._Hash, kind: int, key: bytes = b"", value: bytes = b"") -> None:
    # Same stream as gocheck's feed(): kind, then length-prefixed key and value.
    h.update(bytes([kind]))
    if kind == 2:
        return
    h.update(struct.pack("<I", len(key)) + key)
    if kind == 0:
        h.update(struct.pack("<Q", len(value)) + value)


def _walk(h: hashlib._Hash, bucket: ReadBucket) -> None:
    for key, value in bucket.items():
        if isinstance(value, ReadBucket):
            _feed(h, 1, key)
            _walk(h, value)
            _feed(h, 2)
        else:
            _feed(h, 0, key, value)


def digest(path: Path) -> str:
    """SHA-256 over every entry, read with our reader, in gocheck's stream format."""
    h = hashlib.sha256()
    with BoltReader(path) as reader:
        _walk(h, reader.root())
    return h.hexdigest()


MILLION_PACKAGES = 100_000
MILLION_PER_PACKAGE = 8
MILLION_VULNS = 250_000


def write_million(path: Path) -> int:
    """A Trivy-shaped file: 100,000 package buckets × 8 advisories under one feed bucket, plus
    250,000 vulnerability records: 1,050,000 keys. Returns the key count."""
    keys = 0
    with BoltWriter(path) as db:
        with db.bucket(b"pip::Synthetic Feed") as feed:
            for p in range(MILLION_PACKAGES):
                with feed.bucket(b"package-%06d" % p) as pkg:
                    for v in range(MILLION_PER_PACKAGE):
                        vid = b"CVE-2024-%06d" % ((p * 7 + v * 13) % 1_000_000)
                        pkg.put(b"%s-%d" % (vid, v), b'{"VulnerableVersions":["<%d.0"]}' % v)
                        keys += 1
        with db.bucket(b"vulnerability") as vulns:
            for i in range(MILLION_VULNS):
                vulns.put(
                    b"CVE-2024-%06d" % i,
                    b'{"Title":"synthetic %d","Description":"%s"}' % (i, b"x" * (i % 300)),
                )
                keys += 1
    return keys


def peak_rss_kib() -> int:
    """This process's peak RSS. Linux's VmHWM belongs to the process's own address space;
    ru_maxrss also counts the parent's peak when the parent forked us (it survives exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "million":
        start = time.perf_counter()
        result: dict[str, Any] = {"keys": write_million(Path(argv[1]))}
    elif len(argv) == 3 and argv[0] == "advisories":
        start = time.perf_counter()
        result = write_synthetic_db(Path(argv[1]), int(argv[2]))
    else:
        sys.exit("usage: python -m support.bolt million OUT | advisories OUT COUNT")
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["max_rss_kib"] = peak_rss_kib()
    print(json.dumps(result))


def synthetic_advisories(count: int) -> Iterator[tuple[str, Advisory]]:
    """``count`` PyPI advisories over count/4 packages, two feeds, a CVSS vector on every
    tenth: a stream for the dbwriter's bounded-memory test. Ids are emitted out of order so
    the writer's sort is exercised."""
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    for n in range(count):
        i = (n * 7919) % count  # a permutation of range(count) when count is not a multiple
        yield (
            "Feed A" if i % 2 else "Feed B",
            Advisory(
                id=f"SYN-{i:07d}",
                aliases=(f"CVE-2030-{i:07d}",),
                summary=f"synthetic advisory {i}",
                details="x" * (i % 200),
                affected=(
                    AffectedPackage(
                        purl_type="pypi",
                        name=f"Package_{i // 4:06d}",
                        ecosystem="PyPI",
                        ranges=(
                            VersionRange(
                                "ECOSYSTEM",
                                (RangeEvent("introduced", "0"), RangeEvent("fixed", f"1.{i % 50}")),
                            ),
                        ),
                    ),
                ),
                severities=(Severity("CVSS_V3", vector),) if i % 10 == 0 else (),
                references=(f"https://example.invalid/{i}",),
                published="2030-01-01T00:00:00Z",
            ),
        )


def write_synthetic_db(path: Path, count: int) -> dict[str, Any]:
    from export_center.trivy.dbwriter import write_trivy_db

    report = write_trivy_db(synthetic_advisories(count), path)
    return {
        "advisories": report.advisories,
        "entries": report.entries,
        "vulnerabilities": report.vulnerabilities,
    }


if __name__ == "__main__":
    _main(sys.argv[1:])
