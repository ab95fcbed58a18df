"""Helpers for the bbolt tests: the digest gocheck prints, and a synthetic million-key writer.

Run as a script (``python bolt_support.py million OUT``) the writer measures itself in a fresh
process, so the peak RSS it prints is the writer's own and not the test session's.
"""

from __future__ import annotations

import hashlib
import json
import resource
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


if __name__ == "__main__":
    if sys.argv[1:2] != ["million"] or len(sys.argv) != 3:
        sys.exit("usage: bolt_support.py million OUT")
    start = time.perf_counter()
    count = write_million(Path(sys.argv[2]))
    seconds = time.perf_counter() - start
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"keys": count, "seconds": round(seconds, 2), "max_rss_kib": max_rss_kib}))
