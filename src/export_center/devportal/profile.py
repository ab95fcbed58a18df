"""The devportal:offline profile: which input tree, which metadata, which key.

A profile body (``ProfileSpec``, kind ``devportal``, variant ``offline``) carries its
profile-specific settings in ``options``::

    {"kind": "devportal", "variant": "offline",
     "signing": {"key": "<full keyid>"},
     "options": {"inputDir": "portal-tree", "metadata": {"product": "..."}}}

``inputDir`` is relative to the profile file (no ``..``). ``metadata`` is free-form JSON (at
most 64 KiB) copied into manifest.json. The options model is the planner's
(:class:`~export_center.planner.options.DevportalOptions`), like every profile kind's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export_center.devportal.errors import DevportalInputError
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
    return DevportalProfile(
        input_dir=(path.parent / options.input_dir),
        metadata=dict(options.metadata),
        key=spec.signing.key,
    )
