"""Evaluate SBOMs against advisories, VEX and a policy; render the policy overlay files.

Pure: no store, no clock, no file system. The as-of time comes in with :class:`AsOf` (ignore
rules expire against it) and every output is sorted and serialized as RFC 8785 canonical JSON,
so the same inputs give byte-identical files whatever order they arrive in.

Per finding, in this order:
1. VEX: the consensus of the statements that apply (see :mod:`.consensus`). A consensus status
   listed in the policy's ``vexAffects`` suppresses the finding: effective status = that status,
   verdict ``pass``.
2. Ignore rules: the first rule (document order) that matches and has not expired at the as-of
   date makes the finding ``ignored`` (verdict ``pass``), with the rule's reason.
3. Otherwise the finding is ``affected`` (or ``under_investigation`` when VEX says so) and its
   verdict comes from the severity thresholds.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

import rfc8785

from export_center.model import Advisory, Component, Sbom, VexStatement
from export_center.policy.consensus import (
    Consensus,
    ProviderTrust,
    VexIndex,
    applies,
    reduce_statements,
)
from export_center.policy.document import API_VERSION, IgnoreRule, Policy, Verdict
from export_center.policy.matching import AdvisoryIndex, Match, Skip, match_component
from export_center.policy.purls import purl_matches
from export_center.policy.severity import SeverityRating, rate

EffectiveStatus = Literal["affected", "not_affected", "fixed", "under_investigation", "ignored"]

SNAPSHOT_PATH = "data/policy/snapshot.json"
EVALUATIONS_PATH = "data/policy/evaluations.jsonl"
CONSENSUS_PATH = "data/consensus/vex_consensus.jsonl"


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AsOf:
    """The evidence cursor an evaluation ran over. ``time`` must be timezone-aware."""

    time: datetime
    tenant: str | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("AsOf.time must be timezone-aware")

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "tenant": self.tenant, "time": _utc_text(self.time)}


@dataclass(frozen=True)
class Reason:
    code: str  # vex | vex-not-accepted | ignored | ignore-expired | severity
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Finding:
    subject: str
    purl: str
    component_name: str
    version: str
    vulnerability_id: str
    aliases: tuple[str, ...]
    advisory_ids: tuple[str, ...]
    severity: SeverityRating
    fixed_versions: tuple[str, ...]
    vex: Consensus | None
    effective_status: EffectiveStatus
    verdict: Verdict
    reasons: tuple[Reason, ...]

    @property
    def key(self) -> tuple[bytes, bytes, bytes]:
        return (self.subject.encode(), self.purl.encode(), self.vulnerability_id.encode())

    def to_json(self) -> dict[str, Any]:
        vex = self.vex
        return {
            "advisoryIds": list(self.advisory_ids),
            "aliases": list(self.aliases),
            "componentName": self.component_name,
            "componentVersion": self.version,
            "effectiveStatus": self.effective_status,
            "fixedVersions": list(self.fixed_versions),
            "purl": self.purl,
            "reasons": [r.to_json() for r in self.reasons],
            "severity": self.severity.to_json(),
            "subject": self.subject,
            "verdict": self.verdict,
            "vex": None
            if vex is None
            else {
                "conflict": vex.conflict,
                "justification": vex.justification,
                "provider": vex.provider,
                "statements": len(vex.contributions),
                "status": vex.status,
            },
            "vulnerabilityId": self.vulnerability_id,
        }


@dataclass(frozen=True)
class SubjectSkip:
    subject: str
    skip: Skip

    def to_json(self) -> dict[str, object]:
        return {"subject": self.subject, **self.skip.to_json()}


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation produced; render it with :func:`render`."""

    policy: Policy
    as_of: AsOf
    subjects: tuple[str, ...]
    findings: tuple[Finding, ...]
    skipped: tuple[SubjectSkip, ...]
    inputs: dict[str, int]


def _rule_matches(rule: IgnoreRule, match: Match) -> bool:
    if rule.vulnerability is not None and rule.vulnerability.upper() not in {
        i.upper() for i in match.ids
    }:
        return False
    if rule.purl is None:
        return True
    if rule.is_glob:
        return fnmatchcase(match.purl, rule.purl)
    return purl_matches(rule.purl, match.purl)


