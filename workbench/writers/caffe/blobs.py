"""Caffe weights as packed bytes: the ``.caffemodel`` is composed, not built field by field.

A ``.caffemodel`` is a serialized ``NetParameter``. Its weights are ``BlobProto``
messages whose field 5 (``data``) is a packed ``repeated float``: on the wire one
length-delimited record, ``tag(5, LEN) varint(n_bytes)`` followed by the float32
values in little-endian order, exactly ``array.astype('<f4').tobytes()``.
Filling that field from Python would touch every element (seconds per 100 MB);
composing the bytes costs one copy.

Protobuf lets the fields of a message come in any order and concatenates the
elements of a repeated field, so a layer is written as its parameters (serialized
by protobuf, without blobs) followed by one ``blobs`` record (field 7) per weight,
and the net as its header followed by one ``layer`` record (field 100) per layer.
The weight arrays are handed to the file as memory views, never joined into one
bytes object.

The varint and tag encoding is ``formats.wire``'s (protobuf's Python package keeps
its encoder private).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...formats import caffe_pb2
from ...formats.wire import record_header

_BLOB_DATA_FIELD = 5  # BlobProto.data, packed float
_LAYER_BLOBS_FIELD = 7  # LayerParameter.blobs
_NET_LAYER_FIELD = 100  # NetParameter.layer


def blob_pieces(array: np.ndarray) -> list[bytes | memoryview]:
    """The serialized ``BlobProto`` of ``array`` (shape + packed float32 data), in pieces."""
    data = np.ascontiguousarray(array, dtype="<f4")
    shape = caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=list(data.shape))).SerializeToString()
    raw = data.data.cast("B")
    return [shape + record_header(_BLOB_DATA_FIELD, raw.nbytes), raw]


def _size(pieces: Sequence[bytes | memoryview]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)


def layer_pieces(layer: caffe_pb2.LayerParameter, weights: Sequence[np.ndarray]) -> list[bytes | memoryview]:
    """The serialized ``LayerParameter``: ``layer`` (no blobs) followed by a blob record per weight."""
    pieces: list[bytes | memoryview] = [layer.SerializeToString()]
    for array in weights:
        blob = blob_pieces(array)
        pieces += [record_header(_LAYER_BLOBS_FIELD, _size(blob)), *blob]
    return pieces


def net_pieces(
    header: caffe_pb2.NetParameter, layers: Sequence[tuple[caffe_pb2.LayerParameter, Sequence[np.ndarray]]]
) -> Iterator[bytes | memoryview]:
    """The serialized ``NetParameter``: ``header`` (no layers) followed by each layer record."""
    yield header.SerializeToString()
    for layer, weights in layers:
        pieces = layer_pieces(layer, weights)
        yield record_header(_NET_LAYER_FIELD, _size(pieces))
        yield from pieces


def write_caffemodel(
    path: str | Path,
    header: caffe_pb2.NetParameter,
    layers: Sequence[tuple[caffe_pb2.LayerParameter, Sequence[np.ndarray]]],
) -> int:
    """Write the ``.caffemodel``; returns the number of bytes written."""
    with open(path, "wb") as stream:
        return _write_all(stream, net_pieces(header, layers))


def _write_all(stream: BinaryIO, pieces: Iterator[bytes | memoryview]) -> int:
    written = 0
    for piece in pieces:
        written += stream.write(piece)
    return written
