"""A write-once, streaming writer (and a small reader) for bbolt files, format version 2.

Trivy's vulnerability database ``trivy.db`` is a bbolt (BoltDB) file. We never update one in
place, so the writer lays the B+tree out bottom-up: leaf pages are written as soon as they fill,
each finished page hands its first key and page id up to the level above, and a parent page is
written only after all of its children. No page is ever rewritten; the two meta pages, which
point at the root, are filled in last. Memory stays bounded by the page being filled on each
level of each open bucket, whatever the number of keys.

Layout of the file (see docs/trivy.md, "What Trivy reads"):

* page 0 and 1: meta pages (identical but for the page id and txid 0/1, so the second wins);
* page 2: an empty freelist page;
* pages 3…: leaf, branch and overflow pages in the order they were finished;
* the root bucket's pages come last.

Nested buckets stream the same way: a child bucket is written completely (its pages or, when
small, its inline page image) before its header becomes an entry of the parent. Like bbolt, a
bucket without sub-buckets whose inline page image is at most a quarter page is stored inline.

Keys must be given in strictly increasing byte order within each bucket; the writer refuses
anything else instead of sorting (sorting would mean holding the data in memory).

A root bucket can also be written apart, in another process (:func:`encode_bucket`), and placed
later (:meth:`BoltWriter.put_encoded`): its pages are numbered as if they began a file, and
placing it moves every page id they hold (their own, branch children, roots of nested buckets)
by where they land. The file is the same bytes as if the bucket had been written in place.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from export_center.errors import BadInputError
from export_center.trivy.scratch import release

__all__ = [
    "MAX_KEY_SIZE",
    "PAGE_SIZE",
    "BoltFormatError",
    "BoltReader",
    "BoltWriteError",
    "BoltWriter",
    "BucketWriter",
    "EncodedBucket",
    "ReadBucket",
    "encode_bucket",
]

PAGE_SIZE: Final = 4096
MAX_KEY_SIZE: Final = 32768
MAX_VALUE_SIZE: Final = (1 << 31) - 2

_MAGIC: Final = 0xED0CDAED
_VERSION: Final = 2

_BRANCH_PAGE: Final = 0x01
_LEAF_PAGE: Final = 0x02
_META_PAGE: Final = 0x04
_FREELIST_PAGE: Final = 0x10
_BUCKET_LEAF_FLAG: Final = 0x01

_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_LEAF_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH_ELEM = struct.Struct("<IIQ")  # pos, ksize, pgid
_BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence
_META_BODY = struct.Struct("<IIIIQQQQQ")  # magic … txid: the 56 checksummed bytes
_U64 = struct.Struct("<Q")
_HEADER_SIZE: Final = 16
#: The bucket header of an inline bucket: no root page, sequence 0.
_INLINE_HEADER: Final = _BUCKET_HEADER.pack(0, 0)
_ELEM_SIZE: Final = 16

_FREELIST_PGID: Final = 2
_FIRST_DATA_PGID: Final = 3
# Pages hold fewer than 0xFFFF elements (the count field saturates there).
_MAX_ELEMENTS: Final = 0xFFFE

_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_U64_MASK: Final = (1 << 64) - 1


class BoltWriteError(BadInputError):
    """The writer was given keys out of order, a bad key or value, or was misused."""


class BoltFormatError(BadInputError):
    """A file is not a well-formed bbolt file (as far as this small reader checks)."""


def _fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _U64_MASK
    return h


def _leaf_parts(page_id: int, entries: Sequence[tuple[bytes, bytes, int]]) -> list[bytes]:
    """The pieces of a leaf page image, in order: header, elements, then keys and values.
    Joined by the caller: most leaves are inline buckets of one or two keys, where filling a
    preallocated buffer slice by slice cost twice as much."""
    n = len(entries)
    parts = [_PAGE_HEADER.pack(page_id, _LEAF_PAGE, n, 0)]
    data: list[bytes] = []
    pos = _ELEM_SIZE * n  # from an element to its key: the elements after it, then the data
    pack = _LEAF_ELEM.pack
    for key, value, flags in entries:
        klen = len(key)
        vlen = len(value)
        parts.append(pack(flags, pos, klen, vlen))
        data.append(key)
        data.append(value)
        pos += klen + vlen - _ELEM_SIZE
    parts += data
    return parts


def _encode_leaf(page_id: int, entries: list[tuple[bytes, bytes, int]], size: int) -> bytearray:
    """A leaf page image of ``size`` bytes (unpadded)."""
    buf = bytearray(b"".join(_leaf_parts(page_id, entries)))
    if len(buf) < size:
        buf.extend(bytes(size - len(buf)))
    return buf


def _encode_branch(page_id: int, entries: list[tuple[bytes, int]], size: int) -> bytearray:
    n = len(entries)
    buf = bytearray(size)
    _PAGE_HEADER.pack_into(buf, 0, page_id, _BRANCH_PAGE, n, 0)
    elem_off = _HEADER_SIZE
    data_off = _HEADER_SIZE + _ELEM_SIZE * n
    for key, pgid in entries:
        klen = len(key)
        _BRANCH_ELEM.pack_into(buf, elem_off, data_off - elem_off, klen, pgid)
        buf[data_off : data_off + klen] = key
        data_off += klen
        elem_off += _ELEM_SIZE
    return buf


class _PageSink:
    """Hands out page ids in file order and writes each page exactly once."""

    def __init__(self, fh: BinaryIO, page_size: int) -> None:
        self._fh = fh
        self.page_size = page_size
        self.next_pgid = _FIRST_DATA_PGID

    def write(self, image: bytearray) -> int:
        """Write a page image that already carries ``self.next_pgid`` as its id; pad it to whole
        pages, set its overflow count and return its id."""
        pgid = self.next_pgid
        npages = max(1, -(-len(image) // self.page_size))
        struct.pack_into("<I", image, 12, npages - 1)
        image.extend(bytes(npages * self.page_size - len(image)))
        self._fh.write(image)
        self.next_pgid += npages
        return pgid

    def copy_relocated(self, encoded: EncodedBucket) -> int:
        """Append the pages of ``encoded`` with their ids moved to where they land here (page
        ids, branch children and the roots of nested buckets); returns how far they moved.
        One pass: read a few MiB of whole pages, move them in the buffer, write it.

        The encoded file is consumed: each range read is released at once
        (:func:`~export_center.trivy.scratch.release`, so these writes reuse its memory) and
        the file is left empty, so that placing it again is refused instead of copying zeros.
        """
        delta = self.next_pgid - _FIRST_DATA_PGID
        size = encoded.pages * self.page_size
        assert encoded.path is not None
        buf = bytearray(_COPY_CHUNK)
        held = 0  # bytes in ``buf`` not written yet: the start of a page span
        left = size
        # Opened for writing too: only a writable file's pages can be released.
        with encoded.path.open("r+b", buffering=0) as src:
            if (actual := os.fstat(src.fileno()).st_size) != size:
                placed = " (empty: placed already?)" if actual == 0 else ""
                raise BoltWriteError(
                    f"{encoded.path}: {actual} bytes, not the {encoded.pages} pages encoded{placed}"
                )
            while left or held:
                n = src.readinto(memoryview(buf)[held : held + min(len(buf) - held, left)])
                # Deleted after this copy: the pages just read can serve the writes.
                release(src.fileno(), size - left, size - left + n)
                if n == 0 and left:
                    raise BoltWriteError(f"{encoded.path}: shorter than its {size} bytes")
                left -= n
                end = held + n
                off = 0
                while off < end:
                    span = (_PAGE_HEADER.unpack_from(buf, off)[3] + 1) * self.page_size
                    if off + span > end:
                        break  # the rest of this span is still in the file
                    _relocate_page(buf, off, delta, nested=encoded.nested)
                    off += span
                if off == 0 and n == 0:  # a page claims more overflow pages than follow it
                    raise BoltWriteError(f"{encoded.path}: a page runs past the end")
                self._fh.write(memoryview(buf)[:off])
                held = end - off
                buf[:held] = buf[off:end]
                if off == 0 and held == len(buf):  # one span larger than the buffer
                    buf.extend(bytes(span - len(buf)))
            src.truncate(0)
        self.next_pgid += encoded.pages
        return delta


#: Bytes of pages relocated and written at a time.
_COPY_CHUNK: Final = 4 << 20


def _relocate_page(buf: bytearray, off: int, delta: int, *, nested: bool) -> None:
    """Move the page at ``off`` and the page ids it refers to by ``delta``: its own id, its
    children's (a branch) and, when ``nested``, the roots of the sub-buckets it holds."""
    pgid, flags, count, _overflow = _PAGE_HEADER.unpack_from(buf, off)
    _U64.pack_into(buf, off, pgid + delta)
    elem = off + _HEADER_SIZE
    if flags & _BRANCH_PAGE:
        for _ in range(count):
            child = _U64.unpack_from(buf, elem + 8)[0]
            _U64.pack_into(buf, elem + 8, child + delta)
            elem += _ELEM_SIZE
    elif nested and flags & _LEAF_PAGE:
        for _ in range(count):
            eflags, pos, ksize, _vsize = _LEAF_ELEM.unpack_from(buf, elem)
            if eflags & _BUCKET_LEAF_FLAG:
                value = elem + pos + ksize
                root = _U64.unpack_from(buf, value)[0]
                if root:  # 0: an inline bucket, whose page image refers to nothing
                    _U64.pack_into(buf, value, root + delta)
            elem += _ELEM_SIZE


