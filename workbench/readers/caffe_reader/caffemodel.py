"""The trained blobs of a Caffe ``.caffemodel``, read at disk speed.

A caffemodel is a serialized ``NetParameter``; its weights are ``BlobProto``
messages whose ``data`` (field 5) is a packed ``repeated float``: one
length-delimited record holding the little-endian float32 values. This module
walks the protobuf wire format itself and takes each record with
``np.frombuffer`` over the memory-mapped file (one copy per blob, as ``np.load``
makes). Written by hand because protobuf's own parse copies every blob into its
arena first, and that parse alone costs about three times an ``np.load`` of the
same arrays (see ``benchmarks/read_caffemodel.py``); only the fields below are
read, every other field is skipped by its wire type.

The records are found with ``formats.wire`` (the protobuf wire format, written
once for every reader and writer that handles messages by hand).

Fields read (BVLC numbering): NetParameter ``layer`` 100 and V1 ``layers`` 2;
LayerParameter ``name`` 1, ``blobs`` 7; V1LayerParameter ``name`` 4, ``blobs`` 6;
BlobProto ``num``/``channels``/``height``/``width`` 1-4, ``data`` 5, ``shape`` 7,
``double_data`` 8. A repeated number may also arrive unpacked (one record per
value, wire type 5 or 1), which protobuf parsers must accept.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from ...errors import InputError
from ...formats import caffe_pb2
from ...formats.wire import FIXED32, FIXED64, LENGTH_DELIMITED, VARINT, WireFormatError, fields, read_varint

_NET_LAYER, _NET_V1_LAYERS = 100, 2
_LAYER_FIELDS = {_NET_LAYER: (1, 7), _NET_V1_LAYERS: (4, 6)}  # (name, blobs) by layer kind
_BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8


@dataclass
class Weights:
    """The trained blobs of a caffemodel by layer name, and every layer name it holds."""

    blobs: dict[str, list[np.ndarray]]
    layer_names: list[str]


def _copy_numbers(
    payload: bytes | mmap.mmap, pieces: list[tuple[int, int]], dtype: str, shape: tuple[int, ...]
) -> np.ndarray:
    """The values of the packed (or unpacked) records ``pieces`` as one float32 array.

    Each piece is viewed in place and copied at once, so no view of the file
    outlives this function (the mapping can then be closed)."""
    itemsize = np.dtype(dtype).itemsize
    if any((end - start) % itemsize for start, end in pieces):
        raise WireFormatError("a packed blob is not a whole number of values")
    count = sum((end - start) // itemsize for start, end in pieces)
    if count != math.prod(shape):
        raise WireFormatError(f"a blob of shape {list(shape)} holds {count} values")
    values = np.empty(count, np.float32)
    filled = 0
    for start, end in pieces:
        size = (end - start) // itemsize
        values[filled : filled + size] = np.frombuffer(payload, dtype, size, start)
        filled += size
    return values.reshape(shape)


@dataclass
class _BlobFields:
    """Where a BlobProto's fields lie in the payload."""

    legacy: dict[int, int] = dataclasses.field(default_factory=dict)  # num/channels/height/width
    shape: tuple[int, ...] = ()
    floats: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    doubles: list[tuple[int, int]] = dataclasses.field(default_factory=list)


def _blob_fields(payload: bytes | mmap.mmap, start: int, end: int) -> _BlobFields:
    found = _BlobFields()
    for field in fields(payload, start, end):
        number, wire_type, value, value_end = field.number, field.wire_type, field.value_start, field.end
        if number in _BLOB_LEGACY_DIMS and wire_type == VARINT:
            found.legacy[number] = read_varint(payload, value)[0]
        elif number == _BLOB_DATA and wire_type in (LENGTH_DELIMITED, FIXED32):
            found.floats.append((value, value_end))
        elif number == _BLOB_DOUBLE_DATA and wire_type in (LENGTH_DELIMITED, FIXED64):
            found.doubles.append((value, value_end))
        elif number == _BLOB_SHAPE and wire_type == LENGTH_DELIMITED:
            try:
                found.shape = tuple(int(d) for d in caffe_pb2.BlobShape.FromString(payload[value:value_end]).dim)
            except DecodeError as error:
                raise WireFormatError(f"a blob shape does not parse ({error})") from error
    return found


def _blob(payload: bytes | mmap.mmap, start: int, end: int) -> np.ndarray:
    """A BlobProto as a float32 array of its declared shape (the legacy num/channels/
    height/width when present, as Caffe's Blob::FromProto reads it)."""
    found = _blob_fields(payload, start, end)
    shape = tuple(found.legacy.get(number, 0) for number in _BLOB_LEGACY_DIMS) if found.legacy else found.shape
    if found.doubles and not found.floats:
        return _copy_numbers(payload, found.doubles, "<f8", shape)
    return _copy_numbers(payload, found.floats, "<f4", shape)


def read_weights(path: Path) -> Weights:
    """Read a ``.caffemodel`` (``layer`` or V1 ``layers``) into arrays per layer name.

    When a name occurs twice, the later layer's blobs count, as in Caffe's
    ``CopyTrainedLayersFrom``.
    """
    try:
        with open(path, "rb") as stream:
            # mapped, not read: the page cache is the buffer, and each blob is copied once
            empty = os.fstat(stream.fileno()).st_size == 0
            payload = b"" if empty else mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as error:
        raise InputError(f"no such caffemodel: {path}", remedy="check the path") from error
    except OSError as error:
        raise InputError(f"cannot read the caffemodel {path}", found=error.strerror, remedy="check the path") from error
    try:
        return _read_layers(payload)
    except (WireFormatError, UnicodeDecodeError) as error:
        raise InputError(
            f"{path} is not a readable caffemodel",
            expected="a binary NetParameter with trained blobs",
            found=str(error),
            remedy="check that the file is complete (e.g. the download finished)",
        ) from error
    finally:
        if isinstance(payload, mmap.mmap):
            payload.close()


def _read_layers(payload: bytes | mmap.mmap) -> Weights:
    blobs: dict[str, list[np.ndarray]] = {}
    names: list[str] = []
    for layer in fields(payload, 0, len(payload)):
        if layer.number not in _LAYER_FIELDS or layer.wire_type != LENGTH_DELIMITED:
            continue
        name_field, blobs_field = _LAYER_FIELDS[layer.number]
        name, spans = "", []
        for field in fields(payload, layer.value_start, layer.end):
            if field.number == name_field and field.wire_type == LENGTH_DELIMITED:
                name = payload[field.value_start : field.end].decode("utf-8")
            elif field.number == blobs_field and field.wire_type == LENGTH_DELIMITED:
                spans.append((field.value_start, field.end))
        names.append(name)
        try:
            if spans:
                blobs[name] = [_blob(payload, value, value_end) for value, value_end in spans]
        except WireFormatError as error:
            raise WireFormatError(f"layer {name}: {error}") from error
    return Weights(blobs, names)
