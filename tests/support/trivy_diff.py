"""Differential check: the real Trivy with our trivy.db against our own matcher.

For every package the corpora's advisories name (PyPA, Go, RustSec, and the osv.dev GHSA records
for npm and Maven) and every version that matters for it (each version an advisory lists, each
introduced / fixed / last_affected / limit boundary, and a version just below and just above each
boundary), lock files are written in each ecosystem's real format (requirements.txt, go.mod,
Cargo.lock, package-lock.json v3, gradle.lockfile). The real Trivy scans them fully offline with a
trivy.db built from the same advisories; our matcher (:func:`export_center.policy.match_component`,
what ``stella findings`` and json:policy run) matches the same components. Every
(component, vulnerability) found by one and not the other is a difference; a difference that a
documented Trivy limitation explains is counted under that reason (:data:`EXCEPTIONS`), every
other one is reported as unexplained.

Run the whole sweep with ``scripts/trivy-diff`` (``python -m support.trivy_diff`` with tests/ on
the path); ``--sample N`` takes N packages per ecosystem (a fixed, sorted sample).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from packageurl import PackageURL

from export_center.model import Advisory, Component
from export_center.policy.matching import AdvisoryIndex, match_component
from export_center.policy.purls import normalize_name
from export_center.policy.versions import parse_version
from export_center.trivy.dbwriter import TrivyDbReport, write_trivy_db
from support.osv import FEEDS, corpus_advisories
from support.trivy_run import install_db, trivy_scan

#: OSV ecosystem → (our short name, purl type, lock file name)
ECOSYSTEMS: Final = {
    "PyPI": ("pip", "pypi", "requirements.txt"),
    "Go": ("go", "golang", "go.mod"),
    "crates.io": ("cargo", "cargo", "Cargo.lock"),
    "npm": ("npm", "npm", "package-lock.json"),
    "Maven": ("maven", "maven", "gradle.lockfile"),
}
#: Trivy's Result.Type of each lock file.
TRIVY_TYPES: Final = {
    "pip": "pip",
    "go": "gomod",
    "cargo": "cargo",
    "npm": "npm",
    "maven": "gradle",
}
#: Components per lock file.
CHUNK: Final = 2000

#: Why a difference is not a defect of our DB: reason key → the explanation docs/trivy.md gives.
EXCEPTIONS: Final = {
    "pip-version-not-pep440": (
        "the pinned version is not PEP 440 (0.3.2d, 0.1-bulbasaur): Trivy's requirements.txt "
        "parser drops the pin, so Trivy never sees the package; we match it by the advisory's "
        "listed version string"
    ),
    "go-module-path": (
        "not a version go.mod accepts for this module path (a v2+ version without /vN or "
        "+incompatible): no go.mod can pin it, so it is not generated"
    ),
    "go-stdlib": (
        "stdlib and toolchain: Trivy reads the Go standard library only from a Go binary's "
        "build information, never from go.mod, so no lock file can pin it"
    ),
}


@dataclass(frozen=True)
class Probe:
    """One component written into a lock file."""

    eco: str
    name: str  # as the lock file spells it
    version: str
    purl: str
    why: str  # listed, introduced, fixed, last_affected, limit, below, below-pre, above, pseudo


@dataclass
class Result:
    """The sweep's figures and every difference."""

    packages: Counter[str] = field(default_factory=Counter)
    probes: Counter[str] = field(default_factory=Counter)
    not_generated: Counter[str] = field(default_factory=Counter)
    read_by_trivy: Counter[str] = field(default_factory=Counter)
    ours: Counter[str] = field(default_factory=Counter)
    trivy: Counter[str] = field(default_factory=Counter)
    agreed: Counter[str] = field(default_factory=Counter)
    explained: Counter[str] = field(default_factory=Counter)
    unexplained: list[dict[str, Any]] = field(default_factory=list)
    trivy_warnings: list[str] = field(default_factory=list)
    db: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "packages": dict(self.packages),
            "versions": dict(self.probes),
            "notGenerated": dict(self.not_generated),
            "componentsReadByTrivy": dict(self.read_by_trivy),
            "findings": {"ours": dict(self.ours), "trivy": dict(self.trivy)},
            "agreed": dict(self.agreed),
            "explained": dict(self.explained),
            "unexplained": self.unexplained,
            "trivyWarnings": self.trivy_warnings,
            "db": self.db,
            "seconds": self.seconds,
        }


