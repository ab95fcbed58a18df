"""Every command, against bad input: one error line, the documented exit code, nothing changed.

The table below runs the real ``stella`` (next to ``sys.executable``) in a subprocess, on a
fresh copy of a seeded data directory, and checks what docs/cli.md promises for a refusal:

- stderr is exactly ``error: <what and where>: <why>``, optionally followed by one
  ``  hint: <what to do>`` line (ingest's per-file refusals say ``refused:`` instead: they are
  its report, one line per refused file); never a traceback;
- the exit code is the documented one (3 missing input, 4 bad input or usage, 2 verification
  failed, 5 network under ``--offline``, 6 conflict);
- nothing was stored or published: the store's content (a dump of the SQLite database), every
  file under the data directory (the quarantine and import metrics of a refused import
  excepted: keeping the refused bundle and counting the refusal is what import promises) and
  the output paths the command was given.

Besides the hand-written cases (paths, numbers, names, URLs), every command is walked for its
options: each gets ``--format xml`` and an unknown option, and each ``--tenant`` a bad name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer import _click
from typer.core import TyperGroup

from export_center.cli import main
from export_center.errors import ExitCode
from support.tools import missing

pytestmark = pytest.mark.slow  # a subprocess per case

STELLA = str(Path(sys.executable).with_name("stella"))
REPO = Path(__file__).resolve().parents[2]
DEMO_EVIDENCE = REPO / "demo" / "evidence"
DEMO_PORTAL = REPO / "demo" / "devportal"

NOT_FOUND = ExitCode.NOT_FOUND
BAD = ExitCode.BAD_INPUT
FAILED = ExitCode.VERIFICATION_FAILED
OFFLINE = ExitCode.OFFLINE_VIOLATION
CONFLICT = ExitCode.QUOTA_OR_CONFLICT

# Left out on purpose: `tokens` (its input checks belong to another change).
EXCLUDED_GROUPS = ("tokens",)

# A YAML expansion bomb: a few hundred bytes, gigabytes once aliases are expanded.
BOMB = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n"
    % ((chr(c).encode(),) * 2 + (chr(c - 1).encode(),) * 9)
    for c in range(ord("b"), ord("l"))
)


@dataclass(frozen=True)
class Case:
    """One refused command: its arguments ({placeholders} name the world's paths), the exit
    code, a fragment the error line must contain, and what it must not create."""

    argv: tuple[str, ...]
    code: ExitCode
    says: str
    creates_nothing_at: tuple[str, ...] = ()
    records_refusal: bool = False  # a refused import: quarantine/ and airgap/metrics/ may change
    prefix: str = "error: "
    env: tuple[tuple[str, str], ...] = ()  # settings from the environment


def case(argv: str, code: ExitCode, says: str, **kw: object) -> Case:
    return Case(tuple(argv.split()), code, says, **kw)  # type: ignore[arg-type]


# ---- the hand-written cases -----------------------------------------------------------------

CASES: dict[str, Case] = {
    # ingest
    "ingest/missing-path": case("ingest {missing} --source s", NOT_FOUND, "{missing}"),
    "ingest/one-of-two-missing": case(
        "ingest {advisories} {missing} --source s", NOT_FOUND, "{missing}"
    ),
    "ingest/unreadable": case("ingest {unreadable} --source s", BAD, "not readable"),
    "ingest/alias-bomb": case("ingest {bomb} --source s", BAD, "anchor", prefix="refused: "),
    "ingest/garbage": case("ingest {garbage} --source s", BAD, "malformed", prefix="refused: "),
    "ingest/bad-source": case("ingest {advisories} --source a/b", BAD, "source name"),
    "ingest/no-jobs": case("ingest {advisories} --source s --jobs 0", BAD, "--jobs"),
    # findings
    "findings/policy-missing": case("findings {sbom} --policy {missing}", NOT_FOUND, "{missing}"),
    "findings/policy-dir": case("findings {sbom} --policy {dir}", BAD, "directory"),
    "findings/policy-unreadable": case("findings {sbom} --policy {unreadable}", BAD, "policy"),
    "findings/policy-bomb": case("findings {sbom} --policy {bomb}", BAD, "anchor"),
    "findings/policy-garbage": case("findings {sbom} --policy {garbage}", BAD, "{garbage}"),
    "findings/policy-endless": case("findings {sbom} --policy /dev/zero", BAD, "limit"),
    "findings/sbom-garbage": case("findings {garbage_json}", BAD, "{garbage_json}"),
    "findings/sbom-dir": case("findings {dir}", BAD, "directory"),
    "findings/unknown-subject": case("findings no-such-subject", NOT_FOUND, "no-such-subject"),
    "findings/as-of-future": case("findings {sbom} --as-of 999999", NOT_FOUND, "999999"),
    "findings/as-of-negative": case("findings {sbom} --as-of -1", BAD, "--as-of"),
    # serve and worker: refused before anything listens or runs
    "serve/port-too-high": case("serve --port 99999", BAD, "--port"),
    "serve/port-zero": case("serve --port 0", BAD, "--port"),
    "serve/port-text": case("serve --port http", BAD, "--port"),
    "serve/port-busy": case("serve --port {busy_port}", BAD, "in use"),
    "serve/host-foreign": case("serve --host 192.0.2.1 --port 8080", BAD, "192.0.2.1"),
    "serve/log-level": case("serve --log-level loud", BAD, "--log-level"),
    "serve/concurrency-zero": case("serve --concurrency 0", BAD, "--concurrency"),
    "worker/concurrency-zero": case("worker --concurrency 0", BAD, "--concurrency"),
    "worker/concurrency-negative": case("worker --concurrency -3", BAD, "--concurrency"),
    "worker/metrics-port-too-high": case("worker --metrics-port 70000", BAD, "--metrics-port"),
    "worker/metrics-port-busy": case("worker --metrics-port {busy_port}", BAD, "in use"),
    "worker/drain-negative": case("worker --drain-seconds -1", BAD, "--drain-seconds"),
    "worker/log-level": case("worker --log-level LOUDER", BAD, "--log-level"),
    # evidence
    "evidence/show-missing": case("evidence show NOPE-0000", NOT_FOUND, "NOPE-0000"),
    # keys
    "keys/generate-type": case("keys generate --type rsa", BAD, "--type"),
    "keys/generate-out-file": case("keys generate --out {garbage}", BAD, "{garbage}"),
    "keys/generate-out-under-file": case(
        "keys generate --out {garbage}/keys", BAD, "{garbage}/keys"
    ),
    "keys/generate-passphrase-unset": case(
        "keys generate --passphrase-env STELLA_TEST_UNSET_VARIABLE",
        BAD,
        "STELLA_TEST_UNSET_VARIABLE",
    ),
    "keys/list-key-dir-file": case("keys list --key-dir {garbage}", BAD, "{garbage}"),
    "keys/list-key-dir-missing": case("keys list --key-dir {missing}", NOT_FOUND, "{missing}"),
    "keys/export-unknown": case("keys export-public deadbeef", NOT_FOUND, "deadbeef"),
    # export plan / run
    "plan/missing-profile": case("export plan no-such-profile", NOT_FOUND, "no-such-profile"),
    "plan/archived": case("export plan retired", CONFLICT, "archived"),
    "plan/revision": case("export plan nightly --revision 99", NOT_FOUND, "99"),
    "run/out-file": case("export run nightly --out {garbage}", BAD, "{garbage}"),
    "run/out-under-file": case(
        "export run nightly --out {garbage}/bundles", BAD, "{garbage}/bundles"
    ),
    "run/out-proc": case(
        "export run nightly --out /proc/stella-out",
        BAD,
        "/proc/stella-out",
        creates_nothing_at=("/proc/stella-out",),
    ),
    "run/no-out": case("export run nightly", BAD, "--out"),
    "run/missing-profile": case(
        "export run no-such-profile --out {out}",
        NOT_FOUND,
        "no-such-profile",
        creates_nothing_at=("{out}",),
    ),
    "run/archived": case(
        "export run retired --out {out}", CONFLICT, "archived", creates_nothing_at=("{out}",)
    ),
    "run/as-of-future": case(
        "export run nightly --out {out} --as-of 999999",
        NOT_FOUND,
        "999999",
        creates_nothing_at=("{out}",),
    ),
    "run/revision": case(
        "export run nightly --out {out} --revision 7",
        NOT_FOUND,
        "7",
        creates_nothing_at=("{out}",),
    ),
    "run/server-not-a-url": case(
        "export run nightly --server example.com --token t", BAD, "example.com"
    ),
    "run/server-bad-port": case(
        "export run nightly --server http://example.com:http --token t", BAD, "example.com"
    ),
    "run/server-no-token": case("export run nightly --server http://127.0.0.1:9", BAD, "--token"),
    "run/offline-server": case(
        "--offline export run nightly --server https://export.example.com --token t",
        OFFLINE,
        "export.example.com",
    ),
    # export verify / push / watch / download
    "verify/missing": case("export verify {missing} --trust-roots {trust}", NOT_FOUND, "{missing}"),
    "verify/trust-missing": case(
        "export verify {bundle} --trust-roots {missing}", NOT_FOUND, "{missing}"
    ),
    "verify/trust-dir": case("export verify {bundle} --trust-roots {dir}", BAD, "directory"),
    "verify/trust-unreadable": case(
        "export verify {bundle} --trust-roots {unreadable}", BAD, "{unreadable}"
    ),
    "verify/trust-endless": case("export verify {bundle} --trust-roots /dev/zero", BAD, "limit"),
    "verify/trust-garbage": case(
        "export verify {bundle} --trust-roots {garbage}", FAILED, "no PEM public key"
    ),
    "verify/garbage-bundle": case(
        "export verify {garbage} --trust-roots {trust}", FAILED, "verification failed"
    ),
    "verify/empty-dir": case(
        "export verify {dir} --trust-roots {trust}", FAILED, "verification failed"
    ),
    "push/missing": case("export push {missing} oci:{out}", NOT_FOUND, "{missing}"),
    "push/bad-target": case("export push {bundle} ftp://example.com/x", BAD, "ftp://example.com"),
    "push/layout-under-file": case(
        "export push {bundle} oci:{garbage}/layout", BAD, "{garbage}/layout"
    ),
    "push/offline": case(
        "export push {bundle} oci://registry.example.com/stella/x:1 --offline",
        OFFLINE,
        "registry.example.com",
    ),
    "watch/missing-run": case(
        "export watch 00000000-0000-0000-0000-000000000000", NOT_FOUND, "00000000"
    ),
    "download/no-server": case("export download some-run --out {out}", BAD, "--server"),
    "download/out-file": case(
        "export download some-run --out {garbage} --server http://127.0.0.1:9 --token t",
        BAD,
        "{garbage}",
    ),
    "download/offline": case(
        "export download some-run --out {out} --server http://127.0.0.1:9 --token t --offline",
        OFFLINE,
        "127.0.0.1",
        creates_nothing_at=("{out}",),
    ),
    # export profile
    "profile/create-bad-name": case(
        "export profile create Bad_Name --kind json --variant raw", BAD, "Bad_Name"
    ),
    "profile/create-existing": case(
        "export profile create nightly --kind json --variant raw", CONFLICT, "nightly"
    ),
    "profile/create-file-missing": case(
        "export profile create fresh --file {missing}", NOT_FOUND, "{missing}"
    ),
    "profile/create-file-dir": case("export profile create fresh --file {dir}", BAD, "directory"),
    "profile/create-file-unreadable": case(
        "export profile create fresh --file {unreadable}", BAD, "{unreadable}"
    ),
    "profile/create-file-bomb": case("export profile create fresh --file {bomb}", BAD, "anchor"),
    "profile/create-file-garbage-yaml": case(
        "export profile create fresh --file {garbage}", BAD, "{garbage}"
    ),
    "profile/create-file-garbage-json": case(
        "export profile create fresh --file {garbage_json}", BAD, "{garbage_json}"
    ),
    "profile/create-file-endless": case(
        "export profile create fresh --file /dev/zero", BAD, "limit"
    ),
    "profile/create-kind": case(
        "export profile create fresh --kind xml --variant raw", BAD, "kind"
    ),
    "profile/create-level": case(
        "export profile create fresh --kind json --variant raw --level 99", BAD, "level"
    ),
    "profile/create-offline-server": case(
        "export profile create fresh --kind json --variant raw --server https://x.example.com "
        "--token t --offline",
        OFFLINE,
        "x.example.com",
    ),
    "profile/revise-missing": case(
        "export profile revise nope-profile --level 3", NOT_FOUND, "nope"
    ),
    "profile/revise-archived": case(
        "export profile revise retired --level 3", CONFLICT, "archived"
    ),
    "profile/revise-file-missing": case(
        "export profile revise nightly --file {missing}", NOT_FOUND, "{missing}"
    ),
    "profile/show-missing": case("export profile show nope-profile", NOT_FOUND, "nope-profile"),
    "profile/show-revision": case("export profile show nightly --revision 9", NOT_FOUND, "9"),
    "profile/archive-missing": case("export profile archive nope-profile", NOT_FOUND, "nope"),
    # airgap
    "airgap/verify-missing": case(
        "airgap verify-bundle {missing} --trust-roots {trust}", NOT_FOUND, "{missing}"
    ),
    "airgap/verify-garbage": case(
        "airgap verify-bundle {garbage} --trust-roots {trust}", FAILED, "verification failed"
    ),
    "airgap/verify-trust-missing": case(
        "airgap verify-bundle {bundle} --trust-roots {missing}", NOT_FOUND, "{missing}"
    ),
    "airgap/verify-identity-missing": case(
        "airgap verify-bundle {bundle} --trust-roots {trust} --identity {missing}",
        NOT_FOUND,
        "{missing}",
    ),
    "airgap/verify-tuf-root-missing": case(
        "airgap verify-bundle {bundle} --trust-roots {trust} --tuf-root {missing}",
        NOT_FOUND,
        "{missing}",
    ),
    "airgap/verify-offline": case(
        "--offline airgap verify-bundle oci://registry.example.com/m/x:1 --trust-roots {trust}",
        OFFLINE,
        "registry.example.com",
    ),
    "airgap/import-missing": case(
        "airgap import {missing} --trust-roots {trust}", NOT_FOUND, "{missing}"
    ),
    # keys of tenants, HSM keys, KMS ids (operator commands)
    "keys/assign-unknown": case("keys assign 0000 --tenant default", NOT_FOUND, "no key '0000'"),
    "keys/unassign-unknown": case(
        "keys unassign 0000 --tenant default", NOT_FOUND, "no key '0000'"
    ),
    "keys/register-pkcs11-no-module": case(
        "keys register-pkcs11 --token t --object o --tenant default", BAD, "no PKCS#11 module"
    ),
    "keys/assign-kms-not-kms": case(
        "keys assign-kms not-a-kms --tenant default", BAD, "not a KMS key id"
    ),
    "keys/unassign-kms-unknown": case(
        "keys unassign-kms kms://pkcs11/t/k --tenant default", NOT_FOUND, "no KMS key"
    ),
    # stored policies
    "policy/upload-missing": case("policy upload gate {missing}", NOT_FOUND, "{missing}"),
    "policy/upload-bomb": case("policy upload gate {bomb}", BAD, "anchors and aliases"),
    "policy/upload-garbage": case("policy upload gate {garbage_json}", BAD, "gate"),
    "policy/show-unknown": case("policy show nope", NOT_FOUND, "no policy 'nope'"),
    # quarantine, kits
    "airgap/quarantine-purge-unknown": case(
        "airgap quarantine purge no-such-entry", NOT_FOUND, "no quarantine entry"
    ),
    "kit/build-missing": case("kit build {missing}", NOT_FOUND, "{missing}"),
    "kit/verify-not-a-kit": case("kit verify {dir}", BAD, "neither a kit part"),
    "kit/import-not-a-kit": case("kit import {dir}", BAD, "neither a kit part"),
    "airgap/import-garbage": case(
        "airgap import {garbage} --trust-roots {trust}", FAILED, "{garbage}", records_refusal=True
    ),
    "airgap/import-identity-dir": case(
        "airgap import {bundle} --trust-roots {trust} --identity {dir}", BAD, "directory"
    ),
    "airgap/import-trust-unreadable": case(
        "airgap import {bundle} --trust-roots {unreadable}", BAD, "{unreadable}"
    ),
    "airgap/import-offline": case(
        "airgap import oci://registry.example.com/m/x:1 --trust-roots {trust} --offline",
        OFFLINE,
        "registry.example.com",
    ),
    "airgap/status-nothing-imported": case("airgap status --tenant acme", NOT_FOUND, "acme"),
    "airgap/trivy-cache-file": case(
        "airgap trivy-install {bundle} --cache-dir {garbage} --trust-roots {trust}",
        BAD,
        "{garbage}",
    ),
    "airgap/trivy-cache-under-file": case(
        "airgap trivy-install {bundle} --cache-dir {garbage}/cache --trust-roots {trust}",
        BAD,
        "{garbage}/cache",
    ),
    "airgap/trivy-missing": case(
        "airgap trivy-install {missing} --cache-dir {out} --trust-roots {trust}",
        NOT_FOUND,
        "{missing}",
        creates_nothing_at=("{out}",),
    ),
    "airgap/trivy-not-trivy": case(
        "airgap trivy-install {bundle} --cache-dir {out} --trust-roots {trust}",
        FAILED,
        "trivy",
        creates_nothing_at=("{out}",),
        records_refusal=True,  # the refusal is counted in the import metrics
    ),
    "airgap/trivy-offline": case(
        "airgap trivy-install oci://registry.example.com/t/db:2 --cache-dir {out} "
        "--trust-roots {trust} --offline",
        OFFLINE,
        "registry.example.com",
        creates_nothing_at=("{out}",),
    ),
    # devportal
    "devportal/build-out-file": case("devportal build {portal} --out {garbage}", BAD, "{garbage}"),
    "devportal/build-input-missing": case(
        "devportal build {missing} --out {out}",
        NOT_FOUND,
        "{missing}",
        creates_nothing_at=("{out}",),
    ),
    "devportal/build-input-file": case(
        "devportal build {garbage} --out {out}", BAD, "{garbage}", creates_nothing_at=("{out}",)
    ),
    "devportal/build-profile-missing": case(
        "devportal build --profile {missing} --out {out}",
        NOT_FOUND,
        "{missing}",
        creates_nothing_at=("{out}",),
    ),
    "devportal/build-profile-garbage": case(
        "devportal build --profile {garbage} --out {out}",
        BAD,
        "{garbage}",
        creates_nothing_at=("{out}",),
    ),
    "devportal/build-profile-endless": case(
        "devportal build --profile /dev/zero --out {out}",
        BAD,
        "limit",
        creates_nothing_at=("{out}",),
    ),
    "devportal/build-metadata": case(
        "devportal build {portal} --out {out} --metadata novalue",
        BAD,
        "novalue",
        creates_nothing_at=("{out}",),
    ),
    "devportal/build-generated-at": case(
        "devportal build {portal} --out {out} --generated-at yesterday",
        BAD,
        "yesterday",
        creates_nothing_at=("{out}",),
    ),
    "devportal/build-key": case(
        "devportal build {portal} --out {out} --key deadbeef",
        NOT_FOUND,
        "deadbeef",
        creates_nothing_at=("{out}",),
    ),
    "devportal/verify-missing": case(
        "devportal verify {missing} --trust-roots {trust}", NOT_FOUND, "{missing}"
    ),
    "devportal/verify-garbage": case(
        "devportal verify {garbage} --trust-roots {trust}", FAILED, "{garbage}"
    ),
    "devportal/verify-trust-missing": case(
        "devportal verify {garbage} --trust-roots {missing}", NOT_FOUND, "{missing}"
    ),
    # settings from the environment: refused before any command touches anything
    "settings/data-dir-is-a-file": case(
        "evidence stats", BAD, "{garbage}", env=(("STELLA_DATA_DIR", "{garbage}"),)
    ),
    "settings/data-dir-in-proc": case(
        "evidence stats",
        BAD,
        "/proc/stella-data",
        env=(("STELLA_DATA_DIR", "/proc/stella-data"),),
        creates_nothing_at=("/proc/stella-data",),
    ),
    "settings/database-url": case(
        "evidence stats",
        BAD,
        "not a URL",
        env=(("STELLA_DATABASE_URL", "postgresql://me:s3cret@db:port/x"),),
    ),
    "settings/database-down": case(
        "evidence stats",
        ExitCode.UNEXPECTED,
        "127.0.0.1:9",
        env=(("STELLA_DATABASE_URL", "postgresql+psycopg://me:s3cret@127.0.0.1:9/x"),),
    ),
    "settings/config-missing": case(
        "evidence stats", NOT_FOUND, "{missing}", env=(("STELLA_CONFIG", "{missing}"),)
    ),
    "settings/config-garbage": case(
        "evidence stats", BAD, "{garbage}", env=(("STELLA_CONFIG", "{garbage}"),)
    ),
    "settings/default-tenant": case(
        "export plan nightly", BAD, "BAD!", env=(("STELLA_DEFAULT_TENANT", "BAD!"),)
    ),
    "settings/max-document-bytes": case(
        "ingest {advisories} --source s",
        BAD,
        "max_document_bytes",
        env=(("STELLA_MAX_DOCUMENT_BYTES", "lots"),),
    ),
    "settings/offline-value": case(
        "evidence stats", BAD, "--offline", env=(("STELLA_OFFLINE", "maybe"),)
    ),
    # the top level
    "stella/unknown-command": case("bogus", BAD, "bogus"),
    "stella/format-before": case("--format xml evidence stats", BAD, "xml"),
}

# Arguments with which each command would run: the generated cases add one bad option to
# them, so that the bad option is the only thing wrong.
VALID: dict[str, str] = {
    "ingest": "{advisories} --source s",
    "findings": "{sbom}",
    "serve": "",
    "worker": "",
    "evidence stats": "",
    "evidence show": "DEMO-2026-0001",
    "keys generate": "",
    "keys list": "",
    "keys export-public": "{keyid}",
    "keys assign": "{keyid} --tenant default",
    "keys unassign": "{keyid} --tenant default",
    "keys register-pkcs11": "--token t --object o --tenant default",
    "keys assign-kms": "kms://pkcs11/t/k --tenant default",
    "keys unassign-kms": "kms://pkcs11/t/k --tenant default",
    "keys list-kms": "",
    "policy upload": "gate {policy}",
    "policy list": "",
    "policy show": "gate",
    "export plan": "nightly",
    "export run": "nightly --out {out}",
    "export verify": "{bundle} --trust-roots {trust}",
    "export push": "{bundle} oci:{out}",
    "export watch": "00000000-0000-0000-0000-000000000000",
    "export download": "some-run --out {out}",
    "export profile create": "fresh --kind json --variant raw",
    "export profile revise": "nightly --level 5",
    "export profile list": "",
    "export profile show": "nightly",
    "export profile archive": "nightly",
    "airgap verify-bundle": "{bundle} --trust-roots {trust}",
    "airgap import": "{bundle} --trust-roots {trust}",
    "airgap status": "",
    "airgap list": "",
    "airgap quarantine list": "",
    "airgap quarantine purge": "--all",
    "airgap trivy-install": "{bundle} --cache-dir {out} --trust-roots {trust}",
    "kit build": "{bundle} --out {out}",
    "kit verify": "{dir}",
    "kit import": "{dir}",
    "devportal build": "{portal} --out {out}",
    "devportal verify": "{garbage} --trust-roots {trust}",
}


def leaf_commands() -> Iterator[tuple[str, _click.Command]]:
    """Every command of the table in cli/main.py, by its full name ("export profile create")."""

    def walk(name: str, command: _click.Command) -> Iterator[tuple[str, _click.Command]]:
        if isinstance(command, TyperGroup):
            for sub_name, sub in command.commands.items():
                yield from walk(f"{name} {sub_name}", sub)
        else:
            yield name, command

    for entry in main.COMMANDS:
        if entry.name not in EXCLUDED_GROUPS:
            yield from walk(entry.name, main.load_command(entry))


def _generated() -> dict[str, Case]:
    out: dict[str, Case] = {}
    for name, command in leaf_commands():
        valid = VALID[name]
        key = name.replace(" ", "-")
        opts = {o for p in command.params for o in p.opts}
        out[f"{key}/format-xml"] = case(f"{name} {valid} --format xml", BAD, "xml")
        out[f"{key}/unknown-option"] = case(f"{name} {valid} --colour", BAD, "--colour")
        if "--tenant" in opts:
            out[f"{key}/tenant"] = case(f"{name} {valid} --tenant BAD!", BAD, "BAD!")
    return out


ALL_CASES = {**CASES, **_generated()}


# ---- the world every case runs in -----------------------------------------------------------


@dataclass
class World:
    template: Path  # data/ (the store, keys) and inputs/ (files the cases name)
    names: dict[str, str] = field(default_factory=dict)  # placeholders, relative to a case dir


def _unreadable(path: Path) -> Path:
    """A file that exists and cannot be read. chmod 000 does it, except for root; then a
    write-only kernel file, which root cannot read either."""
    path.write_text("{}")
    path.chmod(0)
    for candidate in (path, Path("/proc/sys/vm/compact_memory"), Path("/proc/sysrq-trigger")):
        try:
            candidate.open("rb").close()
        except PermissionError:
            return candidate
        except OSError:
            continue
    missing("an unreadable file (chmod 000 as non-root, or /proc/sys/vm/compact_memory)")


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, busy_port: int) -> World:
    """A data directory with evidence, a key, a profile (and an archived one) and a bundle;
    input files of every bad kind next to it."""
    from export_center.exporter import run_export
    from export_center.ingest.pipeline import ingest_paths
    from export_center.planner.profiles import parse_profile_spec
    from export_center.planner.registry import ProfileRegistry
    from export_center.settings import load_settings
    from export_center.signing.interface import KeyType
    from export_center.signing.keystore import KeyStore
    from export_center.store.repository import EvidenceStore

    template = tmp_path_factory.mktemp("bad-input") / "case"
    data, inputs = template / "data", template / "inputs"
    inputs.mkdir(parents=True)
    settings = load_settings(env={"STELLA_DATA_DIR": str(data), "STELLA_CONFIG": ""})
    key = KeyStore(settings.key_dir).generate(KeyType.ED25519, tenants=["default"])
    store = EvidenceStore.open(settings.database_url)
    try:
        for kind in ("advisories", "vex", "sboms"):
            ingest_paths(
                store,
                [DEMO_EVIDENCE / kind],
                source=f"demo-{kind}",
                tenant="default",
                max_bytes=settings.max_document_bytes,
            )
        registry = ProfileRegistry(store)
        raw = parse_profile_spec({"kind": "json", "variant": "raw"})
        registry.create("default", "nightly", raw)
        registry.create("default", "retired", raw)
        registry.archive("default", "retired")
        bundle = run_export(
            settings, store, registry.get("default", "nightly"), inputs / "bundles"
        ).bundle.archive_path
    finally:
        store.engine.dispose()
    (inputs / "trust.pem").write_bytes(KeyStore(settings.key_dir).export_public(key.keyid))
    (inputs / "garbage.yaml").write_bytes(b"a: [unclosed\n\x00\xff")
    (inputs / "garbage.json").write_bytes(b'{"not": "evidence",')
    (inputs / "bomb.yaml").write_bytes(BOMB)
    (inputs / "policy.yaml").write_text('apiVersion: stella.policy/v1\nname: gate\nversion: "1"\n')
    (inputs / "empty-dir").mkdir()
    # Outside the template: copying it for each case would fail on it.
    unreadable = _unreadable(tmp_path_factory.mktemp("unreadable") / "unreadable.json")
    names = {
        "missing": "inputs/no-such-file.json",
        "dir": "inputs/empty-dir",
        "garbage": "inputs/garbage.yaml",
        "garbage_json": "inputs/garbage.json",
        "bomb": "inputs/bomb.yaml",
        "policy": "inputs/policy.yaml",
        "trust": "inputs/trust.pem",
        "bundle": str(bundle.relative_to(template)),
        "unreadable": str(unreadable),
        "out": "out/bundles",
        "advisories": str(DEMO_EVIDENCE / "advisories"),
        "sbom": str(DEMO_EVIDENCE / "sboms" / "demo-app.cdx.json"),
        "portal": str(DEMO_PORTAL),
        "keyid": key.keyid,
        "busy_port": str(busy_port),
    }
    return World(template, names)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    changed: list[str]  # what differs in the store or the data directory
    created: list[str]  # output paths that now exist


def _fill(text: str, names: dict[str, str]) -> str:
    return text.format(**names)


def _store_digest(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def _snapshot(data: Path, *, quarantine_ok: bool) -> dict[str, str]:
    """Every file under the data directory with its digest; the store by its content."""
    out: dict[str, str] = {}
    for path in sorted(data.rglob("*")):
        rel = str(path.relative_to(data))
        if path.is_dir() or rel.endswith(("-wal", "-shm", "-journal")):
            continue
        # A refused import is kept in quarantine/ and counted in the import metrics.
        if quarantine_ok and rel.startswith(("quarantine/", "airgap/metrics/")):
            continue
        if path.name == "stella.db":
            out[rel] = _store_digest(path)
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _run_case(world: World, name: str, c: Case, root: Path) -> Outcome:
    where = root / name.replace("/", "--")
    shutil.copytree(world.template, where, symlinks=True)
    data = where / "data"
    before = _snapshot(data, quarantine_ok=c.records_refusal)
    argv = [_fill(a, world.names) for a in c.argv]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STELLA_") and k not in ("COLUMNS", "LINES")
    }
    env |= {"STELLA_DATA_DIR": str(data), "STELLA_CONFIG": "", "COLUMNS": "300"}
    env |= {name: _fill(value, world.names) for name, value in c.env}
    proc = subprocess.run(
        [STELLA, *argv],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    after = _snapshot(data, quarantine_ok=c.records_refusal)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    outputs = [_fill(p, world.names) for p in c.creates_nothing_at]
    created = [p for p in outputs if (where / p).exists()]
    return Outcome(proc.returncode, proc.stdout, proc.stderr, changed, created)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_refused(name: str, world: World, tmp_path: Path) -> None:
    c = ALL_CASES[name]
    got = _run_case(world, name, c, tmp_path)
    says = _fill(c.says, world.names)
    detail = f"exit {got.code}\nstderr:\n{got.stderr}\nstdout:\n{got.stdout[-2000:]}"
    assert "Traceback" not in got.stderr, detail
    lines = got.stderr.splitlines()
    assert len(lines) in (1, 2), detail
    assert lines[0].startswith(c.prefix), detail
    assert says in lines[0], detail
    if len(lines) == 2:
        assert lines[1].startswith("  hint: "), detail
    assert got.code == c.code, detail
    assert got.changed == [], detail
    assert got.created == [], detail
    assert "s3cret" not in got.stderr  # a password in a URL is never printed


# Commands whose only inputs are the options every command gets generated cases for.
ONLY_GENERATED = {
    "export profile list",
    "airgap list",
    "airgap quarantine list",
    "keys list-kms",
    "policy list",
}


def test_every_command_is_in_the_table() -> None:
    """A new command needs its row in VALID (and so gets the generated cases), and cases of
    its own for its arguments, or this fails."""
    names = {name for name, _ in leaf_commands()}
    assert names == set(VALID)
    covered = {n for n in names for c in CASES.values() if _command_of(c.argv) == n}
    assert names - covered == ONLY_GENERATED


def _command_of(argv: tuple[str, ...]) -> str:
    words = [a for a in argv if not a.startswith("-")]
    for size in (3, 2, 1):
        if " ".join(words[:size]) in VALID:
            return " ".join(words[:size])
    return ""