class _TreeBuilder:
    """Builds one bucket's B+tree bottom-up from entries in sorted order.

    Each level (the leaves, then ``_branches[0]``, ``_branches[1]``… upwards) holds only the
    entries of the one page being filled; when the next entry would not fit, the page is
    written and its ``(first key, pgid)`` is added to the level above (created on demand). A
    page only grows past one page size when it holds a single entry too big for a page: that
    entry gets overflow pages of its own.
    """

    def __init__(self, sink: _PageSink) -> None:
        self._sink = sink
        self._page_size = sink.page_size
        self._leaf: list[tuple[bytes, bytes, int]] = []
        self._leaf_size = _HEADER_SIZE
        # Branch levels, lowest first: pending (key, pgid) entries and their encoded size.
        self._branches: list[list[tuple[bytes, int]]] = []
        self._branch_sizes: list[int] = []

    def add(self, key: bytes, value: bytes, flags: int) -> None:
        need = _ELEM_SIZE + len(key) + len(value)
        if self._leaf and (
            self._leaf_size + need > self._page_size or len(self._leaf) >= _MAX_ELEMENTS
        ):
            self._flush_leaf()
        self._leaf.append((key, value, flags))
        self._leaf_size += need

    def _flush_leaf(self) -> None:
        entries = self._leaf
        pgid = self._sink.write(_encode_leaf(self._sink.next_pgid, entries, self._leaf_size))
        first = entries[0][0] if entries else b""
        self._leaf = []
        self._leaf_size = _HEADER_SIZE
        self._add_branch(0, first, pgid)

    def _add_branch(self, level: int, key: bytes, pgid: int) -> None:
        if level == len(self._branches):
            self._branches.append([])
            self._branch_sizes.append(_HEADER_SIZE)
        need = _ELEM_SIZE + len(key)
        pending = self._branches[level]
        if pending and (
            self._branch_sizes[level] + need > self._page_size or len(pending) >= _MAX_ELEMENTS
        ):
            self._flush_branch(level)
            pending = self._branches[level]
        pending.append((key, pgid))
        self._branch_sizes[level] += need

    def _flush_branch(self, level: int) -> None:
        entries = self._branches[level]
        image = _encode_branch(self._sink.next_pgid, entries, self._branch_sizes[level])
        pgid = self._sink.write(image)
        self._branches[level] = []
        self._branch_sizes[level] = _HEADER_SIZE
        self._add_branch(level + 1, entries[0][0], pgid)

    def finish(self) -> int:
        """Write every pending page and return the root page id."""
        if not self._branches:
            # A single leaf (possibly empty) is the whole tree.
            return self._sink.write(_encode_leaf(self._sink.next_pgid, self._leaf, self._leaf_size))
        self._flush_leaf()
        level = 0
        # A level whose pending page has no level above it is the root; every level below it
        # has been flushed into it.
        while level + 1 < len(self._branches):
            self._flush_branch(level)
            level += 1
        entries = self._branches[level]
        return self._sink.write(
            _encode_branch(self._sink.next_pgid, entries, self._branch_sizes[level])
        )


