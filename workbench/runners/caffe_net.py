"""What a Caffe deploy net states that OpenCV DNN does not show: the fixed input
shapes and each layer's constants, for a runner of ``.prototxt`` + ``.caffemodel``.

* ``input_shapes``: the legacy header's ``input_shape`` / ``input_dim`` and the
  ``Input`` layers' ``input_param.shape`` (one shape for all tops, or one per top),
  in the order the runner feeds inputs (header inputs first, then Input layers' tops);
  ``None`` when any input has no shape or a dimension that is not positive.
* ``layer_constants(layer)``: the layer's blobs and parameters under the names of the
  ONNX op that computes the same thing, as ``compare``'s cause finders read them:

  ========================= ====================================================
  Caffe layer               ONNX op and constants
  ========================= ====================================================
  BatchNorm                 BatchNormalization: ``scale`` 1, ``B`` 0,
                            ``input_mean = blob0 / f``, ``input_var = blob1 / f``
                            (``f = blob2``, 0 gives zero statistics), ``epsilon``
  Scale after a BatchNorm   BatchNormalization as above with ``scale`` = the Scale's
                            gamma and ``B`` its beta (0 without ``bias_term``): the
                            pair computes one BatchNormalization
  Convolution/Deconvolution Conv/ConvTranspose: ``W``, ``B``; ``group``
  InnerProduct              Gemm: ``B`` (``[N, K]``, ``transB`` 1) or ``[K, N]``
                            with ``transpose``, ``C``
  ========================= ====================================================

The prototxt is parsed on first use and the caffemodel read on the first question
about constants (a runner that is only run never reads the weights twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..readers.caffe_reader.caffemodel import Weights, read_weights
from ..readers.caffe_reader.prototxt import DeployNet, read_net
from .base import LayerConstants

BATCHNORM = "BatchNormalization"


def _shapes(blob_shapes: Sequence[Any], count: int) -> list[tuple[int, ...]] | None:
    """``count`` shapes from an Input layer's ``shape`` entries (one for all, or one each)."""
    dims = [tuple(int(d) for d in shape.dim) for shape in blob_shapes]
    if len(dims) == 1:
        dims = dims * count
    return dims if len(dims) == count else None


class CaffeNet:
    """The declarations and trained blobs of one Caffe deploy net, read when asked."""

    def __init__(self, prototxt: str | Path, caffemodel: str | Path) -> None:
        self.prototxt, self.caffemodel = Path(prototxt), Path(caffemodel)

    @cached_property
    def net(self) -> DeployNet:
        return read_net(self.prototxt)

    @cached_property
    def weights(self) -> Weights:
        return read_weights(self.caffemodel)

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        """Every input blob's declared shape in feeding order, when all are fixed."""
        shapes: list[tuple[int, ...] | None] = list(self.net.inputs.values())
        for layer in self.net.layers:
            if layer.type == "Input":
                found = _shapes(layer.input_param.shape, len(layer.top))
                shapes += found if found is not None else [None] * len(layer.top)
        fixed = [shape for shape in shapes if shape and all(d > 0 for d in shape)]
        return fixed if fixed and len(fixed) == len(shapes) else None

    def _blobs(self, name: str) -> list[np.ndarray]:
        return self.weights.blobs.get(name, [])

    def _index(self, name: str) -> int | None:
        return next((i for i, layer in enumerate(self.net.layers) if layer.name == name), None)

    def layer_constants(self, name: str) -> LayerConstants | None:
        """The constants of the layer called ``name``, by ONNX names (see the module docstring)."""
        index = self._index(name)
        if index is None:
            return None
        layer = self.net.layers[index]
        if layer.type == "BatchNorm":
            return self._batch_norm(layer)
        if layer.type == "Scale":
            return self._scale_after_batch_norm(index)
        if layer.type in ("Convolution", "Deconvolution"):
            return self._convolution(layer)
        if layer.type == "InnerProduct":
            return self._inner_product(layer)
        return None

    def _batch_norm(self, layer: Any) -> LayerConstants | None:
        blobs = self._blobs(layer.name)
        if len(blobs) < 3 or blobs[0].size != blobs[1].size or blobs[2].size < 1:
            return None
        factor = float(blobs[2].reshape(-1)[0])
        inverse = 0.0 if factor == 0 else 1.0 / factor
        mean = blobs[0].reshape(-1).astype(np.float64) * inverse
        var = blobs[1].reshape(-1).astype(np.float64) * inverse
        arrays = {"scale": np.ones_like(mean), "B": np.zeros_like(mean), "input_mean": mean, "input_var": var}
        return LayerConstants(BATCHNORM, arrays, {"epsilon": float(layer.batch_norm_param.eps)})

    def _scale_after_batch_norm(self, index: int) -> LayerConstants | None:
        """A one-bottom Scale whose input the BatchNorm before it wrote: the pair as one BatchNormalization."""
        layer = self.net.layers[index]
        if len(layer.bottom) != 1:
            return None
        writer = next((w for w in reversed(self.net.layers[:index]) if layer.bottom[0] in w.top), None)
        normalised = self._batch_norm(writer) if writer is not None and writer.type == "BatchNorm" else None
        blobs = self._blobs(layer.name)
        if normalised is None or not blobs:
            return None
        gamma = blobs[0].reshape(-1).astype(np.float64)
        if gamma.shape != normalised.arrays["scale"].shape:
            return None
        beta = blobs[1].reshape(-1).astype(np.float64) if layer.scale_param.bias_term and len(blobs) > 1 else None
        arrays = {**normalised.arrays, "scale": gamma, "B": beta if beta is not None else np.zeros_like(gamma)}
        return LayerConstants(BATCHNORM, arrays, normalised.attributes)

    def _convolution(self, layer: Any) -> LayerConstants | None:
        blobs = self._blobs(layer.name)
        if not blobs:
            return None
        arrays = {"W": blobs[0]} | ({"B": blobs[1].reshape(-1)} if len(blobs) > 1 else {})
        op = "Conv" if layer.type == "Convolution" else "ConvTranspose"
        return LayerConstants(op, arrays, {"group": float(layer.convolution_param.group)})

    def _inner_product(self, layer: Any) -> LayerConstants | None:
        blobs = self._blobs(layer.name)
        if not blobs:
            return None
        weight = blobs[0].reshape(blobs[0].shape[-2:]) if blobs[0].ndim >= 2 else blobs[0]
        arrays = {"B": weight} | ({"C": blobs[1].reshape(-1)} if len(blobs) > 1 else {})
        return LayerConstants("Gemm", arrays, {"transB": 0.0 if layer.inner_product_param.transpose else 1.0})


__all__ = ["CaffeNet"]
