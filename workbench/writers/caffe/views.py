"""One axis of a tensor as the H axis of a 4-D view, for reductions Caffe only has as pooling.

Caffe reduces over H and W (Pooling, global pooling, a Convolution's window) but not
over an arbitrary axis. A tensor of shape ``S`` is, in memory, the 4-D view
``(P, 1, L, Q)`` with ``P = prod(S[:a])``, ``L = S[a]`` (or the product of the axes
reduced together), ``Q = prod(S[a+1:])``: a Reshape, which copies nothing. On that
view

* the maximum over ``L`` is a MAX Pooling with kernel ``(L, 1)``;
* the sum over ``L`` is a Convolution with one output and a ``(L, 1)`` kernel of
  ones (the products are ``x * 1``);
* a value per ``(p, q)`` goes back over ``L`` by a Deconvolution with a ``(L, 1)``
  kernel of ones (copies, ``1 * v``);

and a final Reshape restores ``S``.

A linear map ``A`` (``L' x L``) along axis ``a`` (a resize, a selection of rows) is
an InnerProduct when ``a`` is the last axis (it contracts the trailing axis and
keeps the others), else a 1x1 Convolution on the view ``(P, L, Q, 1)``, where
``L`` is the channel axis the Convolution mixes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from .net import CaffeNodeContext


@dataclass(frozen=True)
class AxisView:
    """The ``(P, 1, L, Q)`` view of a tensor of ``shape`` reducing ``L``."""

    shape: tuple[int, ...]
    rows: int  # P
    length: int  # L
    columns: int  # Q

    @classmethod
    def over(cls, shape: tuple[int, ...], first: int, last: int | None = None) -> AxisView:
        """The view reducing axes ``first`` to ``last`` (inclusive; default: ``first`` alone)."""
        last = first if last is None else last
        return cls(shape, math.prod(shape[:first]), math.prod(shape[first : last + 1]), math.prod(shape[last + 1 :]))

    @property
    def dims(self) -> tuple[int, int, int, int]:
        return self.rows, 1, self.length, self.columns


def reshape(ctx: CaffeNodeContext, blob: str, dims: tuple[int, ...], role: str, output: ir.Value | None = None) -> str:
    layer = ctx.add_layer("Reshape", [blob], [output], role=role)
    layer.reshape_param.shape.dim.extend(dims)
    return str(layer.top[0])


def to_view(ctx: CaffeNodeContext, blob: str, view: AxisView) -> str:
    return reshape(ctx, blob, view.dims, "view")


def from_view(ctx: CaffeNodeContext, blob: str, view: AxisView, output: ir.Value | None) -> str:
    return reshape(ctx, blob, view.shape, "restore", output)


def view_max(ctx: CaffeNodeContext, blob: str, view: AxisView, role: str) -> str:
    """``(P, 1, 1, Q)``: the maximum over ``L``."""
    layer = ctx.add_layer("Pooling", [blob], [None], role=role)
    param = layer.pooling_param
    param.pool = caffe_pb2.PoolingParameter.MAX
    param.kernel_h, param.kernel_w = view.length, 1
    return str(layer.top[0])


def _ones_window(ctx: CaffeNodeContext, layer_type: str, blob: str, view: AxisView, role: str) -> str:
    layer = ctx.add_layer(layer_type, [blob], [None], role=role, weights=[np.ones((1, 1, view.length, 1))])
    param = layer.convolution_param
    param.num_output, param.bias_term = 1, False
    param.kernel_h, param.kernel_w = view.length, 1
    return str(layer.top[0])


def view_sum(ctx: CaffeNodeContext, blob: str, view: AxisView, role: str) -> str:
    """``(P, 1, 1, Q)``: the sum over ``L``."""
    return _ones_window(ctx, "Convolution", blob, view, role)


def view_spread(ctx: CaffeNodeContext, blob: str, view: AxisView, role: str) -> str:
    """``(P, 1, L, Q)``: a ``(P, 1, 1, Q)`` value copied over ``L``."""
    return _ones_window(ctx, "Deconvolution", blob, view, role)


def difference(ctx: CaffeNodeContext, left: str, right: str, role: str, output: ir.Value | None = None) -> str:
    """``left - right`` (Eltwise SUM with coefficients 1 and -1: exact)."""
    layer = ctx.add_layer("Eltwise", [left, right], [output], role=role)
    layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.SUM
    layer.eltwise_param.coeff.extend([1.0, -1.0])
    return str(layer.top[0])


def product(ctx: CaffeNodeContext, bottoms: list[str], role: str | None = None, output: ir.Value | None = None) -> str:
    layer = ctx.add_layer("Eltwise", bottoms, [output], role=role)
    layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.PROD
    return str(layer.top[0])


def axis_map(
    ctx: CaffeNodeContext,
    blob: str,
    shape: tuple[int, ...],
    axis: int,
    matrix: np.ndarray,
    output: ir.Value | None,
    role: str,
) -> str:
    """``y[..., i, ...] = sum_j matrix[i, j] x[..., j, ...]`` along ``axis`` of a tensor of ``shape``."""
    rows = matrix.shape[0]
    if axis == len(shape) - 1:
        layer = ctx.add_layer("InnerProduct", [blob], [output], role=role, weights=[matrix])
        param = layer.inner_product_param
        param.num_output, param.bias_term, param.axis = rows, False, axis
        return str(layer.top[0])
    view = reshape(ctx, blob, (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]), 1), f"{role}/view")
    mix = ctx.add_layer("Convolution", [view], [None], role=role, weights=[matrix[:, :, None, None]])
    mix.convolution_param.num_output, mix.convolution_param.bias_term = rows, False
    mix.convolution_param.kernel_size.append(1)
    return reshape(ctx, str(mix.top[0]), (*shape[:axis], rows, *shape[axis + 1 :]), f"{role}/restore", output)


def scale_axes(data_shape: tuple[int, ...], const_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(axis, num_axes)`` of the run of axes a constant varies along, aligned to the
    right of the data as ONNX broadcasting does (the run may hold axes the constant
    repeats along); None if it would enlarge the data."""
    if len(const_shape) > len(data_shape):
        return None
    aligned = (1,) * (len(data_shape) - len(const_shape)) + tuple(const_shape)
    if any(c not in (1, d) for c, d in zip(aligned, data_shape)):
        return None
    varying = [axis for axis, c in enumerate(aligned) if c != 1]
    if not varying:
        return 0, 0
    return varying[0], varying[-1] - varying[0] + 1


def axes_block(const: np.ndarray, shape: tuple[int, ...], axis: int, count: int) -> np.ndarray:
    """The constant, broadcast against data of ``shape``, over axes ``[axis, axis + count)`` only
    (the block a Scale over those axes stores)."""
    aligned = const.reshape((1,) * (len(shape) - const.ndim) + const.shape).astype(np.float32)
    index = (0,) * axis + (slice(None),) * count + (0,) * (len(shape) - axis - count)
    return np.ascontiguousarray(np.broadcast_to(aligned, shape)[index])
