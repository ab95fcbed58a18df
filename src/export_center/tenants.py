"""The tenant naming rule, in one place: the store, the settings (``STELLA_DEFAULT_TENANT``),
the CLI's ``--tenant`` and the API's tokens all check names with :func:`check_tenant`.

A tenant name is part of observation ids (``tenant:source:upstream:revision``), of file paths
under the data directory and of export ids, so it is kept to characters that are safe in all
three.
"""

from __future__ import annotations

from export_center.errors import BadInputError

__all__ = ["TENANT_RULE", "check_tenant"]

_TENANT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
TENANT_RULE = "1-64 characters of a-z, 0-9, '-' and '_'"


def check_tenant(tenant: str) -> str:
    """``tenant``, if it is a valid tenant name.

    Raises:
        BadInputError: it is not.
    """
    if not tenant or len(tenant) > 64 or not set(tenant) <= _TENANT_CHARS:
        raise BadInputError(f"invalid tenant {tenant!r}: use {TENANT_RULE}")
    return tenant