def _decide(
    match: Match, consensus: Consensus | None, policy: Policy, as_of: AsOf, severity: SeverityRating
) -> tuple[EffectiveStatus, Verdict, list[Reason]]:
    doc = policy.document
    reasons: list[Reason] = []
    if consensus is not None:
        just = f" ({consensus.justification})" if consensus.justification else ""
        conflict = " despite conflicting statements" if consensus.conflict else ""
        if consensus.status in doc.vex_affects:
            reasons.append(
                Reason(
                    "vex",
                    f"VEX consensus {consensus.status}{just} from {consensus.provider}{conflict}",
                )
            )
            return consensus.status, "pass", reasons
        if consensus.status in ("not_affected", "fixed"):
            reasons.append(
                Reason(
                    "vex-not-accepted",
                    f"VEX consensus {consensus.status}{just} from {consensus.provider} does not "
                    "suppress findings under this policy (vexAffects)",
                )
            )
        else:
            reasons.append(
                Reason("vex", f"VEX consensus {consensus.status} from {consensus.provider}")
            )
    today = as_of.time.astimezone(UTC).date()
    for rule in doc.ignore:
        if not _rule_matches(rule, match):
            continue
        if today <= rule.expires:
            reasons.append(Reason("ignored", f"{rule.reason} (ignore rule until {rule.expires})"))
            return "ignored", "pass", reasons
        reasons.append(
            Reason("ignore-expired", f"ignore rule expired on {rule.expires}: {rule.reason}")
        )
    status: EffectiveStatus = (
        "under_investigation"
        if consensus is not None and consensus.status == "under_investigation"
        else "affected"
    )
    thresholds = doc.severity_thresholds
    verdict = thresholds.verdict(severity.level)
    if severity.level == "UNKNOWN":
        reasons.append(Reason("severity", f"severity unknown: policy says {verdict}"))
    else:
        score = f" {severity.score}" if severity.score is not None else ""
        reasons.append(
            Reason(
                "severity",
                f"severity {severity.level}{score} -> {verdict} "
                f"(fail >= {thresholds.fail}, warn >= {thresholds.warn})",
            )
        )
    return status, verdict, reasons


def _canonical(value: Any) -> bytes:
    return bytes(rfc8785.dumps(value))


def evaluate(
    sboms: Iterable[Sbom],
    advisories: AdvisoryIndex | Iterable[Advisory],
    statements: Iterable[VexStatement],
    policy: Policy,
    as_of: AsOf,
) -> Evaluation:
    """Evaluate every component of every SBOM.

    ``advisories`` is an :class:`AdvisoryIndex` or any iterable of advisories (streamed into
    one). VEX statements carried inside the SBOMs (CycloneDX ``vulnerabilities``) count along
    with ``statements``.
    """
    index = (
        advisories
        if isinstance(advisories, AdvisoryIndex)
        else AdvisoryIndex.build(advisories, as_of=as_of.time)
    )
    sbom_list = sorted(sboms, key=lambda s: s.subject.encode())
    all_statements = [*statements, *(st for s in sbom_list for st in s.vex)]
    vex = VexIndex(all_statements)
    trust = policy.document.trust()
    findings: dict[tuple[bytes, bytes, bytes], tuple[bytes, Finding]] = {}
    skipped: set[tuple[bytes, SubjectSkip]] = set()
    components = 0
    for sbom in sbom_list:
        for component in sbom.components:
            components += 1
            matches, skips = match_component(index, component)
            for sk in skips:
                entry = SubjectSkip(sbom.subject, sk)
                skipped.add((_canonical(entry.to_json()), entry))
            for m in matches:
                f = _finding(sbom.subject, component, m, vex, trust, policy, as_of)
                blob = _canonical(f.to_json())
                prev = findings.get(f.key)
                # The same package listed twice in one SBOM: keep one, chosen by content.
                if prev is None or blob < prev[0]:
                    findings[f.key] = (blob, f)
    ordered = tuple(f for _k, (_b, f) in sorted(findings.items(), key=lambda kv: kv[0]))
    return Evaluation(
        policy=policy,
        as_of=as_of,
        subjects=tuple(s.subject for s in sbom_list),
        findings=ordered,
        skipped=tuple(e for _b, e in sorted(skipped, key=lambda t: t[0])),
        inputs={
            "advisories": index.advisories,
            "withdrawnAdvisories": index.withdrawn,
            "vexStatements": vex.count,
            "components": components,
        },
    )


