"""Severity of a finding: a CVSS base score computed from the vector, else the source's label.

CVSS v4 and v3.x vectors are scored with the ``cvss`` package (FIRST's reference equations);
v2 vectors only count when no advisory of the finding has a v3/v4 vector. Among several scored
vectors the highest base score wins (the conservative choice: merged advisories describe the same
vulnerability, and the worst reading is the one a gate should see). Without any vector the
highest qualitative label of the advisories is used (GHSA ``MODERATE`` reads as MEDIUM).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from export_center.model import Advisory

Level = Literal["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL", "UNKNOWN"]
#: Known levels in increasing order (UNKNOWN is not on this scale).
LEVELS: tuple[Level, ...] = ("NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL")
LEVEL_RANK: dict[str, int] = {lvl: i for i, lvl in enumerate(LEVELS)}

_LABELS: dict[str, Level] = {
    "none": "NONE",
    "informational": "NONE",
    "low": "LOW",
    "moderate": "MEDIUM",
    "medium": "MEDIUM",
    "important": "HIGH",
    "high": "HIGH",
    "critical": "CRITICAL",
}
# Preference among equal scores: newer CVSS first.
_TYPE_PREFERENCE = {"CVSS_V4": 0, "CVSS_V3": 1, "CVSS_V2": 2, "LABEL": 3}


@dataclass(frozen=True)
class SeverityRating:
    """The rating a finding carries: ``level`` always; score/vector when a vector was scored."""

    level: Level
    type: str  # CVSS_V4, CVSS_V3, CVSS_V2, LABEL or NONE (nothing known)
    score: float | None = None
    vector: str | None = None
    source: str | None = None  # the advisory id the rating comes from

    def to_json(self) -> dict[str, object]:
        return {
            "level": self.level,
            "score": self.score,
            "source": self.source,
            "type": self.type,
            "vector": self.vector,
        }


UNKNOWN = SeverityRating(level="UNKNOWN", type="NONE")


def level_from_score(score: float) -> Level:
    """CVSS v3/v4 qualitative rating scale."""
    if score == 0:
        return "NONE"
    if score < 4.0:
        return "LOW"
    if score < 7.0:
        return "MEDIUM"
    if score < 9.0:
        return "HIGH"
    return "CRITICAL"


def _v2_level(score: float) -> Level:
    return "LOW" if score < 4.0 else "MEDIUM" if score < 7.0 else "HIGH"


@functools.lru_cache(maxsize=8192)
def score_vector(kind: str, vector: str) -> tuple[float, Level] | None:
    """The base score and level of one vector; None when the vector is malformed."""
    kind = kind.upper()
    text = vector.strip()
    try:
        if kind == "CVSS_V4":
            v4 = CVSS4(text)
            score = _float(v4.base_score)
            return score, level_from_score(score)
        if kind == "CVSS_V3":
            if not text.startswith("CVSS:3"):
                text = "CVSS:3.1/" + text  # CycloneDX ratings drop the prefix
            score = _float(CVSS3(text).base_score)
            return score, level_from_score(score)
        if kind == "CVSS_V2":
            score = _float(CVSS2(text.removeprefix("(").removesuffix(")")).base_score)
            return score, _v2_level(score)
    except CVSSError:
        return None
    return None


def _float(d: Decimal | float) -> float:
    return float(Decimal(str(d)).quantize(Decimal("0.1")))


def label_level(label: str | None) -> Level | None:
    return _LABELS.get(label.strip().lower()) if label else None


def rate(advisories: Iterable[Advisory]) -> SeverityRating:
    """The rating of a finding from all the advisories merged into it."""
    scored: list[SeverityRating] = []
    labels: list[SeverityRating] = []
    for adv in advisories:
        for sev in adv.severities:
            kind = sev.type.upper()
            result = score_vector(kind, sev.score)
            if result is not None:
                scored.append(SeverityRating(result[1], kind, result[0], sev.score, adv.id))
            else:
                lvl = label_level(sev.score)
                if lvl is not None:
                    labels.append(SeverityRating(lvl, "LABEL", source=adv.id))
        lvl = label_level(adv.severity_label)
        if lvl is not None:
            labels.append(SeverityRating(lvl, "LABEL", source=adv.id))
    modern = [s for s in scored if s.type != "CVSS_V2"]
    pool = modern or scored
    if pool:
        return min(
            pool,
            key=lambda s: (
                -(s.score or 0.0),
                _TYPE_PREFERENCE.get(s.type, 9),
                s.vector or "",
                s.source or "",
            ),
        )
    if labels:
        return min(labels, key=lambda s: (-LEVEL_RANK[s.level], s.source or ""))
    return UNKNOWN
