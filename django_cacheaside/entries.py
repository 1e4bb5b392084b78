"""The bytes stored under ``d`` in an object's hash: a small header, then the serializer's payload.

::

    byte 0      entry format (1)
    bytes 1-8   the model's schema stamp (ASCII hex), see keys.schema_stamp()
    byte 9      kind: R (a row), N (no such row), P (pointer: the payload is [pk])
    bytes 10-   payload

An entry whose format or schema stamp differs from the reader's is a miss, never decoded.
"""

from __future__ import annotations

from typing import Final

FORMAT: Final = b"\x01"
ROW: Final = b"R"
MISSING: Final = b"N"
POINTER: Final = b"P"
HEADER_LEN: Final = 10


def header(schema: str) -> bytes:
    """The first nine bytes every entry of a model with this schema stamp starts with."""
    encoded = schema.encode("ascii")
    if len(encoded) != 8:
        raise ValueError("a schema stamp is 8 ASCII characters")
    return FORMAT + encoded


def encode(prefix: bytes, kind: bytes, payload: bytes = b"") -> bytes:
    return prefix + kind + payload


def split(entry: bytes, prefix: bytes) -> tuple[bytes, bytes] | None:
    """``(kind, payload)``, or ``None`` when the entry was written for another format or schema."""
    if len(entry) < HEADER_LEN or not entry.startswith(prefix):
        return None
    return entry[9:10], entry[HEADER_LEN:]
