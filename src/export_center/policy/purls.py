"""Package identity: purl parsing, per-ecosystem name normalization, version-aware purl match.

A package's identity is ``(purl type, normalized name)``; the name is built the way advisories
spell it (Maven ``group:artifact``, Go's full module path, npm ``@scope/name``) and then
normalized per ecosystem (PEP 503 for PyPI; lowercase where the registry is case-insensitive).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from packageurl import PackageURL

from export_center.policy.versions import scheme_for, versions_equal

PackageKey = tuple[str, str]

# Registries whose names are case-insensitive (or conventionally lowercase in every feed we read).
_CASE_INSENSITIVE = frozenset(
    {"npm", "nuget", "maven", "composer", "hex", "pub", "cargo", "deb", "apk", "pypi"}
)
# Name = namespace "/" name (Maven: ":"), except OS packages whose namespace is the vendor.
_NO_NAMESPACE = frozenset({"deb", "rpm", "apk", "alpm"})
_PEP503 = re.compile(r"[-_.]+")

# OSV ecosystem -> purl type, for advisories whose reader left ``purl_type`` empty.
_ECOSYSTEM_PURL_TYPE = {
    "pypi": "pypi",
    "go": "golang",
    "npm": "npm",
    "maven": "maven",
    "crates.io": "cargo",
    "nuget": "nuget",
    "rubygems": "gem",
    "packagist": "composer",
    "pub": "pub",
    "hex": "hex",
    "swifturl": "swift",
    "debian": "deb",
    "ubuntu": "deb",
    "alpine": "apk",
    "rocky linux": "rpm",
    "almalinux": "rpm",
    "red hat": "rpm",
    "suse": "rpm",
    "opensuse": "rpm",
}


def normalize_name(purl_type: str, name: str) -> str:
    """The comparable form of an ecosystem's package name."""
    t = purl_type.lower()
    if t == "pypi":
        return _PEP503.sub("-", name).lower()
    if t in _CASE_INSENSITIVE:
        return name.lower()
    return name


def purl_type_for(purl_type: str | None, ecosystem: str) -> str:
    """An advisory package's purl type; falls back on its OSV ecosystem (``Debian:12``)."""
    if purl_type:
        return purl_type.lower()
    family = ecosystem.split(":", 1)[0].strip().lower()
    return _ECOSYSTEM_PURL_TYPE.get(family, family)


@dataclass(frozen=True)
class Purl:
    """A parsed purl plus the identity it names."""

    text: str
    type: str
    namespace: str | None
    name: str
    version: str | None
    qualifiers: tuple[tuple[str, str], ...]

    @property
    def ecosystem_name(self) -> str:
        """The package name as advisories spell it."""
        if not self.namespace or self.type in _NO_NAMESPACE:
            return self.name
        sep = ":" if self.type == "maven" else "/"
        return f"{self.namespace}{sep}{self.name}"

    @property
    def key(self) -> PackageKey:
        return (self.type, normalize_name(self.type, self.ecosystem_name))

    def qualifier(self, name: str) -> str | None:
        return next((v for k, v in self.qualifiers if k == name), None)


@functools.lru_cache(maxsize=65536)
def parse_purl(text: str) -> Purl | None:
    """Parse a purl; None when it is not one (the caller records why it skipped it)."""
    if not text.startswith("pkg:"):
        return None
    try:
        p = PackageURL.from_string(text)
    except ValueError:
        return None
    quals = p.qualifiers if isinstance(p.qualifiers, dict) else {}
    return Purl(
        text=text,
        type=p.type.lower(),
        namespace=p.namespace or None,
        name=p.name,
        version=p.version or None,
        qualifiers=tuple(sorted((str(k), str(v)) for k, v in quals.items())),
    )


def bom_link_ref(product: str) -> str | None:
    """The bom-ref of a CycloneDX BOM-Link (``urn:cdx:<serial>/<version>#<bom-ref>``)."""
    if product.startswith("urn:cdx:") and "#" in product:
        return unquote(product.split("#", 1)[1])
    return None


def purl_matches(pattern: str, target: str) -> bool:
    """Whether the purl ``pattern`` names the package ``target``.

    Same type and identity; a pattern without version matches every version, one with a version
    matches it in the ecosystem's own equality (``v1.2.0`` = ``1.2.0`` for Go); the pattern's
    qualifiers must all be present in the target with the same values.
    """
    if pattern == target:
        return True
    p, t = parse_purl(pattern), parse_purl(target)
    if p is None or t is None or p.key != t.key:
        return False
    if p.version is not None and (
        t.version is None or not versions_equal(scheme_for(p.type), p.version, t.version)
    ):
        return False
    tq = dict(t.qualifiers)
    return all(tq.get(k) == v for k, v in p.qualifiers)
