"""The bytes stored under ``d`` in an object's hash: a small header, then the serializer's payload.

::

    byte 0      entry format: 2, or 3 for a signed entry (SIGN_ENTRIES)
    bytes 1-8   the model's schema stamp (ASCII hex), see keys.schema_stamp()
    byte 9      kind: R (a row), N (no such row), P (pointer: the payload is [pk])
    bytes 10-17 fresh until: milliseconds since the epoch (uint64); after it the entry is stale
    bytes 18-21 the load time the fill measured, in milliseconds (float32), for early refresh
    bytes 22-   payload
    last 16     signed entries only: the MAC of the key name and the bytes before it (signing.py)

An entry whose format or schema stamp differs from the reader's is a miss, never decoded: a reader
that signs never takes an unsigned entry, nor the reverse.
"""

from __future__ import annotations

import struct
from typing import Final

FORMAT: Final = b"\x02"
SIGNED_FORMAT: Final = b"\x03"
ROW: Final = b"R"
MISSING: Final = b"N"
POINTER: Final = b"P"
HEADER_LEN: Final = 22
_TIMING = struct.Struct(">Qf")


def header(schema: str, signed: bool = False) -> bytes:
    """The first nine bytes every entry of a model with this schema stamp starts with."""
    encoded = schema.encode("ascii")
    if len(encoded) != 8:
        raise ValueError("a schema stamp is 8 ASCII characters")
    return (SIGNED_FORMAT if signed else FORMAT) + encoded


def encode(
    prefix: bytes, kind: bytes, payload: bytes = b"", timing: tuple[int, float] = (0, 0.0)
) -> bytes:
    """``timing``: (fresh until, ms since the epoch; load time in ms)."""
    return prefix + kind + _TIMING.pack(*timing) + payload


def timing(entry: bytes) -> tuple[int, float]:
    """(fresh until, ms since the epoch; load time in ms) of an entry that passed ``split``."""
    fresh_until, load_ms = _TIMING.unpack_from(entry, 10)
    return fresh_until, load_ms


def split(entry: bytes, prefix: bytes) -> tuple[bytes, bytes] | None:
    """``(kind, payload)``, or ``None`` when the entry was written for another format or schema."""
    if len(entry) < HEADER_LEN or not entry.startswith(prefix):
        return None
    return entry[9:10], entry[HEADER_LEN:]
