"""Hand-built archive bytes for the hostile-archive tests: headers that tarfile and zipfile
refuse to write (bad checksums, global headers, NUL in names, overlapping zip entries)."""

from __future__ import annotations

import struct
import zlib

BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\x00"


def header(
    name: str | bytes,
    *,
    typeflag: bytes = b"0",
    size: int = 0,
    mode: int = 0o644,
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    prefix: bytes = b"",
    bad_checksum: bool = False,
) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    block = b"".join(
        (
            raw[:100].ljust(100, b"\x00"),
            _octal(mode, 8),
            _octal(0, 8),
            _octal(0, 8),
            _octal(size, 12),
            _octal(1735689600, 12),
            b" " * 8,
            typeflag,
            linkname.ljust(100, b"\x00"),
            magic,
            bytes(32),
            bytes(32),
            bytes(8),
            bytes(8),
            prefix.ljust(155, b"\x00"),
        )
    ).ljust(BLOCK, b"\x00")
    checksum = sum(block) + (1 if bad_checksum else 0)
    return block[:148] + f"{checksum:06o}".encode() + b"\x00 " + block[156:]


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def entry(name: str | bytes, data: bytes = b"", **kw: object) -> bytes:
    return header(name, size=len(data), **kw) + pad(data)  # type: ignore[arg-type]


def directory(name: str) -> bytes:
    return header(name.rstrip("/") + "/", typeflag=b"5", mode=0o755)


def pax_record(key: str, value: str | bytes) -> bytes:
    v = value.encode() if isinstance(value, str) else value
    rest = len(key.encode()) + len(v) + 3
    length = rest
    while rest + len(str(length)) != length:
        length = rest + len(str(length))
    return b"%d %s=%s\n" % (length, key.encode(), v)


def pax(records: dict[str, str | bytes], *, typeflag: bytes = b"x") -> bytes:
    data = b"".join(pax_record(k, v) for k, v in records.items())
    return header("././@PaxHeader", typeflag=typeflag, size=len(data)) + pad(data)


def end() -> bytes:
    return bytes(2 * BLOCK)


def tar(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return body + bytes(-len(body) % (20 * BLOCK))


# -- zip ----------------------------------------------------------------------------------------


def zip_archive(
    entries: list[tuple[bytes, bytes]],
    *,
    extra_central: list[tuple[bytes, int, int]] | None = None,
    external_attr: int = 0o100644 << 16,
    flags: int = 0,
) -> bytes:
    """Stored (uncompressed) entries; ``extra_central`` adds central directory records
    ``(name, index_of_entry_to_point_at, 0)`` that reuse another entry's local data."""
    local = b""
    central_records: list[bytes] = []
    offsets: list[tuple[int, int, int]] = []
    for name, data in entries:
        crc = zlib.crc32(data)
        offsets.append((len(local), crc, len(data)))
        local += (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                flags,
                0,
                0,
                0x21,
                crc,
                len(data),
                len(data),
                len(name),
                0,
            )
            + name
            + data
        )
    targets = [(name, i) for i, (name, _) in enumerate(entries)]
    targets += [(name, i) for name, i, _ in (extra_central or [])]
    for name, i in targets:
        offset, crc, size = offsets[i]
        central_records.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | 20,
                20,
                flags,
                0,
                0,
                0x21,
                crc,
                size,
                size,
                len(name),
                0,
                0,
                0,
                0,
                external_attr,
                offset,
            )
            + name
        )
    central = b"".join(central_records)
    eocd = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(targets), len(targets), len(central), len(local), 0
    )
    return local + central + eocd
