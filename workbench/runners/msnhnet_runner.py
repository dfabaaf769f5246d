"""Run MsnhNet files (``.msnhnet`` + ``.msnhbin``) in NumPy: MsnhNet has no package in
any registry, so the project carries its own executor.

It parses the files itself (``workbench.formats.msnhnet``: MsnhNet's parser and
builder) and computes each layer as MsnhNet 2.0's CPU code does, float32
throughout — written from the format summary and checked layer by layer against
the real runtime (x86, AVX2). It models what MsnhNet computes, not what a layer
was meant to compute:

* ``varop tanh`` is tan (the runtime calls tanf); ``act tanh`` computes
  ``(e^2x - 1) / (e^2x + 1)`` with the exponent clamped at ±88.38 in blocks of 8 and
  unclamped in the last ``count % 8`` values (NaN above x = 44);
* ``maxpool`` with equal X and Y strides takes MsnhNet's AVX path, which for stride 1
  with X padding and for 2-wide stride-2 windows reads other cells than the window
  (reproduced here column block by column block);
* ``pixshf`` is MsnhNet's own shuffle, ``view`` takes (dim2, dim1, dim0) as (C, H, W),
  a ``varop`` after a ``softmax`` computes nothing (no dimensions), ``softmax`` works on
  contiguous groups of the flattened sample;
* where MsnhNet reads past its buffers or computes undefined values — ``conv`` with
  kernel, stride, padding or dilation differing between X and Y (its im2col swaps
  them), a 2x2 dilated kernel on its 3x3 im2col path, ``deconv`` with groups — the
  runner refuses the file and says why, rather than guessing.

Layer outputs are named ``"index:kind"``; with the MsnhNet writer's provenance record
the runner knows each layer's source layers, the graph output each holds and the
shape of the graph value it equals (outputs are reshaped to it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..formats.msnhnet import Activation, Layer, Net, read_net, read_weights
from ..writers.msnhnet.sidecar import layer_shapes, layer_sources
from .base import Inputs, LayerConstants, LayerStream, Runner

F32 = np.float32
FLT_MAX = float(np.finfo(np.float32).max)
EXP_CLAMP = 88.3762626647949  # exp256_ps clamps its argument to this (Cephes)
Weights = Mapping[str, np.ndarray]


# ---- activations ------------------------------------------------------------------------------


def _softplus(x: np.ndarray, threshold: float) -> np.ndarray:
    with np.errstate(over="ignore"):
        soft = np.log(np.exp(x) + F32(1))
    return np.where(x > threshold, x, np.where(x < -threshold, np.exp(np.minimum(x, 0)), soft)).astype(F32)


def _tanh(x: np.ndarray) -> np.ndarray:
    """MsnhNet's act tanh over the flattened layer: AVX blocks of 8 clamp the exponent, the tail does not."""
    flat = x.reshape(-1)
    head = (flat.size // 8) * 8
    with np.errstate(over="ignore", invalid="ignore"):
        e_head = np.exp(np.clip(F32(2) * flat[:head], -EXP_CLAMP, EXP_CLAMP))
        e_tail = np.exp(F32(2) * flat[head:])
        out = np.concatenate([(e_head - 1) / (e_head + 1), (e_tail - 1) / (e_tail + 1)])
    return out.astype(F32).reshape(x.shape)


def _stair(x: np.ndarray) -> np.ndarray:
    n = np.floor(x)
    return np.where(n % 2 == 0, np.floor(x / 2), (x - n) + np.floor(x / 2)).astype(F32)


def _leaky(x: np.ndarray, slope: Any) -> np.ndarray:
    return np.where(x > 0, x, x * slope).astype(F32)


_ELEMENTWISE: dict[str, Callable[[np.ndarray, float | None], np.ndarray]] = {
    "none": lambda x, p: x,
    "relu": lambda x, p: np.maximum(x, 0),
    "relu6": lambda x, p: np.clip(x, 0, 6),
    "leaky": lambda x, p: _leaky(x, F32(0.1 if p is None else p)),
    "relie": lambda x, p: _leaky(x, F32(0.01)),
    "ramp": lambda x, p: np.maximum(x, 0) + F32(0.1) * x,
    "logistic": lambda x, p: F32(1) / (F32(1) + np.exp(-x)),
    "loggy": lambda x, p: F32(2) / (F32(1) + np.exp(-x)) - F32(1),
    "swish": lambda x, p: x / (F32(1) + np.exp(-x)),
    "hardswish": lambda x, p: x * np.clip(x + F32(3), 0, 6) / F32(6),
    "elu": lambda x, p: np.where(x >= 0, x, np.exp(np.minimum(x, 0)) - F32(1)),
    "selu": lambda x, p: np.where(
        x >= 0, F32(1.0507) * x, F32(1.0507) * F32(1.6732) * (np.exp(np.minimum(x, 0)) - F32(1))
    ),
    "tanh": lambda x, p: _tanh(x),
    "softplus": lambda x, p: _softplus(x, 0.1 if p is None else p),
    "mish": lambda x, p: x * np.tanh(_softplus(x, 20.0)),
    "hardtan": lambda x, p: np.clip(x, -1, 1),
    "lhtan": lambda x, p: np.where(x < 0, F32(0.001) * x, np.where(x > 1, F32(0.001) * (x - 1) + 1, x)),
    "plse": lambda x, p: np.where(
        x < -4, F32(0.01) * (x + 4), np.where(x > 4, F32(0.01) * (x - 4) + 1, F32(0.125) * x + F32(0.5))
    ),
    "stair": lambda x, p: _stair(x),
}


def _normalize_channels(x: np.ndarray, softmax: bool, use_max: bool) -> np.ndarray:
    """MsnhNet's normalize_channels(_softmax(_maxval)): per pixel over channels, 1e-4 in the sum."""
    if not softmax:
        positive = np.maximum(x, 0)
        return (np.where(x > 0, x, 0) / (positive.sum(axis=1, keepdims=True) + F32(1e-4))).astype(F32)
    shift = x.max(axis=1, keepdims=True) if use_max else F32(0)
    e = np.exp(x - shift)
    return (e / (e.sum(axis=1, keepdims=True) + F32(1e-4))).astype(F32)


def activate(x: np.ndarray, activation: Activation, prelu: np.ndarray | None = None) -> np.ndarray:
    """``activation`` applied to a layer's output ``x`` (N, C, H, W)."""
    name, param = activation.name, (activation.params[0] if activation.params else None)
    if name == "prelu":
        assert prelu is not None
        return _leaky(x, prelu.reshape(1, -1, *([1] * (x.ndim - 2))))
    if name.startswith("normalize_channels"):
        return _normalize_channels(x, "softmax" in name, name.endswith("maxval"))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(_ELEMENTWISE[name](x, param), dtype=F32)


# ---- windows ----------------------------------------------------------------------------------


def _windows(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], out: tuple[int, int]
) -> np.ndarray:
    """(N, C, outH, outW, kH, kW) view of ``x`` (already padded) at the given windows."""
    (ky, kx), (sy, sx), (dy, dx) = kernel, stride, dilation
    span = (dy * (ky - 1) + 1, dx * (kx - 1) + 1)
    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))[:, :, ::sy, ::sx, ::dy, ::dx]
    return view[:, :, : out[0], : out[1]]