# ---- advisories and packages ----------------------------------------------------------------


def load_advisories(corpora: Path) -> list[tuple[str, Advisory]]:
    return list(corpus_advisories(corpora, FEEDS))


def _identity(purl_type: str, name: str) -> tuple[str, str]:
    return purl_type, normalize_name(purl_type, name)


def packages_of(
    advisories: Iterable[tuple[str, Advisory]],
) -> dict[tuple[str, str], dict[str, set[tuple[str, str]]]]:
    """(eco, advisory spelling of the name) → {"events": {(kind, version)}, "listed": {(v, "")}}
    over every non-withdrawn advisory of the five ecosystems."""
    out: dict[tuple[str, str], dict[str, set[tuple[str, str]]]] = {}
    for _feed, adv in advisories:
        if adv.withdrawn:
            continue
        for pkg in adv.affected:
            spec = ECOSYSTEMS.get(pkg.ecosystem)
            if spec is None:
                continue
            slot = out.setdefault((spec[0], pkg.name), {"events": set(), "listed": set()})
            for rng in pkg.ranges:
                if rng.type.upper() == "GIT":
                    continue
                for ev in rng.events:
                    if (ev.kind, ev.version) not in (("introduced", "0"), ("limit", "*")):
                        slot["events"].add((ev.kind, ev.version))
            slot["listed"].update((v, "") for v in pkg.versions)
    return out


# ---- versions that matter -------------------------------------------------------------------

_RELEASE = re.compile(r"^(v?)(\d+(?:\.\d+)*)(.*)$")
_SEMVER_ECOS = ("go", "cargo", "npm")


def _release(version: str) -> tuple[str, list[int], str] | None:
    m = _RELEASE.match(version)
    if m is None:
        return None
    return m.group(1), [int(p) for p in m.group(2).split(".")], m.group(3)


def _spell(eco: str, prefix: str, parts: list[int], keep: str = "") -> str:
    if eco in _SEMVER_ECOS:
        parts = ([*parts, 0, 0, 0])[:3] if len(parts) < 3 else parts
    return prefix + ".".join(str(p) for p in parts) + keep


def neighbours(eco: str, version: str) -> list[tuple[str, str]]:
    """Versions just below and just above a boundary, in the ecosystem's spelling: the release
    part stepped down (``1.2.0`` → ``1.1.999``) and up (``1.2.3`` → ``1.2.4``; a pre-release's
    own release is just above it: ``2.0.0-rc.1`` → ``2.0.0``), and a pre-release of a release
    boundary (``1.2.3rc1``, ``v1.2.3-0.2020…`` for Go)."""
    parsed = _release(version)
    if parsed is None:
        return []
    prefix, parts, rest = parsed
    keep = "+incompatible" if eco == "go" and rest.endswith("+incompatible") else ""
    out: list[tuple[str, str]] = []
    nonzero = [i for i, p in enumerate(parts) if p]
    if nonzero:
        i = nonzero[-1]
        below = parts[:i] + [parts[i] - 1] + [999] * (len(parts) - i - 1)
        out.append(("below", _spell(eco, prefix, below, keep)))
    if rest and not rest.startswith("+"):
        out.append(("above", _spell(eco, prefix, parts, keep)))
    else:
        out.append(("above", _spell(eco, prefix, [*parts[:-1], parts[-1] + 1], keep)))
        # The versions just below a release are its pre-releases (a Go pseudo-version made
        # before the tag is one too).
        release = _spell(eco, prefix, parts)
        pre = {
            "pip": f"{release}rc1",
            "go": f"{release}-0.20200101000000-abcdefabcdef",
            "cargo": f"{release}-rc.1",
            "npm": f"{release}-rc.1",
            "maven": f"{release}-rc1",
        }[eco]
        if not keep:
            out.append(("below-pre", pre))
    return out


