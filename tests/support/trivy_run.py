"""Running the real Trivy fully offline: the spec's flags, in an empty network namespace when the
machine allows one (an attempt to reach the network then fails the scan instead of passing)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from export_center.trivy.dbwriter import metadata_json

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


@functools.cache
def netns_prefix() -> tuple[str, ...]:
    """``unshare --net`` when this machine lets us make an empty network namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, check=False)
    return (unshare, "--net") if probe.returncode == 0 else ()


def install_db(cache: Path, db: Path) -> None:
    """Lay out ``CACHE/db`` with ``db`` and fresh metadata (Trivy then only checks Version)."""
    (cache / "db").mkdir(parents=True, exist_ok=True)
    if db != cache / "db" / "trivy.db":
        shutil.copyfile(db, cache / "db" / "trivy.db")
    (cache / "db" / "metadata.json").write_bytes(metadata_json(AS_OF, timedelta(days=1)))


def trivy_scan(
    trivy: Path, cache: Path, target: Path, *, mode: str = "fs", list_all: bool = False
) -> tuple[dict[str, Any], str]:
    """The spec's fully offline command; returns the JSON report and Trivy's log (stderr)."""
    cmd = [
        *netns_prefix(),
        str(trivy),
        mode,
        "--cache-dir",
        str(cache),
        "--skip-db-update",
        "--skip-java-db-update",
        "--offline-scan",
        "--scanners",
        "vuln",
        "--skip-version-check",
        "--disable-telemetry",
        "--format",
        "json",
        *(["--list-all-pkgs"] if list_all else []),
        str(target),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"trivy failed on {target}:\n{proc.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return report, proc.stderr
