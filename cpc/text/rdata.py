"""A short reader for R's lazy-load databases (``data/Rdata.rdx`` + ``Rdata.rdb``), enough for
packages that ship character vectors, such as janeaustenr's six novels.

Why not a library: the maintained Python readers (``rdata``, ``pyreadr``) read ``.rds`` / ``.rda``
files, not an installed package's lazy-load database, and pull in pandas and xarray. The format
is small (R Internals, "Serialization Formats" and "Lazy loading"):

* ``Rdata.rdx`` is a gzip-compressed serialised list ``(variables, references, compressed)``;
  ``variables`` maps each object's name to ``(offset, length)`` in ``Rdata.rdb``.
* At that offset in ``Rdata.rdb`` lie ``length`` bytes: a 4-byte big-endian uncompressed size,
  then a zlib stream holding one serialised object.
* Serialisation version 2 or 3, format ``X`` (XDR: big-endian). Each item starts with a 32-bit
  flags word: bits 0-7 the type, bit 9 "has attributes", bit 10 "has tag".

Only the types these databases use are read (character, integer, logical, real vectors, lists,
pairlists of attributes, symbols, NULL and back-references to symbols); any other raises
ValueError naming it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

__all__ = ["read_lazy_load_database", "unserialize"]

NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 0, 1, 2, 9, 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP = 255, 254
NA_LENGTH = -1  # a CHARSXP of length -1 is NA_character_


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.position, self.references = data, 0, []

    def integer(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.position)
        self.position += 4
        return value

    def take(self, count: int) -> bytes:
        chunk = self.data[self.position : self.position + count]
        if len(chunk) != count:
            raise ValueError(f"R serialisation: expected {count} bytes at offset {self.position}, the data ends first")
        self.position += count
        return chunk

    def item(self):
        flags = self.integer()
        kind, has_attributes, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (NILVALUE_SXP, NILSXP):
            return None
        if kind == REFSXP:
            return self.references[(flags >> 8) - 1]
        if kind == SYMSXP:
            name = self.item()  # a CHARSXP
            self.references.append(name)
            return name
        if kind == CHARSXP:
            length = self.integer()
            return (
                None if length == NA_LENGTH else self.take(length).decode("utf-8" if flags & (1 << 15) else "latin-1")
            )
        if kind == LISTSXP:  # a pairlist (attributes): [attributes], [tag], value, rest
            pairs = {}
            while kind == LISTSXP:
                if has_attributes:
                    self.item()
                tag = self.item() if has_tag else None
                pairs[tag] = self.item()
                flags = self.integer()
                kind, has_attributes, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
            if kind not in (NILVALUE_SXP, NILSXP):
                raise ValueError(f"R serialisation: a pairlist ends in type {kind}, expected NULL")
            return pairs
        if kind in (STRSXP, VECSXP, INTSXP, LGLSXP, REALSXP):
            length = self.integer()
            if kind == STRSXP:
                value = [self.item() for _ in range(length)]
            elif kind == VECSXP:
                value = [self.item() for _ in range(length)]
            elif kind == REALSXP:
                value = list(struct.unpack(f">{length}d", self.take(8 * length)))
            else:
                value = list(struct.unpack(f">{length}i", self.take(4 * length)))
            if has_attributes:
                names = self.item().get("names")
                if kind == VECSXP and names is not None:
                    return dict(zip(names, value))
            return value
        raise ValueError(
            f"R serialisation: type {kind} is not supported by this reader (character, integer, logical, real, list)"
        )


def unserialize(data: bytes):
    """One R object serialised in XDR format (``X\\n`` header) -> Python lists, dicts (named lists), str, int, float, None."""
    if data[:2] != b"X\n":
        raise ValueError(f"R serialisation: expected the XDR header b'X\\n', got {data[:2]!r}")
    reader = _Reader(data)
    reader.position = 2
    version = reader.integer()
    reader.integer(), reader.integer()  # the writer's and the minimal reader's R versions
    if version == 3:
        reader.take(reader.integer())  # the native encoding's name
    elif version != 2:
        raise ValueError(f"R serialisation version {version} is not supported (2 or 3)")
    return reader.item()


def read_lazy_load_database(directory: str | Path, stem: str = "Rdata") -> dict:
    """``directory/stem.rdx`` + ``stem.rdb`` -> {name: object}, in the index's order."""
    directory = Path(directory)
    index = unserialize(gzip.decompress((directory / f"{stem}.rdx").read_bytes()))
    database = (directory / f"{stem}.rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        record = database[offset : offset + length]
        (size,) = struct.unpack(">I", record[:4])
        payload = zlib.decompress(record[4:])
        if len(payload) != size:
            raise ValueError(
                f"{directory / stem}.rdb: object {name!r} decompresses to {len(payload)} bytes, the header says {size}"
            )
        objects[name] = unserialize(payload)
    return objects
