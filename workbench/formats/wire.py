"""The protobuf wire format, for the few places that read or write messages by hand.

A serialized message is a sequence of fields, each a tag (``field number << 3 |
wire type``, as a varint) followed by its value: a varint (wire type 0), 8 or 4
bytes (1, 5), or a varint length and that many bytes (2: strings, bytes, nested
messages, packed repeated numbers). Fields may come in any order and a parser
concatenates repeated ones, so a message can be written as pieces (its small
fields serialized by protobuf, then its large ones streamed) and read without
copying its large fields (noting where they lie).

Protobuf's Python package keeps its encoder and decoder private; the format is a
few lines of arithmetic, written here once.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class WireFormatError(ValueError):
    """The bytes are not a protobuf message this module understands."""


def varint(number: int) -> bytes:
    """Base-128 varint: seven bits per byte, low group first, high bit = more follows."""
    out = bytearray()
    while True:
        low = number & 0x7F
        number >>= 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def record_header(field: int, length: int) -> bytes:
    """Tag and length prefix of a length-delimited field (``field << 3 | 2``)."""
    return varint(field << 3 | LENGTH_DELIMITED) + varint(length)


Buffer = bytes | memoryview | mmap.mmap


def read_varint(data: Buffer, position: int) -> tuple[int, int]:
    """The varint at ``position`` of ``data`` (any buffer, e.g. an mmap) and the position after it."""
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise WireFormatError("truncated or overlong varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


@dataclass(frozen=True)
class Field:
    """Where one field of a serialized message lies."""

    number: int
    wire_type: int
    start: int  # the record's first byte (its tag)
    value_start: int  # the value's first byte (after the tag and, for wire type 2, the length)
    end: int


def fields(data: Buffer, start: int, end: int) -> Iterator[Field]:
    """The fields of the message serialized in ``data[start:end]``, in the order stored."""
    position = start
    while position < end:
        key, value_start = read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            _, value_end = read_varint(data, value_start)
        elif wire_type == FIXED64:
            value_end = value_start + 8
        elif wire_type == FIXED32:
            value_end = value_start + 4
        elif wire_type == LENGTH_DELIMITED:
            length, value_start = read_varint(data, value_start)
            value_end = value_start + length
        else:  # groups (3, 4) are deprecated and used by no schema here
            raise WireFormatError(f"wire type {wire_type} in field {number}")
        if value_end > end:
            raise WireFormatError(f"field {number} runs past the end of its message")
        yield Field(number, wire_type, position, value_start, value_end)
        position = value_end