def _go_major(module: str) -> int | None:
    """The major version a module path fixes (``…/v2``, ``gopkg.in/yaml.v3``), else None."""
    m = re.search(r"/v(\d+)$", module) or re.fullmatch(
        r"gopkg\.in/.*\.v(\d+)(?:-unstable)?", module
    )
    return int(m.group(1)) if m else None


def _go_version_ok(module: str, version: str) -> bool:
    """What go.mod accepts: canonical semver with ``v``, and a major version the path allows."""
    m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+incompatible)?", version)
    if m is None or any(len(p) > 1 and p.startswith("0") for p in m.group(1, 2, 3)):
        return False
    major, incompatible = int(m.group(1)), m.group(5) is not None
    fixed = _go_major(module)
    if fixed is not None:
        return major == fixed and not incompatible
    return major >= 2 if incompatible else major <= 1


def versions_for(eco: str, name: str, data: dict[str, set[tuple[str, str]]]) -> list[Probe]:
    """Every version that matters for one package, as probes (deduplicated by version)."""
    spec = next(s for s in ECOSYSTEMS.values() if s[0] == eco)
    found: dict[str, str] = {}
    for version, _ in sorted(data["listed"]):
        found.setdefault(version, "listed")
    for kind, version in sorted(data["events"]):
        found.setdefault(version, kind)
        for why, v in neighbours(eco, version):
            found.setdefault(v, why)
    if eco == "go":
        found = {(v if v.startswith("v") else "v" + v): why for v, why in found.items()}
        # Pseudo-versions: below every release, and just above each boundary.
        major = _go_major(name) or 0
        found.setdefault(f"v{major}.0.0-20200101000000-abcdefabcdef", "pseudo")
        for _kind, version in sorted(data["events"]):
            parsed = _release(version)
            if parsed and not parsed[2]:
                p = (parsed[1] + [0, 0, 0])[:3]
                found.setdefault(
                    f"v{p[0]}.{p[1]}.{p[2] + 1}-0.20200101000000-abcdefabcdef", "pseudo"
                )
    probes = []
    for version, why in sorted(found.items()):
        probes.append(Probe(eco, name, version, _purl(spec[1], name, version), why))
    return probes


def _purl(purl_type: str, name: str, version: str) -> str:
    namespace: str | None = None
    base = name
    if purl_type == "maven" and ":" in name:
        namespace, base = name.split(":", 1)
    elif purl_type in ("golang", "npm") and "/" in name:
        namespace, base = name.rsplit("/", 1)
    return PackageURL(type=purl_type, namespace=namespace, name=base, version=version).to_string()


# ---- lock files -----------------------------------------------------------------------------


def _lock_file(eco: str, probes: list[Probe]) -> str:
    if eco == "pip":
        return "".join(f"{p.name}=={p.version}\n" for p in probes)
    if eco == "go":
        reqs = "".join(f"\t{p.name} {p.version}\n" for p in probes)
        return f"module example.com/probe\n\ngo 1.22\n\nrequire (\n{reqs})\n"
    if eco == "cargo":
        body = "".join(
            f'\n[[package]]\nname = "{p.name}"\nversion = "{p.version}"\n'
            'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
            for p in probes
        )
        return "version = 3\n" + body
    if eco == "npm":
        # Several versions of one package: nested node_modules, as npm installs them.
        packages: dict[str, Any] = {"": {"name": "probe", "version": "1.0.0", "dependencies": {}}}
        seen: Counter[str] = Counter()
        for p in probes:
            k = seen[p.name]
            seen[p.name] += 1
            path = (
                f"node_modules/{p.name}" if k == 0 else f"node_modules/n{k}/node_modules/{p.name}"
            )
            if k == 0:
                packages[""]["dependencies"][p.name] = p.version
            packages[path] = {"version": p.version}
        doc = {"name": "probe", "version": "1.0.0", "lockfileVersion": 3, "requires": True}
        return json.dumps({**doc, "packages": packages}, indent=1) + "\n"
    lines = "".join(f"{p.name}:{p.version}=compileClasspath,runtimeClasspath\n" for p in probes)
    return "# Gradle dependency lock file (generated for the differential check)\n" + lines


