"""Archives in and out.

- :mod:`.writer`: the deterministic writer every bundle goes through (PAX tar, zstd or gzip,
  byte-identical output on any host, SHA-256 computed while writing).
- :mod:`.reader`: the one safe reader every import and ingestion goes through; traversal,
  link, device, duplicate, bomb and size guards live there and nowhere else.
"""

from export_center.archive.reader import Limits, Member, iter_members, safe_extract
from export_center.archive.writer import (
    DeterministicTarWriter,
    FileSource,
    TreeEntry,
    WriteResult,
    write_tree,
)

__all__ = [
    "DeterministicTarWriter",
    "FileSource",
    "Limits",
    "Member",
    "TreeEntry",
    "WriteResult",
    "iter_members",
    "safe_extract",
    "write_tree",
]