class BucketWriter:
    """A bucket being written. Obtain one from :meth:`BoltWriter.bucket` or
    :meth:`BucketWriter.bucket`; use it as a context manager (or call :meth:`close`).

    ``put`` and ``bucket`` calls must come in strictly increasing key order, the names of
    sub-buckets included, and a sub-bucket must be closed before the next call on its parent.
    """

    def __init__(
        self, sink: _PageSink, name: bytes, parent: BucketWriter | None, *, inlinable: bool
    ) -> None:
        self._sink = sink
        self._name = name
        self._parent = parent
        self._last_key: bytes | None = None
        self._child: BucketWriter | None = None
        self._closed = False
        # Until a sub-bucket appears or the entries outgrow a quarter page, keep them here: the
        # bucket may end up inline in its parent's leaf.
        self._inline: list[tuple[bytes, bytes, int]] | None = [] if inlinable else None
        self._inline_size = _HEADER_SIZE
        self._inline_max = sink.page_size // 4
        self._tree: _TreeBuilder | None = None if inlinable else _TreeBuilder(sink)
        self._value: bytes | None = None
        self._nested = False  # a sub-bucket was written in it

    @property
    def name(self) -> bytes:
        return self._name

    def _where(self) -> str:
        parts: list[str] = []
        b: BucketWriter | None = self
        while b is not None and b._parent is not None:
            parts.append(b._name.decode("utf-8", "backslashreplace"))
            b = b._parent
        return "/".join(reversed(parts)) or "<root>"

    def _check_key(self, key: bytes) -> None:
        if self._closed:
            raise BoltWriteError(f"bucket {self._where()!r} is closed")
        if self._child is not None:
            raise BoltWriteError(
                f"bucket {self._where()!r}: sub-bucket {self._child._where()!r} is still open",
                hint="close a sub-bucket before writing the next key of its parent",
            )
        if not isinstance(key, bytes | bytearray):
            raise BoltWriteError(f"bucket {self._where()!r}: keys are bytes, got {type(key)!r}")
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise BoltWriteError(
                f"bucket {self._where()!r}: key length {len(key)} is outside 1..{MAX_KEY_SIZE}"
            )
        if self._last_key is not None and key <= self._last_key:
            what = "duplicate" if key == self._last_key else "unsorted"
            raise BoltWriteError(
                f"bucket {self._where()!r}: {what} key {bytes(key)!r} after {self._last_key!r}",
                hint="give keys (and sub-bucket names) in strictly increasing byte order",
            )

    def put(self, key: bytes, value: bytes) -> None:
        """Add ``key`` → ``value``. Raises BoltWriteError on an out-of-order or bad key."""
        self._check_key(key)
        if len(value) > MAX_VALUE_SIZE:
            raise BoltWriteError(f"bucket {self._where()!r}: value of {key!r} is too large")
        key = bytes(key)
        self._last_key = key
        self._add(key, bytes(value), 0)

    def put_all(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """:meth:`put` of every pair, in order (keys strictly increasing); returns how many.
        The same checks, made in one loop: a trivy.db's ``vulnerability`` bucket takes a
        million keys, and the call per key was a fifth of writing it."""
        n = 0
        it = iter(items)
        for key, value in it:  # while the bucket may still be inline: the general path
            self.put(key, value)
            n += 1
            if self._tree is not None:
                break
        tree = self._tree
        if tree is None or not n:  # all taken above, or nothing to take
            return n
        # A put went through above: the bucket is open, no sub-bucket is, ``last`` is set.
        last = self._last_key
        assert last is not None
        for key, value in it:
            if type(key) is not bytes or not last < key or len(key) > MAX_KEY_SIZE:
                self._last_key = last
                self.put(key, value)  # raises what put would (or takes a bytearray key)
                last = self._last_key
                n += 1
                continue
            if type(value) is not bytes:
                value = bytes(value)
            if len(value) > MAX_VALUE_SIZE:
                raise BoltWriteError(f"bucket {self._where()!r}: value of {key!r} is too large")
            tree.add(key, value, 0)
            last = key
            n += 1
        self._last_key = last
        return n

    def bucket(self, name: bytes) -> BucketWriter:
        """Open the sub-bucket ``name``; its pages are written before its parent's entry.

        Raises BoltWriteError when ``name`` is not after the previous key.
        """
        self._check_key(name)
        name = bytes(name)
        self._last_key = name
        self._to_tree()  # a bucket with sub-buckets is never inline
        self._nested = True
        child = BucketWriter(self._sink, name, self, inlinable=True)
        self._child = child
        return child

    def put_bucket(self, name: bytes, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Write the whole sub-bucket ``name`` holding ``items`` (keys strictly increasing): the
        bytes of :meth:`bucket`, a :meth:`put` per item and ``close``, in one call. Most
        buckets of a trivy.db are a package with a few keys, stored inline: this skips a
        writer object and the per-key checks for them (a quarter of the merge's time).

        Raises BoltWriteError as :meth:`bucket` and :meth:`put` would.
        """
        n = len(items)
        size = _HEADER_SIZE + _ELEM_SIZE * n
        last = None
        elems: list[bytes] = []
        data: list[bytes] = []
        pos = _ELEM_SIZE * n  # from an element to its key: as in _leaf_parts
        for key, value in items:
            if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
                break  # let the general path say what is wrong
            if last is not None and key <= last:
                break
            last = key
            klen, vlen = len(key), len(value)
            size += klen + vlen
            elems.append(_LEAF_ELEM.pack(0, pos, klen, vlen))
            data.append(key)
            data.append(value)
            pos += klen + vlen - _ELEM_SIZE
        else:
            if size <= self._inline_max:
                last_name = self._last_key
                if (  # _check_key's tests inline: 1.55 s against 1.8 s for 900,000 buckets
                    type(name) is not bytes
                    or (last_name is not None and name <= last_name)
                    or self._child is not None
                    or self._closed
                    or not 0 < len(name) <= MAX_KEY_SIZE
                ):
                    self._check_key(name)  # says what is wrong (or takes a bytearray)
                    name = bytes(name)
                self._last_key = name
                if self._inline is not None:
                    self._to_tree()  # a bucket with sub-buckets is never inline
                self._nested = True
                # The bucket header, then the image _leaf_parts would make (an inline page is
                # never padded), its elements built in the checking loop above: one pass over
                # the items and no entry tuples (1.6 s against 2.15 s for 900,000 one-key
                # buckets through _leaf_parts). Most package buckets hold one key.
                head = _INLINE_HEADER + _PAGE_HEADER.pack(0, _LEAF_PAGE, n, 0)
                assert self._tree is not None
                self._tree.add(name, b"".join([head, *elems, *data]), _BUCKET_LEAF_FLAG)
                return
        with self.bucket(name) as child:
            for key, value in items:
                child.put(key, value)

    def _add(self, key: bytes, value: bytes, flags: int) -> None:
        if self._inline is not None:
            self._inline.append((key, value, flags))
            self._inline_size += _ELEM_SIZE + len(key) + len(value)
            if self._inline_size > self._inline_max:
                self._to_tree()
            return
        assert self._tree is not None
        self._tree.add(key, value, flags)

    def _to_tree(self) -> None:
        if self._inline is None:
            return
        self._tree = _TreeBuilder(self._sink)
        for key, value, flags in self._inline:
            self._tree.add(key, value, flags)
        self._inline = None

    def _child_done(self, child: BucketWriter, value: bytes) -> None:
        assert child is self._child
        self._child = None
        self._add(child._name, value, _BUCKET_LEAF_FLAG)

    def close(self) -> None:
        """Finish the bucket: write its remaining pages and add it to its parent."""
        if self._closed:
            return
        if self._child is not None:
            raise BoltWriteError(
                f"bucket {self._where()!r}: sub-bucket {self._child._where()!r} is still open"
            )
        self._closed = True
        if self._inline is not None:
            value = b"".join([_INLINE_HEADER, *_leaf_parts(0, self._inline)])  # never padded
            self._inline = None
        else:
            assert self._tree is not None
            value = _BUCKET_HEADER.pack(self._tree.finish(), 0)
            self._tree = None
        self._value = value
        if self._parent is not None:
            self._parent._child_done(self, value)

    def _root_pgid(self) -> int:
        assert self._value is not None
        root: int = _BUCKET_HEADER.unpack_from(self._value)[0]
        return root

    def __enter__(self) -> BucketWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


@dataclass(frozen=True)
class EncodedBucket:
    """A root bucket written on its own (:func:`encode_bucket`), e.g. in another process, for
    :meth:`BoltWriter.put_encoded` to place. Its pages are numbered as if they were the first
    of a file; ``value`` is its entry in the root bucket as written there."""

    name: bytes
    value: bytes
    path: Path | None  # the pages; None for an inline bucket (no pages)
    pages: int
    page_size: int
    nested: bool  # it holds sub-buckets (whose roots move with its pages)


def encode_bucket(
    path: Path, name: bytes, fill: Callable[[BucketWriter], None], *, page_size: int = PAGE_SIZE
) -> EncodedBucket:
    """Write the root bucket ``name`` into ``path`` apart from any file: ``fill`` makes the
    calls it would make on :meth:`BoltWriter.bucket`. :meth:`BoltWriter.put_encoded` then gives
    the same bytes as writing the bucket there directly."""
    name = bytes(name)
    with path.open("wb", buffering=1 << 20) as fh:
        sink = _PageSink(fh, page_size)
        bucket = BucketWriter(sink, name, None, inlinable=True)
        fill(bucket)
        bucket.close()
    pages = sink.next_pgid - _FIRST_DATA_PGID
    assert bucket._value is not None
    if not pages:
        path.unlink()
    return EncodedBucket(
        name, bucket._value, path if pages else None, pages, page_size, bucket._nested
    )


class BoltWriter:
    """Writes a new bbolt file at ``path`` through a temporary file in the same directory,
    renamed into place by :meth:`close` (Trivy holds a lock on its trivy.db: never write the
    live file). The same calls always produce the same bytes.

    Use as a context manager; on an exception the temporary file is removed and ``path`` is left
    untouched::

        with BoltWriter(path) as db, db.bucket(b"vulnerability") as b:
            b.put(b"CVE-2024-0001", b"{}")
    """

    def __init__(
        self, path: str | os.PathLike[str], *, page_size: int = PAGE_SIZE, durable: bool = True
    ) -> None:
        # durable=False skips the fsync before the rename: for a file that is only an
        # intermediate (the trivy:db adapter archives it and syncs the archive).
        if page_size < 1024 or page_size & (page_size - 1):
            raise BoltWriteError(f"page size {page_size} is not a power of two >= 1024")
        self._path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._path.parent)
        self._tmp = Path(tmp)
        self._fh: BinaryIO = os.fdopen(fd, "wb", buffering=1 << 20)
        self._page_size = page_size
        self._durable = durable
        try:
            # Pages 0 and 1 (metas) are filled in by close(); page 2 is the empty freelist.
            self._fh.write(bytes(2 * page_size))
            freelist = bytearray(page_size)
            _PAGE_HEADER.pack_into(freelist, 0, _FREELIST_PGID, _FREELIST_PAGE, 0, 0)
            self._fh.write(freelist)
        except BaseException:
            self._discard()
            raise
        self._sink = _PageSink(self._fh, page_size)
        self._root = BucketWriter(self._sink, b"", None, inlinable=False)
        self._done = False

    @property
    def path(self) -> Path:
        return self._path

    def bucket(self, name: bytes) -> BucketWriter:
        """Open the root bucket ``name``. Root buckets must come in strictly increasing byte
        order. Raises BoltWriteError otherwise."""
        return self._root.bucket(name)

    def put_encoded(self, encoded: EncodedBucket) -> None:
        """Place a root bucket written by :func:`encode_bucket`, in the order :meth:`bucket`
        would have taken it; its file is consumed (left empty: see ``_PageSink.copy_relocated``).
        Raises BoltWriteError as :meth:`bucket` would, or when the bucket was encoded for
        another page size or its pages are not all there (or were placed already)."""
        root = self._root
        root._check_key(encoded.name)
        if encoded.page_size != self._page_size:
            raise BoltWriteError(
                f"bucket {encoded.name!r} was encoded with {encoded.page_size}-byte pages, "
                f"this file has {self._page_size}"
            )
        value = encoded.value
        if encoded.pages:
            delta = self._sink.copy_relocated(encoded)
            pgid, sequence = _BUCKET_HEADER.unpack_from(value)
            value = _BUCKET_HEADER.pack(pgid + delta, sequence)
        root._last_key = encoded.name
        root._add(encoded.name, value, _BUCKET_LEAF_FLAG)

    def close(self) -> None:
        """Write the root and the meta pages, then atomically rename the file into place.

        Raises BoltWriteError if a bucket is still open.
        """
        if self._done:
            return
        try:
            self._root.close()
            root = self._root._root_pgid()
            high_water = self._sink.next_pgid
            self._fh.seek(0)
            for txid in (0, 1):
                self._fh.write(self._meta_page(txid, root, high_water))
            self._fh.flush()
            if self._durable:
                os.fsync(self._fh.fileno())
            self._fh.close()
        except BaseException:
            self._discard()
            raise
        self._done = True
        # mkstemp creates 0600; make the mode independent of the umask and readable by scanners.
        self._tmp.chmod(0o644)
        self._tmp.replace(self._path)

    def _meta_page(self, txid: int, root: int, high_water: int) -> bytes:
        body = _META_BODY.pack(
            _MAGIC, _VERSION, self._page_size, 0, root, 0, _FREELIST_PGID, high_water, txid
        )
        page = bytearray(self._page_size)
        _PAGE_HEADER.pack_into(page, 0, txid, _META_PAGE, 0, 0)
        page[_HEADER_SIZE : _HEADER_SIZE + len(body)] = body
        _U64.pack_into(page, _HEADER_SIZE + len(body), _fnv1a64(body))
        return bytes(page)

    def abort(self) -> None:
        """Drop the temporary file; ``path`` is left untouched."""
        if not self._done:
            self._done = True
            self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BoltWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --------------------------------------------------------------------------------------------
# Reader


class ReadBucket:
    """A bucket of an open :class:`BoltReader`: iterate with :meth:`items`, look up with
    :meth:`get`. Values are ``bytes``; sub-buckets are ``ReadBucket`` values."""

    def __init__(self, reader: BoltReader, root: int, inline: bytes | None, where: str) -> None:
        self._reader = reader
        self._root = root
        self._inline = inline
        self.where = where

    @property
    def is_inline(self) -> bool:
        return self._inline is not None

    def _entry(self, key: bytes, value: bytes, flags: int) -> bytes | ReadBucket:
        if flags & _BUCKET_LEAF_FLAG:
            return self._reader._open_bucket(value, f"{self.where}/{key!r}")
        return value

    def _root_page(self) -> _Page:
        if self._inline is not None:
            page = _Page(self._inline, f"{self.where} (inline)")
            if not page.flags & _LEAF_PAGE:
                raise BoltFormatError(f"{self.where}: inline bucket is not a leaf page")
            return page
        return self._reader._page(self._root, self.where)

    def items(self) -> Iterator[tuple[bytes, bytes | ReadBucket]]:
        """Every entry in key order.

        Raises BoltFormatError on a malformed page, keys out of order, or a branch key that is
        not its child's first key.
        """
        last: bytes | None = None
        for key, value, flags in self._walk(self._root_page(), 0):
            if last is not None and key <= last:
                raise BoltFormatError(f"{self.where}: key {key!r} is not after {last!r}")
            last = key
            yield key, self._entry(key, value, flags)

    def keys(self) -> Iterator[bytes]:
        for key, _value in self.items():
            yield key

    def get(self, key: bytes) -> bytes | ReadBucket | None:
        """The value or sub-bucket at ``key``, or None."""
        page = self._root_page()
        while page.flags & _BRANCH_PAGE:
            child: int | None = None
            for bkey, pgid in page.branch_elements():
                if bkey > key and child is not None:
                    break
                child = pgid
            if child is None:
                return None
            page = self._reader._page(child, self.where)
        for lkey, value, flags in page.leaf_elements():
            if lkey == key:
                return self._entry(lkey, value, flags)
        return None

    def to_dict(self) -> dict[bytes, object]:
        """The whole bucket as nested dicts (for tests on small files)."""
        out: dict[bytes, object] = {}
        for key, value in self.items():
            out[key] = value.to_dict() if isinstance(value, ReadBucket) else value
        return out

    def _walk(self, page: _Page, depth: int) -> Iterator[tuple[bytes, bytes, int]]:
        if depth > 64:
            raise BoltFormatError(f"{self.where}: tree deeper than 64 levels (cycle?)")
        if page.flags & _LEAF_PAGE:
            yield from page.leaf_elements()
        elif page.flags & _BRANCH_PAGE:
            for bkey, child in page.branch_elements():
                first = True
                for entry in self._walk(self._reader._page(child, self.where), depth + 1):
                    if first and entry[0] != bkey:
                        raise BoltFormatError(
                            f"{page.where} names child {child} by {bkey!r} but its first key "
                            f"is {entry[0]!r}"
                        )
                    first = False
                    yield entry
        else:
            raise BoltFormatError(f"{page.where}: not a branch or leaf page ({page.flags:#x})")


class _Page:
    """One page image (with its overflow pages) as read from the file."""

    __slots__ = ("count", "data", "flags", "overflow", "page_id", "where")

    def __init__(self, data: bytes, where: str) -> None:
        if len(data) < _HEADER_SIZE:
            raise BoltFormatError(f"{where}: truncated page")
        self.page_id, self.flags, self.count, self.overflow = _PAGE_HEADER.unpack_from(data)
        self.data = data
        self.where = where
        if _HEADER_SIZE + self.count * _ELEM_SIZE > len(data):
            raise BoltFormatError(f"{where}: {self.count} elements do not fit the page")

    def _slice(self, elem_off: int, pos: int, size: int) -> bytes:
        start = elem_off + pos
        end = start + size
        if end > len(self.data):
            raise BoltFormatError(f"{self.where}: element data runs past the page")
        return self.data[start:end]

    def leaf_elements(self) -> Iterator[tuple[bytes, bytes, int]]:
        for i in range(self.count):
            off = _HEADER_SIZE + i * _ELEM_SIZE
            flags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(self.data, off)
            kv = self._slice(off, pos, ksize + vsize)
            yield kv[:ksize], kv[ksize:], flags

    def branch_elements(self) -> Iterator[tuple[bytes, int]]:
        for i in range(self.count):
            off = _HEADER_SIZE + i * _ELEM_SIZE
            pos, ksize, pgid = _BRANCH_ELEM.unpack_from(self.data, off)
            yield self._slice(off, pos, ksize), pgid


class BoltReader:
    """Read-only access to a bbolt file: enough to check what :class:`BoltWriter` writes and
    to read real Trivy databases. Both meta pages must be valid; the higher txid wins.

    Raises BoltFormatError for a file that is not a bbolt version 2 file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._fd = os.open(self._path, os.O_RDONLY)
        try:
            self._size = os.fstat(self._fd).st_size
            meta0 = self._read_meta(0, None)
            meta1 = self._read_meta(1, meta0[2])
            best = max((meta0, meta1), key=lambda m: m[8])
            self.page_size: int = best[2]
            self.root_pgid: int = best[4]
            self.freelist_pgid: int = best[6]
            self.high_water: int = best[7]
            self.txid: int = best[8]
            if self.high_water * self.page_size > self._size:
                raise BoltFormatError(
                    f"{self._path}: high-water mark {self.high_water} is past the end of file"
                )
        except BaseException:
            os.close(self._fd)
            raise

    def _pread(self, size: int, offset: int, where: str) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise BoltFormatError(f"{where}: file ends early")
        return data

    def _read_meta(self, index: int, page_size: int | None) -> tuple[int, ...]:
        where = f"{self._path}: meta page {index}"
        if page_size is None:
            # The first meta tells the page size.
            (page_size,) = struct.unpack("<I", self._pread(4, _HEADER_SIZE + 8, where))
            if page_size < 1024 or page_size & (page_size - 1):
                raise BoltFormatError(f"{where}: page size {page_size} is not valid")
        raw = self._pread(_HEADER_SIZE + _META_BODY.size + 8, index * page_size, where)
        _pid, flags, _count, _overflow = _PAGE_HEADER.unpack_from(raw)
        if not flags & _META_PAGE:
            raise BoltFormatError(f"{where}: not a meta page (flags {flags:#x})")
        body = raw[_HEADER_SIZE : _HEADER_SIZE + _META_BODY.size]
        fields = _META_BODY.unpack(body)
        if fields[0] != _MAGIC:
            raise BoltFormatError(f"{where}: bad magic {fields[0]:#x}")
        if fields[1] != _VERSION:
            raise BoltFormatError(f"{where}: format version {fields[1]}, expected 2")
        (checksum,) = _U64.unpack_from(raw, _HEADER_SIZE + _META_BODY.size)
        if checksum != _fnv1a64(body):
            raise BoltFormatError(f"{where}: checksum error")
        return fields

    def _page(self, pgid: int, where: str) -> _Page:
        if not 2 <= pgid < self.high_water:
            raise BoltFormatError(f"{where}: page id {pgid} is out of range")
        offset = pgid * self.page_size
        head = self._pread(_HEADER_SIZE, offset, where)
        pid, _flags, _count, overflow = _PAGE_HEADER.unpack(head)
        if pid != pgid:
            raise BoltFormatError(f"{where}: page {pgid} carries id {pid}")
        if pgid + overflow >= self.high_water:
            raise BoltFormatError(f"{where}: page {pgid} overflows past the high-water mark")
        data = self._pread((overflow + 1) * self.page_size, offset, where)
        return _Page(data, f"{where} (page {pgid})")

    def _open_bucket(self, value: bytes, where: str) -> ReadBucket:
        if len(value) < _BUCKET_HEADER.size:
            raise BoltFormatError(f"{where}: bucket header is {len(value)} bytes")
        root, _seq = _BUCKET_HEADER.unpack_from(value)
        if root == 0:
            return ReadBucket(self, 0, value[_BUCKET_HEADER.size :], where)
        return ReadBucket(self, root, None, where)

    def root(self) -> ReadBucket:
        """The root bucket: its entries are the top-level buckets."""
        return ReadBucket(self, self.root_pgid, None, str(self._path))

    def bucket(self, name: bytes) -> ReadBucket | None:
        """The top-level bucket ``name``, or None."""
        found = self.root().get(name)
        return found if isinstance(found, ReadBucket) else None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BoltReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
