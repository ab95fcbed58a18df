"""The devportal:offline profile: which input tree, which metadata, which key.

A profile body (``ProfileSpec``, kind ``devportal``, variant ``offline``) carries its
profile-specific settings in ``options``::

    {"kind": "devportal", "variant": "offline",
     "signing": {"key": "<keyid prefix>"},
     "options": {"inputDir": "portal-tree", "metadata": {"product": "..."}}}

``inputDir`` is relative to the profile file when read from one; only ``stella devportal
build --profile`` reads it. A *run* of the profile (``stella export run``, ``POST /runs``, the
workers) never reads a directory a profile names: tenants are not the operator. Runs package
the operator's tree (the ``devportal_dir`` setting, ``STELLA_DEVPORTAL_DIR``) and, unless
``serviceSpec`` is false, the service's own OpenAPI document (docs/devportal.md, "Runs").
``metadata`` is free-form JSON copied into manifest.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from export_center.devportal.errors import DevportalInputError
from export_center.planner.profiles import ProfileKind, ProfileSpec, parse_profile_spec

__all__ = ["DevportalOptions", "DevportalProfile", "load_profile", "options_of"]


class DevportalOptions(BaseModel):
    """``options`` of a devportal:offline profile."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    input_dir: str | None = None
    # Runs: package the export API's own OpenAPI document (GET /.well-known/openapi).
    service_spec: bool = True
    metadata: dict[str, Any] = {}


def options_of(spec: ProfileSpec, where: str = "profile") -> DevportalOptions:
    """The devportal options of ``spec``.

    Raises:
        DevportalInputError: not a devportal:offline profile, or invalid options.
    """
    if spec.profile_kind is not ProfileKind.DEVPORTAL_OFFLINE:
        raise DevportalInputError(
            f"{where}: a {spec.profile_kind} profile, expected {ProfileKind.DEVPORTAL_OFFLINE}"
        )
    try:
        return DevportalOptions.model_validate(spec.options)
    except ValidationError as e:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise DevportalInputError(f"{where}: {problems}") from e


@dataclass(frozen=True)
class DevportalProfile:
    input_dir: Path
    metadata: dict[str, Any]
    key: str | None


def load_profile(path: Path) -> DevportalProfile:
    """Read a devportal:offline profile body from a JSON file.

    Raises:
        DevportalInputError, BadInputError: unreadable, not JSON, or not a valid profile.
    """
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise DevportalInputError(f"{path}: cannot read: {e.strerror}") from e
    except ValueError as e:
        raise DevportalInputError(f"{path}: not valid JSON: {e}") from e
    spec = parse_profile_spec(data, where=str(path))
    options = options_of(spec, where=str(path))
    if options.input_dir is None:
        raise DevportalInputError(
            f"{path}: options.inputDir is required to build from a profile file",
            hint="name the input tree relative to the profile file",
        )
    return DevportalProfile(
        input_dir=(path.parent / options.input_dir),
        metadata=dict(options.metadata),
        key=spec.signing.key,
    )
