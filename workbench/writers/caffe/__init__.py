"""Caffe writer: graph -> ``NAME.prototxt`` + ``NAME.caffemodel`` (+ provenance).

Two dialects: ``"bvlc"`` (default) uses only layers BVLC Caffe has and that
OpenCV DNN runs with the same numbers; ``"opencv"`` may also use layers only
OpenCV's Caffe importer knows (Permute, ReLU6). Converters, one module per op
family, are registered in ``CAFFE_LAYERS`` keyed by ONNX op type.
"""

from .net import CAFFE_LAYERS, DIALECTS, OPENCV_ONLY_LAYERS
from .writer import build_caffe_net, find_problems, write_caffe

__all__ = ["CAFFE_LAYERS", "DIALECTS", "OPENCV_ONLY_LAYERS", "build_caffe_net", "find_problems", "write_caffe"]