def write_lock_files(root: Path, probes: list[Probe]) -> dict[str, list[Probe]]:
    """Lock files holding the probes, ``CHUNK`` components each; returns the probes of each file
    by the path Trivy reports as its Target. requirements.txt, Cargo.lock, package-lock.json and
    gradle.lockfile may pin several versions of one package; go.mod may not (the last ``require``
    wins), so Go gets one file per round of versions."""
    files: dict[str, list[Probe]] = {}
    by_eco: dict[str, list[Probe]] = defaultdict(list)
    for p in probes:
        by_eco[p.eco].append(p)
    for eco, ps in sorted(by_eco.items()):
        lock = ECOSYSTEMS_BY_ECO[eco][2]
        groups: list[list[Probe]] = []
        if eco == "go":
            rounds: dict[int, list[Probe]] = defaultdict(list)
            seen: Counter[str] = Counter()
            for p in ps:
                rounds[seen[p.name]].append(p)
                seen[p.name] += 1
            groups = [rounds[r] for r in sorted(rounds)]
        else:
            groups = [ps]
        for r, group in enumerate(groups):
            for c in range(0, len(group), CHUNK):
                chunk = group[c : c + CHUNK]
                target = f"{eco}/r{r:04d}-c{c // CHUNK:03d}/{lock}"
                (root / target).parent.mkdir(parents=True, exist_ok=True)
                (root / target).write_text(_lock_file(eco, chunk))
                files[target] = chunk
    return files


# ---- the comparison -------------------------------------------------------------------------


def _exception(probe: Probe, read: bool) -> str | None:
    """The documented reason a difference on this component is expected, if any."""
    if probe.eco == "pip" and not read and parse_version("pypi", probe.version) is None:
        return "pip-version-not-pep440"
    return None


