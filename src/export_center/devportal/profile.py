"""The devportal:offline profile: which input tree, which metadata, which key.

A profile body (``ProfileSpec``, kind ``devportal``, variant ``offline``) carries its
profile-specific settings in ``options``::

    {"kind": "devportal", "variant": "offline",
     "signing": {"key": "<full keyid>"},
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

from export_center.devportal.errors import DevportalInputError
from export_center.errors import input_error
from export_center.planner.options import DevportalOptions
from export_center.planner.profiles import ProfileKind, ProfileSpec, parse_profile_spec

__all__ = ["DevportalOptions", "DevportalProfile", "load_profile", "options_of"]


def options_of(spec: ProfileSpec, where: str = "profile") -> DevportalOptions:
    """The devportal options of ``spec``.

    Raises:
        DevportalInputError: not a devportal:offline profile, or invalid options.
    """
    if spec.profile_kind is not ProfileKind.DEVPORTAL_OFFLINE:
        raise DevportalInputError(
            f"{where}: a {spec.profile_kind} profile, expected {ProfileKind.DEVPORTAL_OFFLINE}"
        )
    options = spec.options
    if not isinstance(options, DevportalOptions):  # the kind's model, validated with the spec
        raise DevportalInputError(f"{where}: options are not devportal:offline options")
    return options


_MAX_PROFILE_BYTES = 1 << 20  # a profile is a few lines; /dev/zero must not fill the memory


@dataclass(frozen=True)
class DevportalProfile:
    input_dir: Path
    metadata: dict[str, Any]
    key: str | None


def load_profile(path: Path) -> DevportalProfile:
    """Read a devportal:offline profile body from a JSON file.

    Raises:
        NotFoundError: no such file.
        DevportalInputError, BadInputError: unreadable, too large, not JSON, or not a valid
            profile.
    """
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise input_error(path, "the profile", e) from e
    if len(raw) > _MAX_PROFILE_BYTES:
        raise DevportalInputError(f"{path}: over the {_MAX_PROFILE_BYTES:,}-byte profile limit")
    try:
        data = json.loads(raw)
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
