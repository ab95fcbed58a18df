"""The one YAML loader of the package: bounded, alias-free, timestamps as text.

Every YAML document the tool reads comes from someone else: evidence (the pypa advisory
database), profile and policy files, OpenAPI specs of a devportal tree. PyYAML's
``safe_load`` is safe against code execution but not against size: a few hundred bytes of
nested aliases ("billion laughs") expand to gigabytes. So this loader

- refuses a document over ``max_bytes`` before parsing it;
- refuses anchors (``&a``) and aliases (``*a``) outright: none of the formats we read needs
  them, and an anchor without an alias is a sign of a hand-edited document we would rather
  have spelled out. libyaml composes aliases in C, where no hook can stop them, so the check
  is a scan of the parser's events, paid only by documents that contain ``&`` or ``*``;
- keeps timestamps as strings (``modified: 2024-01-01T00:00:00Z`` reads the same from YAML as
  from JSON; pydantic models parse them where a date is meant);
- reports a malformed document with its line and column.

libyaml itself bounds nesting depth (1000 levels), so a deeply nested document is refused as
malformed rather than exhausting the stack.
"""

from __future__ import annotations

from typing import Any

import yaml

from export_center.errors import BadInputError

__all__ = ["DEFAULT_MAX_BYTES", "YamlRefused", "load_yaml"]

#: The bound for documents that are configuration (profiles, policies, specs), not evidence.
DEFAULT_MAX_BYTES = 4 << 20

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader (libyaml's when available) without the implicit timestamp resolver."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class YamlRefused(BadInputError):
    """A YAML document was refused: too large, malformed, or using anchors/aliases.

    ``where`` names the document, ``reason`` says why (for callers that report refusals in
    their own words, e.g. ingest's ``DocumentRefused``).
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def _position(mark: Any) -> str:  # a yaml.Mark (pure-Python or libyaml's) or None
    return f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""


def _refuse_anchors(content: bytes | str, where: str) -> None:
    for event in yaml.parse(content, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(
                where,
                f"YAML alias *{event.anchor}{_position(event.start_mark)}: anchors and "
                "aliases are not accepted (write the value out)",
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlRefused(
                where,
                f"YAML anchor &{anchor}{_position(event.start_mark)}: anchors and aliases "
                "are not accepted (write the value out)",
            )


def load_yaml(content: bytes | str, where: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse one YAML document (see the module's rules).

    ``where`` names the document in errors (a path, or a path and a member).

    Raises:
        YamlRefused: over ``max_bytes``, malformed (line and column named), or using anchors
            or aliases.
    """
    raw = content.encode("utf-8") if isinstance(content, str) else content
    if len(raw) > max_bytes:
        raise YamlRefused(
            where, f"{len(raw):,} bytes is over the {max_bytes:,}-byte limit for YAML documents"
        )
    try:
        if b"*" in raw or b"&" in raw:
            _refuse_anchors(raw, where)
        return yaml.load(raw, Loader=_Loader)  # noqa: S506 (a safe loader, see above)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        raise YamlRefused(where, f"malformed YAML{_position(mark)}: {problem}") from e
    except yaml.YAMLError as e:
        # Not positioned: an encoding error (ReaderError) and the like; one line of it.
        reason = " ".join(str(e).split())
        raise YamlRefused(where, f"malformed YAML: {reason}") from e
