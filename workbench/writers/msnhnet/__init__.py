"""MsnhNet writer: graph -> ``NAME.msnhnet`` + ``NAME.msnhbin`` (+ provenance).

Converters, one module per op family, are registered in ``MSNHNET_LAYERS`` keyed by
ONNX op type. Where MsnhNet 2.0 computes something other than the graph (its own
pooling rounding, convolutions with different X and Y, softmax over the whole
sample, ...), the writer writes an exact equivalent or reports the node; each
module's docstring says how, and what was checked in the real runtime.
"""

from .net import MSNHNET_LAYERS
from .writer import build_msnhnet, find_problems, write_msnhnet

__all__ = ["MSNHNET_LAYERS", "build_msnhnet", "find_problems", "write_msnhnet"]