def select(
    packages: dict[tuple[str, str], dict[str, set[tuple[str, str]]]],
    sample: int | None,
    always: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """The packages to check: all, or ``sample`` per ecosystem (sorted by a hash of the name: a
    fixed spread over the alphabet) plus ``always``."""
    keys = sorted(packages)
    if sample is None:
        return keys
    chosen: list[tuple[str, str]] = []
    for eco in sorted({k[0] for k in keys}):
        ranked = sorted(
            (k for k in keys if k[0] == eco),
            key=lambda k: hashlib.sha256(k[1].encode()).hexdigest(),
        )
        chosen.extend(ranked[:sample])
    chosen.extend(k for k in always if k in packages and k not in chosen)
    return sorted(chosen)


def run(
    corpora: Path,
    trivy: Path,
    work: Path,
    *,
    sample: int | None = None,
    always: Iterable[tuple[str, str]] = (),
) -> Result:
    """The sweep (or a sample of it); ``work`` receives the cache, the lock files and the report."""
    result = Result()
    t0 = time.perf_counter()
    advisories = load_advisories(corpora)
    packages = packages_of(advisories)
    chosen = select(packages, sample, always)
    wanted = {_identity(ECOSYSTEMS_BY_ECO[e][1], n) for e, n in chosen}
    # Only advisories that name a chosen package matter to them (for the whole sweep: all).
    relevant = [
        (feed, adv)
        for feed, adv in advisories
        if sample is None
        or any(
            _identity(ECOSYSTEMS[p.ecosystem][1], p.name) in wanted
            for p in adv.affected
            if p.ecosystem in ECOSYSTEMS
        )
    ]
    result.seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cache = work / "cache"
    (cache / "db").mkdir(parents=True, exist_ok=True)
    report: TrivyDbReport = write_trivy_db(relevant, cache / "db" / "trivy.db")
    install_db(cache, cache / "db" / "trivy.db")
    result.db = {
        "advisories": report.advisories,
        "entries": report.entries,
        "vulnerabilities": report.vulnerabilities,
        "skipped": dict(report.skipped),
        "dropped": dict(report.dropped),
    }
    index = AdvisoryIndex.build(adv for _feed, adv in relevant)
    result.seconds["db"] = time.perf_counter() - t0

    probes: list[Probe] = []
    for eco, name in chosen:
        result.packages[eco] += 1
        for p in versions_for(eco, name, packages[(eco, name)]):
            if eco == "go" and name in ("stdlib", "toolchain"):
                result.not_generated["go-stdlib"] += 1
                continue
            if eco == "go" and not _go_version_ok(name, p.version):
                result.not_generated["go-module-path"] += 1
                continue
            probes.append(p)
            # pip: the lock file may spell the name with dots where PyPA writes dashes.
            if eco == "pip" and "-" in name:
                dotted = name.replace("-", ".")
                probes.append(
                    Probe(eco, dotted, p.version, _purl("pypi", dotted, p.version), p.why)
                )
    for p in probes:
        result.probes[p.eco] += 1

    t0 = time.perf_counter()
    repo = work / "repo"
    files = write_lock_files(repo, probes)
    scan, log = trivy_scan(trivy, cache, repo, list_all=True)
    result.seconds["trivy"] = time.perf_counter() - t0
    # Trivy logs a WARN for every constraint (ours) or installed version it cannot parse.
    result.trivy_warnings = [line for line in log.splitlines() if "Version matching error" in line]

    t0 = time.perf_counter()
    trivy_found: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    trivy_read: set[tuple[str, str, str]] = set()
    for res in scan.get("Results") or []:
        target = res["Target"]
        for pkg in res.get("Packages") or []:
            trivy_read.add((target, pkg["Name"], pkg.get("Version", "")))
        for v in res.get("Vulnerabilities") or []:
            trivy_found[(target, v["PkgName"], v["InstalledVersion"])].add(v["VulnerabilityID"])
    for target, file_probes in sorted(files.items()):
        for p in file_probes:
            key = (target, p.name, p.version)
            read = key in trivy_read
            result.read_by_trivy[p.eco] += read
            matches, _skips = match_component(index, Component(p.name, p.version, p.purl))
            ours = {m.vulnerability_id for m in matches}
            theirs = trivy_found.get(key, set())
            result.ours[p.eco] += len(ours)
            result.trivy[p.eco] += len(theirs)
            result.agreed[p.eco] += len(ours & theirs)
            for vuln, side in [
                *((v, "missing in trivy") for v in sorted(ours - theirs)),
                *((v, "only in trivy") for v in sorted(theirs - ours)),
            ]:
                reason = _exception(p, read)
                if reason is not None:
                    result.explained[f"{reason} ({side})"] += 1
                else:
                    result.unexplained.append(
                        {
                            "file": target,
                            "package": p.name,
                            "version": p.version,
                            "why": p.why,
                            "vulnerability": vuln,
                            "side": side,
                            "readByTrivy": read,
                        }
                    )
    result.seconds["compare"] = time.perf_counter() - t0
    return result


ECOSYSTEMS_BY_ECO: Final = {spec[0]: spec for spec in ECOSYSTEMS.values()}


def _default_corpora() -> Path:
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("STELLA_CORPORA", repo.parent / "shared" / "corpora"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="trivy-diff", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", type=Path, default=_default_corpora())
    ap.add_argument("--trivy", type=Path, default=Path(sys.executable).parent / "trivy")
    ap.add_argument("--sample", type=int, default=None, help="packages per ecosystem")
    ap.add_argument("--work", type=Path, default=None, help="keep the lock files and cache here")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trivy-diff-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.corpora, args.trivy, work, sample=args.sample)
    doc = result.to_json()
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0 if not result.unexplained and not result.trivy_warnings else 1


if __name__ == "__main__":
    raise SystemExit(main())
