"""VEX consensus: every statement about one (vulnerability, product/component) pair, reduced to one
status, with the contributing statements, their justifications and any conflict kept.

Which statements apply to a finding (vulnerability V on component C of the SBOM of subject S):
- the statement names V or one of its aliases (or V's aliases name the statement's id), and
- its product is S (equal, or a purl naming S's package, version-aware) and it has no
  subcomponents or one of them names C; or its product names C itself.
Purls match version-aware: a purl without version names every version; CycloneDX BOM-Links
(``urn:cdx:…#ref``) name the component with that bom-ref.

Reduction, deterministic for any input order:
1. Statements from providers the policy does not trust (``ignoreUnknown``) are kept as
   ``ignored`` and do not count.
2. Per provider only its latest statement counts (OpenVEX: a newer statement supersedes);
   equal timestamps fall back on status precedence.
3. Across providers the winner has the highest trust weight; ties go to the status earlier in
   the policy's status precedence, then the latest timestamp, then the bytewise smallest
   provider name.
4. Counting statements whose status differs from the winner's are recorded as conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from export_center.model import VexStatement
from export_center.policy.purls import bom_link_ref, parse_purl, purl_matches

Role = Literal["winner", "agrees", "conflicts", "superseded", "ignored"]
#: Default tie-break between equally trusted providers: the status that keeps the finding
#: visible wins (a tie must not fail open).
DEFAULT_STATUS_PRECEDENCE: tuple[str, ...] = (
    "affected",
    "under_investigation",
    "fixed",
    "not_affected",
)


@dataclass(frozen=True)
class ProviderTrust:
    """How much each VEX provider is believed; built from the policy's ``vexProviders``."""

    order: tuple[str, ...] = ()
    default_weight: int = 0
    ignore_unknown: bool = False
    status_precedence: tuple[str, ...] = DEFAULT_STATUS_PRECEDENCE

    def weight(self, provider: str) -> int | None:
        """Listed providers weigh n, n-1, …, 1 in ``order``; others get ``default_weight`` (0
        unless the policy says otherwise), or None (not counted) with ``ignore_unknown``."""
        if provider in self.order:
            return len(self.order) - self.order.index(provider)
        return None if self.ignore_unknown else self.default_weight

    def rank(self, status: str) -> int:
        p = self.status_precedence
        return p.index(status) if status in p else len(p)


