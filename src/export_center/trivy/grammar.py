"""What Trivy's version comparers can read: every clause we write is checked here first.

Trivy joins an advisory's ``VulnerableVersions`` with ``" || "`` and parses the result with the
comparer of the package's ecosystem; one clause it cannot read makes it reject the whole
constraint, log a warning and skip the advisory for *every* version of the package. So a clause is
written only when the comparer reads exactly what we mean: :func:`constraint` builds it and checks
it the way the comparer tokenizes it, and returns None when the comparer would refuse it or read
something else. Facts below are from the comparer libraries Trivy v0.76 is built with
(``go version -m`` on the binary) and were checked against the binary (tests/trivy).

Comparers (``pkg/detector/library`` in Trivy):

- ``pep440`` (pip: go-pep440-version). A version must match PEP 440's grammar (case-insensitive,
  optional ``v``); ``<``, ``<=``, ``>``, ``>=`` refuse a local version (``+abc``). Each ``||`` part
  is validated as a whole, so one bad version fails the constraint. The tokenizer takes the first
  pre-release spelling that fits (``a`` before ``alpha``), so ``=1.0alpha1`` would be read as
  ``=1.0a`` *and* ``=1``: versions are written in their PEP 440 normal form (``1.0a1``), which
  compares equal to the original.
- ``npm`` (go-npm-version): ``v?MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`` per clause, validated as a
  whole; a missing part and ``x``, ``X``, ``*`` are wildcards (``=1.2`` means ``1.2.x``), so only
  versions with all three numeric parts are written.
- ``generic`` (aquasecurity/go-version: Go, Cargo, Composer, NuGet, Pub, Hex, Swift, Conan,
  Julia, Kubernetes): ``v?N(.N)*`` with an optional pre-release and build. Not validated: the
  tokenizer silently skips text it cannot read (``=2.0.0.beta1`` is read as ``=2.0.0`` and
  ``=1``), so a version is accepted only when the tokenizer reads all of it.
- ``maven`` (go-mvn-version): versions of ``[0-9A-Za-z-~.]`` only, validated as a whole.
- ``rubygems`` (go-gem-version: RubyGems, CocoaPods): ``N(.[0-9A-Za-z]+)*(-X(.X)*)?`` per
  ``,``-separated clause, anchored.

Numbers must fit an unsigned 64-bit integer in every comparer (larger ones fail to parse).
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

from export_center.policy import versions as pv

__all__ = [
    "COMPARER_BY_SLUG",
    "Comparer",
    "comparer_for",
    "constraint",
    "spelling",
]

Comparer = Literal["pep440", "npm", "generic", "maven", "rubygems"]

#: Trivy ecosystem slug → the comparer Trivy v0.76 uses for it. Ecosystems absent here (Bitnami:
#: a Debian-style comparer we have not verified) get no language entries.
COMPARER_BY_SLUG: Final[dict[str, Comparer]] = {
    "pip": "pep440",
    "npm": "npm",
    "go": "generic",
    "cargo": "generic",
    "composer": "generic",
    "nuget": "generic",
    "pub": "generic",
    "erlang": "generic",
    "swift": "generic",
    "conan": "generic",
    "julia": "generic",
    "k8s": "generic",
    "maven": "maven",
    "rubygems": "rubygems",
    "cocoapods": "rubygems",
}

Op = Literal["=", "!=", "<", "<=", ">", ">="]

_UINT64_MAX: Final = (1 << 64) - 1
_DIGITS = re.compile(r"[0-9]+")


def comparer_for(slug: str) -> Comparer | None:
    """The comparer of a Trivy ecosystem slug, or None when we write no ranges for it."""
    return COMPARER_BY_SLUG.get(slug)


# ---- the grammars, as the Go libraries spell them --------------------------------------------

_OPS_LONGEST_FIRST = (
    "===",
    "==",
    "!=",
    "<=",
    ">=",
    "=<",
    "=>",
    "~=",
    "~>",
    "<",
    ">",
    "=",
    "~",
    "^",
)


def _ops(*ops: str) -> str:
    # Go builds this alternation from a map (random order); every order reads our clauses the
    # same way because a version never starts with an operator character.
    ordered = [o for o in _OPS_LONGEST_FIRST if o in ops]
    return "|".join(
        [*(re.escape(o) for o in ordered), ""] if "" in ops else map(re.escape, ordered)
    )


_PEP440_VERSION = (
    r"v?(?:(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
    r"(?:[-_\.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_\.]?(?:[0-9]+)?)?"
    r"(?:(?:-(?:[0-9]+))|(?:[-_\.]?(?:post|rev|r)[-_\.]?(?:[0-9]+)?))?"
    r"(?:[-_\.]?(?:dev)[-_\.]?(?:[0-9]+)?)?)"
    r"(?:\+(?:[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?"
)
_PEP440_OPS = _ops("", "=", "==", "!=", ">", "<", ">=", "<=", "~=", "===")
_PEP440_TOKEN = re.compile(rf"(?i)({_PEP440_OPS})\s*({_PEP440_VERSION}(?:\.\*)?)")
_PEP440_VALID = re.compile(rf"(?i)^\s*(\s*({_PEP440_OPS})\s*({_PEP440_VERSION}(\.\*)?)\s*\,?)*\s*$")

_NPM_VERSION = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_NPM_OPS = _ops("", "=", "==", ">", "<", ">=", "=>", "<=", "=<", "~", "^")
_NPM_TOKEN = re.compile(rf"({_NPM_OPS})\s*({_NPM_VERSION})")
_NPM_VALID = re.compile(rf"^\s*(\s*({_NPM_OPS})\s*({_NPM_VERSION})\s*\,?)*\s*$")

_GENERIC_VERSION = (
    r"v?([0-9]+(\.[0-9]+)*)"
    r"(-([0-9]+[0-9A-Za-z\-~]*(\.[0-9A-Za-z\-~]+)*)|(-?([A-Za-z\-~]+[0-9A-Za-z\-~]*(\.[0-9A-Za-z\-~]+)*)))?"
    r"(\+([0-9A-Za-z\-~]+(\.[0-9A-Za-z\-~]+)*))?"
)
_GENERIC_OPS = _ops("", "=", "==", "!=", ">", "<", ">=", "=>", "<=", "=<", "~>", "~", "^")
_GENERIC_TOKEN = re.compile(rf"({_GENERIC_OPS})\s*({_GENERIC_VERSION})")

_MAVEN_VERSION = r"[0-9A-Za-z\-~\.]+"
_MAVEN_OPS = _ops("", "=", "==", "!=", ">", "<", ">=", "=>", "<=", "=<")
_MAVEN_TOKEN = re.compile(rf"({_MAVEN_OPS})\s*({_MAVEN_VERSION})")
_MAVEN_VALID = re.compile(rf"^\s*(\s*({_MAVEN_OPS})\s*({_MAVEN_VERSION})\s*\,?)*\s*$")

_GEM_VERSION = r"[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
_GEM_OPS = _ops("", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~>")
_GEM_CLAUSE = re.compile(rf"^\s*({_GEM_OPS})\s*({_GEM_VERSION})\s*$")


def _numbers_fit(version: str) -> bool:
    return all(int(d) <= _UINT64_MAX for d in _DIGITS.findall(version))


@functools.lru_cache(maxsize=65536)
def spelling(comparer: Comparer, version: str) -> str | None:
    """How ``version`` is written for ``comparer``, or None when the comparer cannot read it.

    The spelling is the version itself, except for pip, where it is the PEP 440 normal form (equal
    to the original under PEP 440, and the one form the tokenizer always reads whole).
    """
    if not version or version != version.strip() or not _numbers_fit(version):
        return None
    if comparer == "pep440":
        parsed = pv.parse_version("pypi", version)
        if parsed is None:
            return None
        text = str(parsed)
        return text if _numbers_fit(text) else None
    if comparer == "npm":
        m = re.fullmatch(_NPM_VERSION, version)
        if m is None or m.group(2) is None or m.group(3) is None:
            return None  # a missing part is a wildcard: "=1.2" means 1.2.x
        # x, X and * are wildcards in a constraint, never parts of a version we mean.
        release = "".join(m.group(1, 2, 3))
        return None if re.search(r"[xX*|]", release) else version
    if comparer == "generic":
        return version if re.fullmatch(_GENERIC_VERSION, version) else None
    if comparer == "maven":
        return version if re.fullmatch(_MAVEN_VERSION, version) else None
    return version if re.fullmatch(_GEM_VERSION, version) else None


def _tokens(comparer: Comparer, text: str) -> list[tuple[str, str]] | None:
    """The (operator, version) pairs the comparer reads from one ``||`` part, or None when it
    refuses the part."""
    if comparer == "rubygems":
        out = []
        for single in text.split(","):
            m = _GEM_CLAUSE.match(single)
            if m is None:
                return None
            out.append((m.group(1), m.group(2)))
        return out
    token, valid = {
        "pep440": (_PEP440_TOKEN, _PEP440_VALID),
        "npm": (_NPM_TOKEN, _NPM_VALID),
        "generic": (_GENERIC_TOKEN, None),
        "maven": (_MAVEN_TOKEN, _MAVEN_VALID),
    }[comparer]
    if valid is not None and not valid.match(text):
        return None
    found = [(m.group(1), m.group(2)) for m in token.finditer(text)]
    return found or None


@functools.lru_cache(maxsize=65536)
def constraint(comparer: Comparer, parts: tuple[tuple[Op, str], ...]) -> str | None:
    """One ``VulnerableVersions`` entry: the ``(operator, version)`` parts ANDed (``", "``), or
    None when the comparer would not read exactly these parts (a version it cannot parse, or one
    its tokenizer would cut short).

    ``versions`` must already be spelled for the comparer (:func:`spelling`).
    """
    if not parts:
        return None
    text = ", ".join(f"{op}{version}" for op, version in parts)
    if comparer == "pep440" and any(op != "=" and "+" in v for op, v in parts):
        return None  # PEP 440: only equality may name a local version
    if _tokens(comparer, text) != [(op, v) for op, v in parts]:
        return None
    return text