def _finding(
    subject: str,
    component: Component,
    m: Match,
    vex: VexIndex,
    trust: ProviderTrust,
    policy: Policy,
    as_of: AsOf,
) -> Finding:
    relevant = [
        st
        for st in vex.about(m.ids)
        if applies(st, subject=subject, component_purl=m.purl, component_ref=component.ref)
    ]
    consensus = reduce_statements(relevant, trust)
    severity = rate(m.advisories)
    status, verdict, reasons = _decide(m, consensus, policy, as_of, severity)
    return Finding(
        subject=subject,
        purl=m.purl,
        component_name=m.component_name,
        version=m.version,
        vulnerability_id=m.vulnerability_id,
        aliases=m.aliases,
        advisory_ids=m.advisory_ids,
        severity=severity,
        fixed_versions=m.fixed_versions,
        vex=consensus,
        effective_status=status,
        verdict=verdict,
        reasons=tuple(reasons),
    )


# ---- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyOutputs:
    """The three files of the policy overlay (uncompressed; the bundle writer compresses)."""

    snapshot: bytes
    evaluations: bytes
    vex_consensus: bytes

    def files(self) -> list[tuple[str, bytes]]:
        """``(bundle path, bytes)`` pairs, bytewise path order."""
        return sorted(
            [
                (SNAPSHOT_PATH, self.snapshot),
                (EVALUATIONS_PATH, self.evaluations),
                (CONSENSUS_PATH, self.vex_consensus),
            ],
            key=lambda t: t[0].encode(),
        )


def evaluation_lines(ev: Evaluation) -> list[bytes]:
    """One canonical JSON line (no newline) per finding, sorted by (subject, purl, vuln id)."""
    return [_canonical(f.to_json()) for f in ev.findings]


def consensus_lines(ev: Evaluation) -> list[bytes]:
    """One canonical JSON line per finding that any VEX statement applied to, same order."""
    return [
        _canonical(
            {
                "purl": f.purl,
                "subject": f.subject,
                "vulnerabilityId": f.vulnerability_id,
                **f.vex.to_json(),
            }
        )
        for f in ev.findings
        if f.vex is not None
    ]


def _jsonl(lines: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def snapshot_document(
    ev: Evaluation, *, evaluations: bytes, vex_consensus: bytes
) -> dict[str, Any]:
    verdicts = Counter(f.verdict for f in ev.findings)
    statuses = Counter(f.effective_status for f in ev.findings)
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicySnapshot",
        "asOf": ev.as_of.to_json(),
        "policy": {
            "digest": ev.policy.digest,
            "document": ev.policy.document.canonical(),
            "name": ev.policy.document.name,
            "version": ev.policy.document.version,
        },
        "inputs": {**ev.inputs, "subjects": list(ev.subjects)},
        "outputs": {
            EVALUATIONS_PATH: {
                "records": len(ev.findings),
                "sha256": hashlib.sha256(evaluations).hexdigest(),
            },
            CONSENSUS_PATH: {
                "records": sum(1 for f in ev.findings if f.vex is not None),
                "sha256": hashlib.sha256(vex_consensus).hexdigest(),
            },
        },
        "summary": {
            "effectiveStatus": dict(sorted(statuses.items())),
            "findings": len(ev.findings),
            "verdicts": {v: verdicts.get(v, 0) for v in ("fail", "pass", "warn")},
            "worstVerdict": next((v for v in ("fail", "warn", "pass") if verdicts.get(v)), "pass"),
        },
        "skipped": [s.to_json() for s in ev.skipped],
    }


def render(ev: Evaluation) -> PolicyOutputs:
    """The overlay files: ``snapshot.json`` (RFC 8785, names the digests of the two JSONL
    files as uncompressed bytes), ``evaluations.jsonl`` and ``vex_consensus.jsonl``."""
    evaluations = _jsonl(evaluation_lines(ev))
    vex_consensus = _jsonl(consensus_lines(ev))
    snapshot = _canonical(
        snapshot_document(ev, evaluations=evaluations, vex_consensus=vex_consensus)
    )
    return PolicyOutputs(snapshot=snapshot, evaluations=evaluations, vex_consensus=vex_consensus)