@dataclass(frozen=True)
class Contribution:
    statement: VexStatement
    weight: int | None
    role: Role

    def to_json(self) -> dict[str, object]:
        st = self.statement
        return {
            "actionStatement": st.action_statement,
            "impactStatement": st.impact_statement,
            "justification": st.justification,
            "product": st.product,
            "provider": st.provider,
            "role": self.role,
            "status": st.status,
            "subcomponents": sorted(st.subcomponents, key=str.encode),
            "timestamp": st.timestamp,
            "vulnerability": st.vulnerability,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class Consensus:
    """The reduced VEX view of one finding."""

    status: str
    provider: str
    justification: str | None
    impact_statement: str | None
    action_statement: str | None
    contributions: tuple[Contribution, ...]

    @property
    def conflict(self) -> bool:
        return any(c.role == "conflicts" for c in self.contributions)

    def to_json(self) -> dict[str, object]:
        return {
            "actionStatement": self.action_statement,
            "conflict": self.conflict,
            "conflicts": [c.to_json() for c in self.contributions if c.role == "conflicts"],
            "impactStatement": self.impact_statement,
            "justification": self.justification,
            "provider": self.provider,
            "statements": [c.to_json() for c in self.contributions],
            "status": self.status,
        }


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def _stable_key(st: VexStatement) -> tuple[bytes, ...]:
    """A total order over statements, for output and for the last tie-break."""
    return tuple(
        (x or "").encode()
        for x in (
            st.provider,
            st.timestamp,
            st.status,
            st.vulnerability,
            st.product,
            "\x00".join(st.subcomponents),
            st.justification,
            st.impact_statement,
            st.action_statement,
        )
    )


class VexIndex:
    """Statements by every vulnerability id they name (id and aliases, upper-cased)."""

    def __init__(self, statements: Iterable[VexStatement]) -> None:
        self._by_id: dict[str, list[VexStatement]] = {}
        distinct: dict[VexStatement, None] = dict.fromkeys(statements)
        # Identical statements (one document ingested twice, an SBOM given as a file and also
        # stored) count once.
        self.count = len(distinct)
        for st in distinct:
            for vid in {st.vulnerability.upper(), *(a.upper() for a in st.aliases)}:
                self._by_id.setdefault(vid, []).append(st)

    def about(self, ids: Iterable[str]) -> list[VexStatement]:
        """Statements naming any of ``ids``, each once, in a stable order."""
        found: dict[VexStatement, None] = {}
        for vid in ids:
            found.update(dict.fromkeys(self._by_id.get(vid.upper(), ())))
        return sorted(found, key=_stable_key)


def _names(ref: str, component_purl: str, component_ref: str | None) -> bool:
    """Whether a statement's product/subcomponent reference names the component."""
    linked = bom_link_ref(ref)
    target = linked if linked is not None else ref
    if component_ref is not None and target == component_ref:
        return True
    return parse_purl(target) is not None and purl_matches(target, component_purl)


def _is_subject(product: str, subject: str) -> bool:
    if product == subject:
        return True
    linked = bom_link_ref(product)
    if linked is not None and linked == subject:
        return True
    return (
        parse_purl(product) is not None
        and parse_purl(subject) is not None
        and purl_matches(product, subject)
    )


def applies(
    st: VexStatement, *, subject: str, component_purl: str, component_ref: str | None = None
) -> bool:
    """Whether ``st`` (already known to name the vulnerability) is about this component of
    ``subject``'s SBOM."""
    if _is_subject(st.product, subject) and (
        not st.subcomponents
        or any(_names(sub, component_purl, component_ref) for sub in st.subcomponents)
    ):
        return True
    return _names(st.product, component_purl, component_ref)


def reduce_statements(statements: Sequence[VexStatement], trust: ProviderTrust) -> Consensus | None:
    """One consensus from the statements that apply to one finding; None when there are none."""
    if not statements:
        return None
    ordered = sorted(statements, key=_stable_key)
    roles: dict[int, tuple[int | None, Role]] = {}
    latest: dict[str, VexStatement] = {}
    for st in ordered:
        w = trust.weight(st.provider)
        if w is None:
            roles[id(st)] = (None, "ignored")
            continue
        cur = latest.get(st.provider)
        if cur is None or _newer(st, cur, trust):
            latest[st.provider] = st
    for st in ordered:
        if id(st) not in roles and latest.get(st.provider) is not st:
            roles[id(st)] = (trust.weight(st.provider), "superseded")
    current = list(latest.values())
    if not current:
        # Only untrusted providers spoke: no consensus, but keep what they said visible.
        return None
    winner = min(
        current,
        key=lambda s: (
            -(trust.weight(s.provider) or 0),
            trust.rank(s.status),
            -(_ts(s.timestamp) or _EPOCH).timestamp(),
            s.provider.encode(),
            _stable_key(s),
        ),
    )
    for st in current:
        role: Role = (
            "winner" if st is winner else "agrees" if st.status == winner.status else "conflicts"
        )
        roles[id(st)] = (trust.weight(st.provider), role)
    return Consensus(
        status=winner.status,
        provider=winner.provider,
        justification=winner.justification,
        impact_statement=winner.impact_statement,
        action_statement=winner.action_statement,
        contributions=tuple(Contribution(st, *roles[id(st)]) for st in ordered),
    )


def _newer(a: VexStatement, b: VexStatement, trust: ProviderTrust) -> bool:
    """Whether ``a`` supersedes ``b`` (same provider)."""
    ta, tb = _ts(a.timestamp) or _EPOCH, _ts(b.timestamp) or _EPOCH
    if ta != tb:
        return ta > tb
    ra, rb = trust.rank(a.status), trust.rank(b.status)
    if ra != rb:
        return ra < rb
    return _stable_key(a) < _stable_key(b)