def _pad_to(x: np.ndarray, begin: tuple[int, int], need: tuple[int, int], fill: float) -> np.ndarray:
    """``x`` padded by ``begin`` rows/columns first and with ``fill`` up to ``need`` in total."""
    n, c, h, w = x.shape
    out = np.full((n, c, max(need[0], h + begin[0]), max(need[1], w + begin[1])), fill, F32)
    out[:, :, begin[0] : begin[0] + h, begin[1] : begin[1] + w] = x
    return out


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    stride: tuple[int, int],
    pad: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> np.ndarray:
    c, h, w = x.shape[1:]
    out_c, _, ky, kx = weight.shape
    out = (
        (h + 2 * pad[0] - (dilation[0] * (ky - 1) + 1)) // stride[0] + 1,
        (w + 2 * pad[1] - (dilation[1] * (kx - 1) + 1)) // stride[1] + 1,
    )
    need = (
        (out[0] - 1) * stride[0] + dilation[0] * (ky - 1) + 1,
        (out[1] - 1) * stride[1] + dilation[1] * (kx - 1) + 1,
    )
    patches = _windows(_pad_to(x, pad, need, 0.0), (ky, kx), stride, dilation, out)
    per_in, per_out = c // groups, out_c // groups
    parts = [
        np.einsum(
            "nchwyx,ocyx->nohw",
            patches[:, g * per_in : (g + 1) * per_in],
            weight[g * per_out : (g + 1) * per_out],
            optimize=True,
        )
        for g in range(groups)
    ]
    return np.concatenate(parts, axis=1).astype(F32)


