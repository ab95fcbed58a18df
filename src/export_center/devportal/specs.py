"""OpenAPI validation of the ``specs/`` tree, without ever touching the network.

Every ``.json``/``.yaml``/``.yml`` file under ``specs/`` must be either an OpenAPI document
(it has a top-level ``openapi`` or ``swagger`` field; validated with openapi-spec-validator,
which detects 2.0, 3.0, 3.1 and 3.2) or a fragment that such a document references with a
relative ``$ref`` (shared components). Anything else is refused: a file that is neither is
most likely a broken spec whose version field is missing.

``$ref`` resolution is confined to the ``specs/`` directory: ``http(s)``/``ftp`` references
are refused instead of fetched (openapi-spec-validator would otherwise download them, and the
builder must behave the same on a disconnected machine), and a file reference that leaves
``specs/`` is refused as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from export_center.devportal.errors import InvalidSpecError
from export_center.safe_yaml import YamlRefused, load_yaml

__all__ = ["SPEC_SUFFIXES", "SpecFile", "validate_specs"]

logger = logging.getLogger(__name__)

#: Files under specs/ that must be OpenAPI documents (or fragments they reference).
SPEC_SUFFIXES = frozenset({".json", ".yaml", ".yml"})


@dataclass(frozen=True)
class SpecFile:
    """One spec file: its bundle-relative path (``specs/...``) and bytes."""

    path: str
    data: bytes


class _RemoteRefRefused(Exception):
    pass


def _parse(spec: SpecFile) -> Any:
    """JSON or YAML (YAML 1.1 safe subset, no anchors or aliases) into Python values.

    Raises:
        InvalidSpecError: not UTF-8, or not parseable (naming the line), or YAML anchors.
    """
    try:
        text = spec.data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidSpecError(spec.path, f"not UTF-8 (byte {e.start})") from e
    if spec.path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidSpecError(spec.path, f"line {e.lineno}: invalid JSON: {e.msg}") from e
    try:
        # The builder bounded the file's size already; timestamps stay strings, as OpenAPI
        # tools read them; anchors and aliases are refused (export_center.safe_yaml).
        doc = load_yaml(spec.data, spec.path, max_bytes=len(spec.data))
    except YamlRefused as e:
        raise InvalidSpecError(spec.path, e.reason) from e
    try:
        # JSON data model, as the resolver sees referenced files: `200:` keys become "200".
        return json.loads(json.dumps(doc))
    except (TypeError, ValueError) as e:
        raise InvalidSpecError(spec.path, f"YAML value outside the JSON data model: {e}") from e


def _is_openapi(doc: Any) -> bool:
    return isinstance(doc, dict) and ("openapi" in doc or "swagger" in doc)


class _ConfinedHandler:
    """jsonschema-path resolver handler: file URIs inside ``specs/`` only; nothing remote."""

    def __init__(self, root: Path, docs: Mapping[str, Any]) -> None:
        self._root = root
        self._docs = docs  # bundle path -> parsed document
        self.used: set[str] = set()

    def __call__(self, uri: str) -> Any:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise _RemoteRefRefused(f"$ref to {uri} refused: remote references are not fetched")
        target = Path(unquote(parts.path))
        try:
            rel = PurePosixPath(target.relative_to(self._root).as_posix())
        except ValueError as e:
            raise _RemoteRefRefused(f"$ref to {target} leaves specs/") from e
        key = f"specs/{rel}"
        if key not in self._docs:
            raise _RemoteRefRefused(f"$ref to {key}: no such JSON/YAML file under specs/")
        self.used.add(key)
        return self._docs[key]


def _handlers(handler: _ConfinedHandler) -> dict[str, Any]:
    # Every scheme the resolver could otherwise hand to urllib or requests is ours.
    return {scheme: handler for scheme in ("<all_urls>", "file", "http", "https", "ftp")}


def _refusal_in(error: BaseException) -> str | None:
    # referencing wraps our refusal in Unretrievable, then in Unresolvable.
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, _RemoteRefRefused):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _first_error(
    path: str, doc: Any, root: Path, handler: _ConfinedHandler
) -> tuple[str, str] | None:
    from jsonschema_path import SchemaPath
    from openapi_spec_validator.shortcuts import get_validator_cls
    from openapi_spec_validator.validation.exceptions import ValidatorDetectError
    from referencing.exceptions import Unresolvable

    try:
        cls = get_validator_cls(doc)
    except (ValidatorDetectError, KeyError) as e:
        version = doc.get("openapi", doc.get("swagger"))
        return "version", f"unsupported OpenAPI version {version!r}: {type(e).__name__}"
    schema_path = SchemaPath.from_dict(
        doc,
        base_uri=(root / PurePosixPath(path).relative_to("specs")).as_uri(),
        handlers=_handlers(handler),
    )
    try:
        error = next(iter(cls(schema_path).iter_errors()), None)
    except Unresolvable as e:
        return "$ref", _refusal_in(e) or f"cannot resolve {e}"
    except _RemoteRefRefused as e:
        return "$ref", str(e)
    if error is None:
        return None
    where = error.json_path if getattr(error, "json_path", "$") != "$" else "document root"
    message = error.message.split("\n", 1)[0]
    return where, message


def validate_specs(specs: Sequence[SpecFile], specs_root: Path) -> list[str]:
    """Validate every OpenAPI document; return the paths of the OpenAPI documents found.

    ``specs`` are the JSON/YAML files under ``specs/``; ``specs_root`` is the directory they
    were read from (the base of relative ``$ref`` URIs; nothing outside it is read).

    Raises:
        InvalidSpecError: a file does not parse, is an invalid OpenAPI document (naming the
            first error and where it is), has a remote or escaping ``$ref``, or is neither an
            OpenAPI document nor referenced by one.
    """
    root = specs_root.resolve()
    docs = {s.path: _parse(s) for s in sorted(specs, key=lambda s: s.path)}
    handler = _ConfinedHandler(root, docs)
    documents = [p for p, d in docs.items() if _is_openapi(d)]
    for path in documents:
        problem = _first_error(path, docs[path], root, handler)
        if problem is not None:
            where, message = problem
            raise InvalidSpecError(path, f"invalid OpenAPI document: at {where}: {message}")
        logger.debug("OpenAPI document %s is valid", path)
    for path in sorted(set(docs) - set(documents) - handler.used):
        raise InvalidSpecError(
            path,
            "not an OpenAPI document (no 'openapi' or 'swagger' field) and not referenced by one",
        )
    return documents
