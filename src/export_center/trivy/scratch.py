"""Giving back the memory of scratch data already read, while a build still runs.

A large trivy.db build writes its data three times through the page cache: the sorted runs,
each root bucket encoded apart, and the database itself (docs/trivy.md, "Writing a large
trivy.db"). The first two are scratch: read once, front to back, and deleted after.
:func:`release` frees the pages of a range already read (a hole punched in the file), so the
next write reuses memory that was just in use instead of taking new memory: on a virtual
machine whose host reclaims free guest memory within seconds, taking new memory is the expensive
part (measured: 4-6 s of system time per GB written into new memory, 0.2-0.5 s into memory freed
a moment before). The runs, the encoded buckets and the database are also no longer all on disk
at once.

Only where the kernel and file system can punch holes (Linux: ext4, xfs, btrfs, tmpfs); elsewhere
:func:`release` does nothing, and nothing else changes: it never alters a byte outside the range
it is given, and a failure is never an error.
"""

from __future__ import annotations

import ctypes
import errno
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["release"]

_FALLOC_FL_KEEP_SIZE: Final = 0x01
_FALLOC_FL_PUNCH_HOLE: Final = 0x02
#: Holes are punched in whole pages: a partly read page is kept until it is all read.
_PAGE: Final = 4096
#: What a kernel or file system that cannot punch holes answers (any other failure, e.g. a
#: descriptor not open for writing, is about that one call).
_UNSUPPORTED: Final = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


def _fallocate() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # 64-bit offsets whatever the platform's off_t (musl has only fallocate, 64-bit).
        func = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


_punch: Callable[[int, int, int, int], int] | None = _fallocate()


def release(fd: int, start: int, end: int) -> int:
    """Free the whole pages of the byte range ``[start, end)`` of the open file ``fd``: reads
    of them give zeros after, and the file keeps its size. Returns where the next range a
    reader going on should pass begins: ``end`` rounded down to a page (the page ``end`` falls
    in is freed with the next range), or ``start`` if that is further."""
    global _punch
    first = -(-start // _PAGE) * _PAGE
    last = end // _PAGE * _PAGE
    if (
        _punch is not None
        and last > first
        and _punch(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, first, last - first) != 0
        and ctypes.get_errno() in _UNSUPPORTED
    ):
        _punch = None  # this kernel or file system cannot: stop asking
    return max(start, last)