# ---- layers -------------------------------------------------------------------------------------


def _refuse(layer: Layer, why: str) -> InputError:
    return InputError(
        f"layer {layer.index} ({layer.kind}) is computed by MsnhNet 2.0 in a way this runner does not reproduce: {why}",
        remedy="write the layer in the form MsnhNet computes correctly (the MsnhNet writer does), or convert the "
        "source model again",
    )


def _affine_bn(y: np.ndarray, w: Weights, eps: float, bias_key: str = "bias") -> np.ndarray:
    shape = (1, -1, *([1] * (y.ndim - 2)))
    norm = (y - w["mean"].reshape(shape)) / np.sqrt(w["var"].reshape(shape) + F32(eps))
    return (w["scale"].reshape(shape) * norm + w[bias_key].reshape(shape)).astype(F32)


def _run_conv(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    p = layer.params
    pairs = (p["kSize"], p["stride"], p["padding"])
    dilation = p["dilation"]
    if any(a != b for a, b in pairs) or (p["kSize"][0] > 1 and dilation[0] != dilation[1]):
        raise _refuse(layer, "its im2col takes kSizeX/strideX/paddingX/dilationX as the height (X and Y differ)")
    if (p["kSize"][0], dilation[0], p["padding"][0], p["stride"][0]) == (2, 2, 1, 1):
        raise _refuse(layer, "a 2x2 kernel with dilation 2 and padding 1 takes its 3x3-only im2col path")
    if p["batchNorm"] and not p["useBias"]:
        raise _refuse(layer, "batchNorm: 1 with useBias: 0 leaves the BN bias unallocated")
    y = conv2d(x, w["weight"], p["stride"], p["padding"], dilation, p["groups"])
    if p["batchNorm"]:
        y = _affine_bn(y, w, p["eps"])
    elif p["useBias"]:
        y = y + w["bias"].reshape(1, -1, 1, 1)
    return activate(y, p["activation"], w.get("prelu"))


def _run_deconv(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    p = layer.params
    if p["groups"] != 1:
        raise _refuse(layer, "a grouped deconv multiplies the wrong blocks of weights")
    weight = w["weight"]
    (sy, sx), (py, px) = p["stride"], p["padding"]
    n, _, h, width = x.shape
    ky, kx = weight.shape[2:]
    full = np.zeros((n, weight.shape[1], (h - 1) * sy + ky, (width - 1) * sx + kx), F32)
    for a in range(ky):
        for b in range(kx):
            full[:, :, a : a + (h - 1) * sy + 1 : sy, b : b + (width - 1) * sx + 1 : sx] += np.einsum(
                "nchw,co->nohw", x, weight[:, :, a, b]
            )
    y = full[:, :, py : full.shape[2] - py, px : full.shape[3] - px]
    if p["useBias"]:
        y = y + w["bias"].reshape(1, -1, 1, 1)
    return activate(np.ascontiguousarray(y, dtype=F32), p["activation"])


def _run_connect(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    p = layer.params
    y = (x.reshape(x.shape[0], -1) @ w["weight"].T).astype(F32)
    if p["batchNorm"]:
        y = _affine_bn(y, w, p["bnEps"])
    elif p["useBias"]:
        y = y + w["bias"]
    return activate(y.reshape(x.shape[0], -1, 1, 1), p["activation"], w.get("prelu"))


def _run_batchnorm(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    return activate(_affine_bn(x, w, layer.params["eps"]), layer.params["activation"], w.get("prelu"))


def _avx_maxpool_columns(layer: Layer, x: np.ndarray, out: np.ndarray) -> None:
    """Overwrite the output columns MsnhNet's AVX max pooling computes in vector blocks
    (equal strides): its validity test looks at the block's first column only."""
    p = layer.params
    (ky, kx), (sy, sx), (py, px) = p["kSize"], p["stride"], p["padding"]
    out_h, out_w = out.shape[2:]
    if sx != sy or not (sx == 1 or (kx == 2 and sx == 2)):
        return
    block, rows = (8, range(ky)) if sx == 1 else (4, range(kx))  # the 2x2 path loops kSizeX rows
    stop = out_w - 8 - (kx - 1) if sx == 1 else out_w - 4
    taps = [(n, m) for n in rows for m in (range(kx) if sx == 1 else (0,))]
    for j in range(0, max(stop, 0), block):
        for i in range(out_h):
            out[:, :, i, j : j + block] = _avx_block_max(x, taps, (i * sy - py, j * sx - px), block, sx)


def _avx_block_max(
    x: np.ndarray, taps: list[tuple[int, int]], origin: tuple[int, int], block: int, stride: int
) -> np.ndarray:
    """One vector block of ``block`` output columns as MsnhNet's AVX max pooling computes it:
    for each tap (n, m) the cell ``origin + (n, m)`` of the block's first window decides
    whether the tap counts for the whole block; stride 1 then takes ``block`` consecutive
    columns, stride 2 the larger of ``block`` column pairs (starting from -FLT_MAX)."""
    h, w = x.shape[2:]
    best = np.full((x.shape[0], x.shape[1], block), -FLT_MAX, F32)
    for n, m in taps:
        row, col = origin[0] + n, origin[1] + m
        if not (0 <= row < h and 0 <= col < w):
            continue
        if stride == 1:
            best = np.maximum(best, x[:, :, row, col : col + block])
        else:
            pairs = x[:, :, row, col : col + 2 * block].reshape(x.shape[0], x.shape[1], block, 2)
            best = np.maximum(best, pairs.max(axis=3))
    return best


def _pool_windows(layer: Layer, x: np.ndarray, fill: float) -> np.ndarray:
    p = layer.params
    out = layer.dims[1:]
    (ky, kx), (sy, sx), (py, px) = p["kSize"], p["stride"], p["padding"]
    need = ((out[0] - 1) * sy + ky, (out[1] - 1) * sx + kx)
    return _windows(_pad_to(x, (py, px), need, fill), (ky, kx), (sy, sx), (1, 1), out)


def _run_maxpool(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    p = layer.params
    if p["maxPoolDepth"]:
        groups = p["outChannels"]
        padded = np.full((x.shape[0], -(-x.shape[1] // groups) * groups, *x.shape[2:]), -FLT_MAX, F32)
        padded[:, : x.shape[1]] = x
        return padded.reshape(x.shape[0], -1, groups, *x.shape[2:]).max(axis=1)
    out = _pool_windows(layer, x, -FLT_MAX).max(axis=(4, 5))
    out = np.ascontiguousarray(out)
    _avx_maxpool_columns(layer, x, out)
    return out


def _run_localavgpool(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    sums = _pool_windows(layer, x, 0.0).sum(axis=(4, 5), dtype=F32)
    ones = np.ones((1, 1, *x.shape[2:]), F32)
    counts = _pool_windows(layer, ones, 0.0).sum(axis=(4, 5))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (sums / counts).astype(F32)


def _run_padding(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    p = layer.params
    n, c, h, width = x.shape
    out = np.full((n, c, *layer.dims[1:]), F32(p["paddingVal"]), F32)
    src_y, dst_y = max(-p["top"], 0), max(p["top"], 0)
    src_x, dst_x = max(-p["left"], 0), max(p["left"], 0)
    rows = min(h - src_y, layer.dims[1] - dst_y)
    cols = min(width - src_x, layer.dims[2] - dst_x)
    if rows > 0 and cols > 0:
        out[:, :, dst_y : dst_y + rows, dst_x : dst_x + cols] = x[:, :, src_y : src_y + rows, src_x : src_x + cols]
    return out


def _bilinear_axis(size: int, out: int, corners: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first index, second index, weight of the second) per output position, in float32 as MsnhNet."""
    positions = np.arange(out, dtype=F32)
    if corners:
        ratio = F32(size - 1) / F32(out - 1) if out > 1 else F32(0)
        source = ratio * positions
    else:
        ratio = F32(size) / F32(out)
        source = np.maximum(ratio * (positions + F32(0.5)) - F32(0.5), F32(0))
    first = source.astype(np.int64)
    second = np.where(first < size - 1, first + 1, first)
    return first, second, (source - first).astype(F32)


def _run_upsample(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    p = layer.params
    if p["type"] == "nearest":
        repeated = x.repeat(p["strideY"], axis=2).repeat(p["strideX"], axis=3)
        return (F32(p["scaleX"]) * repeated).astype(F32)
    (y0, y1, fy), (x0, x1, fx) = (_bilinear_axis(s, o, p["alignCorners"]) for s, o in zip(x.shape[2:], layer.dims[1:]))
    top = x[:, :, y0][:, :, :, x0] * (1 - fx) + x[:, :, y0][:, :, :, x1] * fx
    bottom = x[:, :, y1][:, :, :, x0] * (1 - fx) + x[:, :, y1][:, :, :, x1] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(F32)


def _run_softmax(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    groups, temperature = layer.params["groups"], F32(layer.params["temperature"])
    chunks = x.reshape(x.shape[0], groups, -1)
    shifted = chunks / temperature - chunks.max(axis=2, keepdims=True) / temperature
    e = np.exp(shifted)
    return (e / e.sum(axis=2, keepdims=True)).astype(F32).reshape(x.shape[0], -1)


def _run_pixshf(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    """MsnhNet's own formula: out[c, h, w] = in[c·f + w % f][h][w / f] over the raw sample buffer."""
    f = layer.params["factor"]
    n, _, h, width = x.shape
    oc, oh, ow = layer.dims
    cc, hh, ww = np.meshgrid(np.arange(oc), np.arange(oh), np.arange(ow), indexing="ij")
    index = cc * f * width * h + hh * width + (ww % f) * width * h + ww // f
    return x.reshape(n, -1)[:, index]


def _run_reduction(layer: Layer, x: np.ndarray, w: Weights) -> np.ndarray:
    axis, mean = layer.params["axis"], layer.params["type"] == "mean"
    if axis == -1:
        total = x.reshape(x.shape[0], -1).sum(axis=1, dtype=F32)
        return (total / F32(x[0].size) if mean else total).reshape(-1, 1, 1, 1)
    reduced = x.sum(axis=axis + 1, keepdims=True, dtype=F32)
    return (reduced / F32(x.shape[axis + 1]) if mean else reduced).astype(F32)


_UNARY: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "abs": lambda x, c: np.abs(x),
    "acos": lambda x, c: np.arccos(x),
    "asin": lambda x, c: np.arcsin(x),
    "atan": lambda x, c: np.arctan(x),
    "cos": lambda x, c: np.cos(x),
    "cosh": lambda x, c: np.cosh(x),
    "sin": lambda x, c: np.sin(x),
    "sinh": lambda x, c: np.sinh(x),
    "tan": lambda x, c: np.tan(x),
    "tanh": lambda x, c: np.tan(x),  # MsnhNet 2.0 computes tanf here
    "exp": lambda x, c: np.exp(x),
    "pow": lambda x, c: np.power(x, F32(c)),
    "log": lambda x, c: np.log(x),
    "log10": lambda x, c: np.log10(x),
    "sqrt": lambda x, c: np.sqrt(x),
    "addConst": lambda x, c: x + F32(c),
    "subConst": lambda x, c: x - F32(c),
    "subConstInv": lambda x, c: F32(c) - x,
    "mulConst": lambda x, c: x * F32(c),
    "divConst": lambda x, c: x / F32(c),
    "divConstInv": lambda x, c: F32(c) / x,
}
_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "subInv": lambda a, b: b - a,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "divInv": lambda a, b: b / a,
}


# ---- the runner ---------------------------------------------------------------------------------

LayerFunction = Callable[[Layer, np.ndarray, Weights], np.ndarray]
_SIMPLE: dict[str, LayerFunction] = {
    "conv": _run_conv,
    "deconv": _run_deconv,
    "connect": _run_connect,
    "batchnorm": _run_batchnorm,
    "maxpool": _run_maxpool,
    "localavgpool": _run_localavgpool,
    "globalavgpool": lambda layer, x, w: x.mean(axis=(2, 3), keepdims=True, dtype=F32),
    "act": lambda layer, x, w: activate(x, layer.params["activation"], w.get("prelu")),
    "softmax": _run_softmax,
    "upsample": _run_upsample,
    "padding": _run_padding,
    "view": lambda layer, x, w: x,
    "permute": lambda layer, x, w: x.transpose(0, *(1 + d for d in (layer.params["dim0"], layer.params["dim1"], layer.params["dim2"]))),
    "slice": lambda layer, x, w: x[:, layer.params["start0"] :: layer.params["step0"], layer.params["start1"] :: layer.params["step1"], layer.params["start2"] :: layer.params["step2"]],
    "pixshf": _run_pixshf,
    "clip": lambda layer, x, w: np.clip(x, F32(layer.params["min"]), F32(layer.params["max"])),
    "reduction": _run_reduction,
}  # fmt: skip


def _release(held: dict[int, np.ndarray], last_use: dict[int, int], keep: Collection[int], done: int) -> None:
    """Drop the outputs no layer after layer ``done`` reads, unless ``keep`` has them."""
    for index in [i for i, use in last_use.items() if use <= done and i not in keep]:
        held.pop(index, None)
        del last_use[index]


class MsnhNetRunner(Runner):
    """A MsnhNet network in NumPy; layer outputs keyed ``"index:kind"``."""

    name = "msnhnet"

    def __init__(self, msnhnet: str | Path, msnhbin: str | Path, record: Mapping[str, Any] | None = None) -> None:
        msnhnet, msnhbin = Path(msnhnet), Path(msnhbin)
        self.description = f"{msnhnet.name} + {msnhbin.name}"
        self.net: Net = read_net(msnhnet)
        self.weights = read_weights(msnhbin, self.net)
        self.record = dict(record or {})
        names = [layer.name for layer in self.net.layers]
        recorded_input = self.record.get("input", {})
        self.input_names = [recorded_input.get("name", "input")]
        outputs = self.record.get("outputs") or [{"name": names[-1], "layer": len(names) - 1}]
        self._outputs = {item["name"]: int(item["layer"]) for item in outputs}
        self._output_shapes = {item["name"]: tuple(item.get("shape") or ()) for item in outputs}
        self.output_names = list(self._outputs)
        self._shapes = layer_shapes(self.record)
        self._sources = {name: sources for name, sources in layer_sources(self.record).items() if name in names}

    @property
    def layer_sources(self) -> Mapping[str, tuple[str, ...]]:
        return self._sources

    def layer_constants(self, name: str) -> LayerConstants | None:
        """A batch normalisation's constants by ONNX's names (``scale``, ``B``, ``input_mean``,
        ``input_var``, ``epsilon``): a ``batchnorm`` layer's, or a ``conv``/``connect`` with
        ``batchNorm: 1`` (its output is the normalised one)."""
        layer = next((layer for layer in self.net.layers if layer.name == name), None)
        if layer is None or not (layer.kind == "batchnorm" or layer.params.get("batchNorm")):
            return None
        weights = self.weights[layer.index]
        eps = layer.params["bnEps"] if layer.kind == "connect" else layer.params["eps"]
        arrays = {
            "scale": weights["scale"],
            "B": weights["bias"],
            "input_mean": weights["mean"],
            "input_var": weights["var"],
        }
        return LayerConstants("BatchNormalization", arrays, {"epsilon": float(eps)})

    def input_shapes(self) -> list[tuple[int, ...]]:
        recorded = self.record.get("input", {}).get("shape")
        return [tuple(recorded)] if recorded else [(self.net.batch, *self.net.dims)]

    def layer_names(self, inputs: Inputs | None = None) -> list[str]:
        return [layer.name for layer in self.net.layers]

    def _input(self, inputs: Inputs) -> np.ndarray:
        given = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs[0]
        array = np.asarray(given, dtype=F32)
        expected = self.net.batch * math.prod(self.net.dims)
        first = self.net.layers[0]
        if first.kind == "deconv" and self.net.dims[1] != self.net.dims[2]:
            raise _refuse(first, "as layer 0 MsnhNet checks the input against width x width x channels (runClassify)")
        if array.size != expected:
            raise InputError(
                "the input does not fit the MsnhNet network",
                expected=f"{expected} values (batch {self.net.batch} x {self.net.dims})",
                found=f"an array of shape {array.shape}",
                remedy="pass one input of the size in the file's config",
            )
        return array.reshape(self.net.batch, *self.net.dims)

    def _shaped(self, layer: Layer, array: np.ndarray) -> np.ndarray:
        shape = self._shapes.get(layer.index)
        if shape is not None and math.prod(shape) == array.size:
            return array.reshape(shape)
        if 0 not in layer.dims:
            return array.reshape(array.shape[0], *layer.dims)
        return array.reshape(array.shape[0], -1)

    def _owned(self) -> set[int]:
        """Layers with a buffer of their own (MsnhNet's builder allocates one for a layer a
        later route names, unless that route comes right after it, and for a layer a varop
        names); every other layer writes into two shared buffers."""
        owned: set[int] = set()
        for layer in self.net.layers:
            if layer.kind in ("route", "varop"):
                owned.update(i for i in layer.inputs if layer.kind == "varop" or i != layer.index - 1)
        return owned

    def _forward(self, inputs: Inputs, keep: Collection[int]) -> Iterator[tuple[Layer, np.ndarray]]:
        """Every layer's output in order (as (N, C, H, W); softmax's as (N, count)).

        A layer reads what MsnhNet hands it: the previous layer's own buffer when it has
        one, else the shared buffer — which a ``view`` with no buffer of its own leaves as
        it was, so a view after a layer with its own buffer reads older data (as in
        MsnhNet). Outputs are kept only while a later layer names them (or ``keep`` has them).
        """
        owned, last_use = self._owned(), self._last_use()
        held: dict[int, np.ndarray] = {}
        own_input, shared = self._input(inputs), None
        for layer in self.net.layers:
            x = own_input if layer.index == 0 or layer.index - 1 in owned else shared
            if layer.kind == "view" and layer.index not in owned:
                x = shared  # a view without a buffer of its own passes the shared buffer on, whatever came before
            if x is None:
                raise _refuse(layer, "it reads MsnhNet's shared buffer before any layer wrote it")
            if layer.kind == "view" and layer.index not in owned:
                y = self._shared_view(layer, x)
            else:
                y = self._compute(layer, x, held)
                if layer.index in owned:
                    own_input = y
                else:
                    shared = y
            held[layer.index] = y
            _release(held, last_use, keep, layer.index)
            yield layer, y

    def _last_use(self) -> dict[int, int]:
        """Each layer's index -> the index of the last layer reading its output (the next
        layer at least: it is handed the output whether it names it or not)."""
        last_use = {index: index + 1 for index in range(len(self.net.layers))}
        for layer in self.net.layers:
            for ref in layer.inputs:
                last_use[ref] = max(last_use[ref], layer.index)
        return last_use

    def _shared_view(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        """A view without a buffer of its own does nothing: the next layer reads the shared buffer."""
        if x[0].size != layer.size:
            raise _refuse(layer, f"the shared buffer holds {x[0].size} values per sample, the view {layer.size}")
        return x.reshape(x.shape[0], *layer.dims)

    def _image(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        if 0 in layer.in_dims:
            return x.reshape(x.shape[0], -1)
        if math.prod(layer.in_dims) != x[0].size:
            raise _refuse(layer, f"its input holds {x[0].size} values per sample but has dimensions {layer.in_dims}")
        return x.reshape(x.shape[0], *layer.in_dims)

    def _compute(self, layer: Layer, x: np.ndarray, held: Mapping[int, np.ndarray]) -> np.ndarray:
        weights = self.weights[layer.index]
        if layer.kind == "route":
            return self._route(layer, x, held)
        if layer.kind == "varop":
            return self._varop(layer, x, held)
        y = np.ascontiguousarray(_SIMPLE[layer.kind](layer, self._image(layer, x), weights), dtype=F32)
        return y.reshape(x.shape[0], *layer.dims) if 0 not in layer.dims else y

    def _route(self, layer: Layer, x: np.ndarray, held: Mapping[int, np.ndarray]) -> np.ndarray:
        p = layer.params
        parts = []
        for index in layer.inputs:
            source = x if index == layer.index - 1 else held[index]  # the layer before: what MsnhNet hands it
            flat = source.reshape(source.shape[0], -1)
            part = flat.shape[1] // p["groups"]
            parts.append(flat[:, part * p["groupsId"] : part * (p["groupsId"] + 1)])
        if p["addModel"] == 1:  # zero-filled, then each added in turn
            joined = np.zeros_like(parts[0], dtype=F32)
            for part in parts:
                joined = joined + part
        else:
            joined = np.concatenate(parts, axis=1)
        shaped = joined.reshape(joined.shape[0], *layer.dims) if math.prod(layer.dims) == layer.size else joined
        return activate(shaped, p["activation"]) if p["activation"].name != "none" else shaped

    def _varop(self, layer: Layer, x: np.ndarray, held: Mapping[int, np.ndarray]) -> np.ndarray:
        kind, const = layer.params["type"], layer.params["constVal"]
        count = math.prod(layer.in_dims)  # MsnhNet counts from the dimensions: 0 after a softmax
        flat = x.reshape(x.shape[0], -1)[:, :count]
        if kind in _BINARY:
            sources = [x if i == layer.index - 1 else held[i] for i in layer.inputs]
            refs = [source.reshape(source.shape[0], -1)[:, :count] for source in sources]
            a, b = (refs[0], refs[1]) if len(refs) == 2 else (flat, refs[0])
            out = _BINARY[kind](a, b)
        else:
            with np.errstate(all="ignore"):
                out = _UNARY[kind](flat, const)
        out = np.asarray(out, dtype=F32)
        return out.reshape(x.shape[0], *layer.dims) if count else out

    # ---- the protocol ---------------------------------------------------------------------------

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """The graph outputs the provenance record names (else the last layer's output)."""
        wanted = {index: name for name, index in self._outputs.items()}
        found = {}
        for layer, array in self._forward(inputs, set(wanted)):
            if layer.index in wanted:
                name = wanted[layer.index]
                shape = self._output_shapes.get(name) or ()
                shaped = self._shaped(layer, array)
                found[name] = shaped.reshape(shape) if shape and math.prod(shape) == shaped.size else shaped
        return {name: found[name] for name in self.output_names}

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        for layer, array in self._forward(inputs, ()):
            if names is None or layer.name in names:
                yield layer.name, self._shaped(layer, array)
