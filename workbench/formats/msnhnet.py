"""MsnhNet's two files, read as MsnhNet 2.0's parser and builder read them.

``.msnhnet`` is one YAML mapping with repeated keys, read in file order
(``yaml.compose`` keeps every pair; a plain ``yaml.safe_load`` would keep only the
last ``conv``). ``config`` comes first (batch, width, height, channels), then one
layer per key. ``read_net`` decodes every layer's keys with MsnhNet's defaults and
its quirks (checked in the real runtime):

* an unset ``kSizeX``/``kSizeY`` (stride, padding, dilation) takes the scalar; a
  1-wide kernel has no dilation on that axis; ``localavgpool`` also replaces 0;
* ``upsample`` fills unset X/Y strides and scales from the scalar after *every* key
  it reads, so a ``stride`` given after ``type`` is ignored;
* ``route``/``varop`` ``layers`` are absolute indexes, or relative when negative
  (-1 = the layer before); the list must not contain spaces;
* ``view`` takes ``dim0`` as the output width, ``dim1`` the height, ``dim2`` the channels.

``read_net`` then computes every layer's output dimensions (C, H, W) and element
count the way ``NetBuilder::buildNetFromMsnhNet`` does — ``softmax`` leaves its
dimensions 0; a ``route`` with ``groups`` keeps the full channel count — and
refuses what the builder refuses, with its reasons. ``read_weights`` splits
``.msnhbin`` (little-endian float32, no header) into every layer's named arrays in
the loader's order; its length must equal what the layers take, exactly.

Block layers (``resblock``, ``res2block``, ``addblock``, ``concatblock``) and ``yolo``/
``yoloout`` are read by MsnhNet but not here: they are reported, all at once.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import InputError, Problem, UnsupportedLayersError

Dims = tuple[int, int, int]

ACTIVATIONS = (
    *("logistic", "swish", "hardswish", "mish", "loggy", "relu", "prelu", "relu6", "elu", "selu", "relie", "plse"),
    *("hardtan", "lhtan", "ramp", "leaky", "tanh", "softplus", "stair", "none"),
    *("normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval"),
)
VAROP_BINARY = ("add", "sub", "subInv", "mul", "div", "divInv")
VAROP_CONST = ("addConst", "subConst", "subConstInv", "mulConst", "divConst", "divConstInv")
VAROP_UNARY = (
    *("abs", "acos", "asin", "atan", "cos", "cosh", "sin", "sinh", "tan", "tanh"),
    *("exp", "pow", "log", "log10", "sqrt"),
)
NOT_READ = ("resblock", "res2block", "addblock", "concatblock", "yolo", "yoloout")
_NUMBER = re.compile(r"[-+]?[0-9]*.?[0-9]+([eE][-+]?[0-9]+)?")  # MsnhNet's ExString::isNum, "." unescaped


@dataclass(frozen=True)
class Activation:
    name: str
    params: tuple[float, ...] = ()


@dataclass
class Layer:
    """One layer: its position after ``config``, kind, decoded keys, the layers it reads
    by index, its input and output dimensions and sizes, and its weights' shapes."""

    index: int
    kind: str
    params: dict[str, Any]
    line: int
    inputs: tuple[int, ...] = ()
    in_dims: Dims = (0, 0, 0)
    in_size: int = 0
    dims: Dims = (0, 0, 0)
    size: int = 0
    weights: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How the project names it (MsnhNet layers have only their position)."""
        return f"{self.index}:{self.kind}"

    @property
    def weight_count(self) -> int:
        return sum(math.prod(shape) for shape in self.weights.values())


@dataclass
class Net:
    path: str
    batch: int
    dims: Dims  # the input's (C, H, W)
    layers: list[Layer]

    @property
    def weight_count(self) -> int:
        return sum(layer.weight_count for layer in self.layers)


def _error(path: str, message: str, line: int | None = None, remedy: str = "") -> InputError:
    where = f"{path}:{line}" if line is not None else path
    return InputError(
        f"{where}: {message}",
        expected="a .msnhnet file MsnhNet 2.0 loads",
        remedy=remedy or "correct the layer, or write the file again with the workbench",
    )


# ---- parsing ------------------------------------------------------------------------------


def _pairs(path: str, text: str) -> list[tuple[str, Any, int]]:
    """(key, value node, line) of the top-level mapping, repeated keys kept in order."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise _error(path, f"is not YAML MsnhNet reads: {str(error).splitlines()[0]}") from error
    if not isinstance(root, yaml.MappingNode):
        raise _error(path, "holds no mapping of layers")
    return [(key.value, value, key.start_mark.line + 1) for key, value in root.value]


def _keys(path: str, kind: str, node: Any, line: int) -> list[tuple[str, str]]:
    if isinstance(node, yaml.ScalarNode) and kind == "globalavgpool":
        return []
    if not isinstance(node, yaml.MappingNode):
        raise _error(path, f"[{kind}] content error (a layer's value must be a mapping)", line)
    found = []
    for key, value in node.value:
        if not isinstance(value, yaml.ScalarNode):
            raise _error(path, f"[{kind}] key {key.value} has no plain value", line)
        found.append((str(key.value), str(value.value)))
    return found


def _int(path: str, kind: str, key: str, text: str, line: int) -> int:
    if not _NUMBER.fullmatch(text):
        raise _error(path, f"[{kind}] {key} can't convert to int ({text!r})", line)
    match = re.match(r"\s*[-+]?\d+", text)
    return int(match.group()) if match else 0  # atoi


def _float(path: str, kind: str, key: str, text: str, line: int) -> float:
    if not _NUMBER.fullmatch(text):
        raise _error(path, f"[{kind}] {key} can't convert to float ({text!r})", line)
    return float(np.float32(float(text)))


def _activation(text: str) -> Activation:
    parts = [p for p in text.split(",") if p]
    name = parts[0] if parts and parts[0] in ACTIVATIONS else "relu"  # MsnhNet: an unknown name is relu
    values = []
    for part in parts[1:]:
        values.append(float(np.float32(float(part))) if _NUMBER.fullmatch(part) else 0.0)
    return Activation(name, tuple(values))


def _index_list(path: str, kind: str, text: str, index: int, line: int) -> tuple[int, ...]:
    out = []
    for part in [p for p in text.split(",") if p]:
        value = _int(path, kind, "layers", part, line)
        out.append(value + index if value < 0 else value)
    return tuple(out)


# kind -> key -> decoder name ("int", "float", "str", "activation", "layers")
_SCHEMA: dict[str, dict[str, str]] = {
    "conv": {
        **dict.fromkeys(("batchNorm", "filters", "groups", "antialiasing", "useBias"), "int"),
        **{f"{k}{a}": "int" for k in ("kSize", "stride", "padding", "dilation") for a in ("", "X", "Y")},
        "eps": "float",
        "activation": "activation",
    },
    "deconv": {
        **dict.fromkeys(("filters", "groups", "useBias"), "int"),
        **{f"{k}{a}": "int" for k in ("kSize", "stride", "padding") for a in ("", "X", "Y")},
        "activation": "activation",
    },
    "connect": {
        **dict.fromkeys(("output", "batchNorm", "useBias"), "int"),
        "bnEps": "float",
        "activation": "activation",
    },
    "batchnorm": {"activation": "activation", "eps": "float"},
    "maxpool": {
        **{f"{k}{a}": "int" for k in ("kSize", "stride", "padding") for a in ("", "X", "Y")},
        **dict.fromkeys(("maxPoolDepth", "outChannels", "ceilMode"), "int"),
    },
    "localavgpool": {
        **{f"{k}{a}": "int" for k in ("kSize", "stride", "padding") for a in ("", "X", "Y")},
        "ceilMode": "int",
    },
    "globalavgpool": {},
    "act": {"activation": "activation"},
    "route": {
        "layers": "layers",
        **dict.fromkeys(("groups", "groupsId", "addModel"), "int"),
        "activation": "activation",
    },
    "varop": {"layers": "layers", "type": "str", "constVal": "float"},
    "softmax": {"groups": "int", "temperature": "float"},
    "upsample": {
        **dict.fromkeys(("stride", "strideX", "strideY", "alignCorners"), "int"),
        **dict.fromkeys(("scale", "scaleX", "scaleY"), "float"),
        "type": "str",
    },
    "padding": {**dict.fromkeys(("top", "down", "left", "right"), "int"), "paddingVal": "float"},
    "view": dict.fromkeys(("dim0", "dim1", "dim2"), "int"),
    "permute": dict.fromkeys(("dim0", "dim1", "dim2"), "int"),
    "slice": dict.fromkeys(("start0", "step0", "start1", "step1", "start2", "step2"), "int"),
    "pixshf": {"factor": "int"},
    "clip": {"min": "float", "max": "float"},
    "reduction": {"axis": "int", "type": "str"},
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv": {"batchNorm": 0, "filters": 1, "groups": 1, "kSize": 1, "stride": 1, "padding": 0, "dilation": 1,
             "antialiasing": 0, "useBias": 1, "eps": 1e-5, "activation": Activation("none")},
    "deconv": {"filters": 1, "groups": 1, "kSize": 1, "stride": 1, "padding": 0, "useBias": 1,
               "activation": Activation("none")},
    "connect": {"output": 0, "batchNorm": 0, "useBias": 1, "bnEps": 1e-5, "activation": Activation("none")},
    "batchnorm": {"activation": Activation("none"), "eps": 1e-5},
    "maxpool": {"kSize": 1, "stride": 1, "padding": 0, "maxPoolDepth": 0, "outChannels": 1, "ceilMode": 0},
    "localavgpool": {"kSize": 1, "stride": 1, "padding": 0, "ceilMode": 0},
    "act": {"activation": Activation("none")},
    "route": {"layers": (), "groups": 1, "groupsId": 0, "addModel": 0, "activation": Activation("none")},
    "varop": {"layers": (), "type": None, "constVal": 0.0},
    "softmax": {"groups": 1, "temperature": 1.0},
    "upsample": {"stride": 1, "strideX": -1, "strideY": -1, "scale": 1.0, "scaleX": -1.0, "scaleY": -1.0,
                 "alignCorners": 0, "type": "nearest"},
    "padding": {"top": 0, "down": 0, "left": 0, "right": 0, "paddingVal": 0.0},
    "view": {"dim0": -1, "dim1": -1, "dim2": -1},
    "permute": {"dim0": 0, "dim1": 1, "dim2": 2},
    "slice": {"start0": 0, "step0": 1, "start1": 0, "step1": 1, "start2": 0, "step2": 1},
    "pixshf": {"factor": 0},
    "clip": {"min": -float(np.finfo(np.float32).max), "max": float(np.finfo(np.float32).max)},
    "reduction": {"axis": -1, "type": "sum"},
}  # fmt: skip


def _decode(path: str, index: int, kind: str, keys: list[tuple[str, str]], line: int) -> dict[str, Any]:
    schema = _SCHEMA[kind]
    params = dict(_DEFAULTS.get(kind, {}))
    for key, text in keys:
        decoder = schema.get(key)
        if decoder is None:
            raise _error(path, f"{key} is not supported in [{kind}]", line)
        if decoder == "int":
            params[key] = _int(path, kind, key, text, line)
        elif decoder == "float":
            params[key] = _float(path, kind, key, text, line)
        elif decoder == "activation":
            params[key] = _activation(text)
        elif decoder == "layers":
            params[key] = _index_list(path, kind, text, index, line)
        else:
            params[key] = text
        if kind == "upsample":
            _upsample_fill(params)
    return params


def _upsample_fill(params: dict[str, Any]) -> None:
    """MsnhNet's upsample parser, after each key: unset X/Y strides and scales take the scalar."""
    if params["strideX"] == -1 or params["strideY"] == -1:
        params["strideX"] = params["strideY"] = params["stride"]
    if params["scaleX"] < 0 or params["scaleY"] < 0:
        params["scaleX"] = params["scaleY"] = params["scale"]


def _pairs_xy(params: dict[str, Any], names: Sequence[str], unset: Callable[[int], bool]) -> None:
    """``name`` -> (Y, X), each unset one taken from the scalar (MsnhNet's post-processing)."""
    for name in names:
        scalar = params.get(name)
        x, y = params.pop(f"{name}X", None), params.pop(f"{name}Y", None)
        params[name] = (scalar if y is None or unset(y) else y, scalar if x is None or unset(x) else x)


def _resolve(kind: str, params: dict[str, Any]) -> None:
    if kind in ("conv", "deconv", "maxpool"):
        _pairs_xy(params, ("kSize", "stride", "padding", "dilation")[: 4 if kind == "conv" else 3], lambda v: v < 0)
    elif kind == "localavgpool":
        _pairs_xy(params, ("kSize", "stride", "padding"), lambda v: v < 1)
    if kind == "conv":
        dilation = tuple(1 if k == 1 else d for k, d in zip(params["kSize"], params["dilation"]))
        params["dilation"] = dilation
        params["groups"] = max(params["groups"], 1)


def parse(path: str, text: str) -> tuple[int, Dims, list[Layer]]:
    """(batch, input dims, layers with decoded keys) of a ``.msnhnet`` text."""
    pairs = _pairs(path, text)
    if not pairs or pairs[0][0] != "config":
        raise _error(path, "first node must be [config]", pairs[0][2] if pairs else None)
    config = dict(_DEFAULTS_CONFIG)
    for key, value in _keys(path, "config", pairs[0][1], pairs[0][2]):
        if key not in config:
            raise _error(path, f"{key} is not supported in [config]", pairs[0][2])
        config[key] = _int(path, "config", key, value, pairs[0][2])
    if min(config["width"], config["height"], config["channels"]) <= 0:
        raise _error(path, "net config params err, params = 0 or < 0", pairs[0][2])
    layers, unread = [], []
    for index, (kind, node, line) in enumerate(pairs[1:]):
        if kind in NOT_READ:
            unread.append(
                Problem(
                    "error",
                    "unsupported-layer",
                    f"{index}:{kind}",
                    kind,
                    "not read by the workbench",
                    "convert the model from its source framework instead",
                    (f"{index}:{kind}",),
                )
            )
            layers.append(Layer(index, kind, {}, line))
            continue
        if kind not in _SCHEMA:
            raise _error(path, f"LayerType [{kind}] is not supported", line)
        params = _decode(path, index, kind, _keys(path, kind, node, line), line)
        _resolve(kind, params)
        layers.append(Layer(index, kind, params, line))
    if unread:
        raise UnsupportedLayersError("MsnhNet", unread, remedy="convert the model from its source framework")
    return config["batch"], (config["channels"], config["height"], config["width"]), layers


_DEFAULTS_CONFIG = {"batch": 1, "width": 0, "height": 0, "channels": 0}


# ---- dimensions, as the builder computes them --------------------------------------------------


class _Builder:
    """Walks the layers like ``buildNetFromMsnhNet``: each layer's input is the one before."""

    def __init__(self, net_path: str, dims: Dims, layers: list[Layer]) -> None:
        self.path = net_path
        self.layers = layers
        self.dims, self.size = dims, math.prod(dims)

    def fail(self, layer: Layer, message: str) -> InputError:
        return _error(self.path, f"layer {layer.index} ({layer.kind}): {message}", layer.line)

    def run(self) -> None:
        for layer in self.layers:
            layer.in_dims, layer.in_size = self.dims, self.size
            if layer.index == 0 and layer.kind in ("route", "varop", "view"):
                raise self.fail(layer, f"{layer.kind} layer should not be 0 layer")
            _SHAPERS[layer.kind](self, layer)
            self.dims, self.size = layer.dims, layer.size

    def image(self, layer: Layer) -> Dims:
        if 0 in self.dims:
            raise self.fail(layer, f"Layer before {layer.kind} layer must output image")
        return self.dims

    def referenced(self, layer: Layer, index: int) -> Layer:
        if not 0 <= index < layer.index:
            raise self.fail(layer, f"names layer {index}, which is not an earlier layer")
        return self.layers[index]


def _activation_weights(layer: Layer, channels: int) -> None:
    if layer.params["activation"].name == "prelu":
        layer.weights["prelu"] = (channels,)


def _shape_conv(b: _Builder, layer: Layer) -> None:
    c, h, w = b.image(layer)
    p = layer.params
    (ky, kx), (sy, sx), (py, px), (dy, dx) = p["kSize"], p["stride"], p["padding"], p["dilation"]
    out = ((h + 2 * py - (dy * (ky - 1) + 1)) // sy + 1, (w + 2 * px - (dx * (kx - 1) + 1)) // sx + 1)
    layer.dims = (p["filters"], *out)
    layer.size = math.prod(layer.dims)
    n = p["filters"]
    layer.weights["weight"] = (n, c // p["groups"], ky, kx)
    bias = {"bias": (n,)} if p["useBias"] else {}
    if p["batchNorm"]:
        layer.weights.update({"scale": (n,), **bias, "mean": (n,), "var": (n,)})
    else:
        layer.weights.update(bias)
    _activation_weights(layer, n)


def _shape_deconv(b: _Builder, layer: Layer) -> None:
    c, h, w = b.image(layer)
    p = layer.params
    (ky, kx), (sy, sx), (py, px) = p["kSize"], p["stride"], p["padding"]
    layer.dims = (p["filters"], (h - 1) * sy - 2 * py + ky, (w - 1) * sx - 2 * px + kx)
    layer.size = math.prod(layer.dims)
    layer.weights["weight"] = (c // p["groups"], p["filters"], ky, kx)
    if p["useBias"]:
        layer.weights["bias"] = (p["filters"],)


def _shape_connect(b: _Builder, layer: Layer) -> None:
    p = layer.params
    n = p["output"]
    layer.dims, layer.size = (n, 1, 1), n
    layer.weights["weight"] = (n, b.size)
    bias = {"bias": (n,)} if p["useBias"] else {}
    if p["batchNorm"]:
        layer.weights.update({"scale": (n,), "mean": (n,), "var": (n,), **bias})
    else:
        layer.weights.update(bias)
    _activation_weights(layer, n)


def _shape_batchnorm(b: _Builder, layer: Layer) -> None:
    layer.dims, layer.size = b.dims, math.prod(b.dims)
    c = b.dims[0]
    layer.weights.update({"scale": (c,), "bias": (c,), "mean": (c,), "var": (c,)})
    _activation_weights(layer, c)


def pooled(size: int, k: int, s: int, p: int, ceil_mode: int) -> int | None:
    """MsnhNet's pooled length; None where its ceilMode 1 throws ("padding error")."""
    span = size + 2 * p - k
    if ceil_mode == 1:
        if span % s >= k:
            return None
        return span // s + (1 if span % s <= p else 2)
    if ceil_mode == 0:
        return span // s + 1
    return (size + p - k) // s + 1


def _shape_pool(b: _Builder, layer: Layer) -> None:
    c, h, w = b.image(layer)
    p = layer.params
    if p.get("maxPoolDepth"):
        layer.dims = (p["outChannels"], h, w)
    else:
        (ky, kx), (sy, sx), (py, px) = p["kSize"], p["stride"], p["padding"]
        out_h, out_w = pooled(h, ky, sy, py, p["ceilMode"]), pooled(w, kx, sx, px, p["ceilMode"])
        if out_h is None or out_w is None:
            raise b.fail(layer, f"{layer.kind} padding error")
        layer.dims = (c, out_h, out_w)
    layer.size = math.prod(layer.dims)


def _shape_global(b: _Builder, layer: Layer) -> None:
    layer.dims = (b.image(layer)[0], 1, 1)
    layer.size = layer.dims[0]


def _shape_act(b: _Builder, layer: Layer) -> None:
    layer.dims, layer.size = b.dims, b.size
    _activation_weights(layer, b.dims[0])


def _shape_route(b: _Builder, layer: Layer) -> None:
    p = layer.params
    sources = [b.referenced(layer, i) for i in p["layers"]]
    if not sources:
        raise b.fail(layer, "route layer error, no route layers")
    if p["addModel"] == 1 and len(sources) < 2:
        raise b.fail(layer, "route layer error, add model must have at least 2 layers")
    for first, second in itertools.pairwise(sources):
        same = first.dims[1:] == second.dims[1:] and (p["addModel"] != 1 or first.dims[0] == second.dims[0])
        if not same:
            raise b.fail(layer, f"[route] layers height or width not equal ({first.dims} and {second.dims})")
    channels = sources[0].dims[0] if p["addModel"] == 1 else sum(s.dims[0] for s in sources)
    layer.inputs = tuple(p["layers"])
    layer.dims = (channels, *sources[-1].dims[1:])
    total = sources[0].size if p["addModel"] == 1 else sum(s.size for s in sources)
    layer.size = total // p["groups"]  # MsnhNet divides the count, not the channels


def _shape_varop(b: _Builder, layer: Layer) -> None:
    p = layer.params
    kind = p["type"]
    if kind not in VAROP_BINARY + VAROP_CONST + VAROP_UNARY:
        raise b.fail(layer, f"[varop] var op no supported : {kind}")
    refs = [b.referenced(layer, i) for i in p["layers"]]
    if kind in VAROP_BINARY:
        if len(refs) not in (1, 2):
            raise b.fail(layer, "VarOp layer error, <add sub mul div> mode must have 1/2 extra layer(s)")
        if len(refs) == 2 and layer.index - 1 in p["layers"]:
            raise b.fail(layer, "VarOp layer error, <add sub mul div> front layer should not contains in layers option")
        compared = [r.dims for r in refs] if len(refs) == 2 else [refs[0].dims, b.dims]
        if compared[0] != compared[1]:
            raise b.fail(layer, f"[VarOp] layers height or width not equal ({compared[0]} and {compared[1]})")
    elif refs:
        raise b.fail(layer, "VarOp layer error, should not add extra layer")
    layer.inputs = tuple(p["layers"])
    layer.dims, layer.size = b.dims, math.prod(b.dims)


def _shape_softmax(b: _Builder, layer: Layer) -> None:
    layer.dims, layer.size = (0, 0, 0), b.size


def _shape_upsample(b: _Builder, layer: Layer) -> None:
    c, h, w = b.dims
    p = layer.params
    if p["type"] == "nearest":
        layer.dims = (c, h * p["strideY"], w * p["strideX"])
    elif p["type"] == "bilinear":
        layer.dims = (c, int(np.float32(h) * np.float32(p["scaleY"])), int(np.float32(w) * np.float32(p["scaleX"])))
    else:
        raise b.fail(layer, f"upsample type {p['type']} is not nearest or bilinear")
    layer.size = math.prod(layer.dims)


def _shape_padding(b: _Builder, layer: Layer) -> None:
    c, h, w = b.dims
    p = layer.params
    layer.dims = (c, h + p["top"] + p["down"], w + p["left"] + p["right"])
    layer.size = math.prod(layer.dims)


def _shape_view(b: _Builder, layer: Layer) -> None:
    p = layer.params
    layer.dims = (p["dim2"], p["dim1"], p["dim0"])
    if math.prod(layer.dims) != math.prod(b.dims) or min(layer.dims) <= 0:
        raise b.fail(layer, f"view op params error ({b.dims} viewed as {layer.dims})")
    layer.size = math.prod(layer.dims)


def _shape_permute(b: _Builder, layer: Layer) -> None:
    order = (layer.params["dim0"], layer.params["dim1"], layer.params["dim2"])
    if sorted(order) != [0, 1, 2]:
        raise b.fail(layer, f"permute dims {order} are not an order of 0 (c), 1 (h), 2 (w)")
    layer.dims = (b.dims[order[0]], b.dims[order[1]], b.dims[order[2]])
    layer.size = math.prod(layer.dims)


def _shape_slice(b: _Builder, layer: Layer) -> None:
    out = []
    for axis, size in enumerate(b.dims):
        start, step = layer.params[f"start{axis}"], layer.params[f"step{axis}"]
        if start > size - 1 or step < 1:
            raise b.fail(layer, f"slice {'chw'[axis]} start error")
        out.append(-(-(size - start) // step))
    layer.dims = (out[0], out[1], out[2])
    layer.size = math.prod(layer.dims)


def _shape_pixshf(b: _Builder, layer: Layer) -> None:
    c, h, w = b.dims
    f = layer.params["factor"]
    if f <= 0 or c % (f * f):
        raise b.fail(layer, "pixshf factor must be > 0 and divide the channels by factor^2")
    layer.dims = (c // (f * f), h * f, w * f)
    layer.size = math.prod(layer.dims)


def _shape_clip(b: _Builder, layer: Layer) -> None:
    if layer.params["min"] > layer.params["max"]:
        raise b.fail(layer, "Clip min val must < max val")
    layer.dims, layer.size = b.dims, math.prod(b.dims)


def _shape_reduction(b: _Builder, layer: Layer) -> None:
    c, h, w = b.dims
    axis = layer.params["axis"]
    found = {-1: (1, 1, 1), 0: (1, h, w), 1: (c, 1, w), 2: (c, h, 1)}.get(axis)
    if found is None or layer.params["type"] not in ("sum", "mean"):
        raise b.fail(layer, f"reduction axis {axis} / type {layer.params['type']} is not supported")
    layer.dims, layer.size = found, math.prod(found)


_SHAPERS: dict[str, Callable[[_Builder, Layer], None]] = {
    "conv": _shape_conv,
    "deconv": _shape_deconv,
    "connect": _shape_connect,
    "batchnorm": _shape_batchnorm,
    "maxpool": _shape_pool,
    "localavgpool": _shape_pool,
    "globalavgpool": _shape_global,
    "act": _shape_act,
    "route": _shape_route,
    "varop": _shape_varop,
    "softmax": _shape_softmax,
    "upsample": _shape_upsample,
    "padding": _shape_padding,
    "view": _shape_view,
    "permute": _shape_permute,
    "slice": _shape_slice,
    "pixshf": _shape_pixshf,
    "clip": _shape_clip,
    "reduction": _shape_reduction,
}


def read_net(path: str | Path) -> Net:
    """The layers of a ``.msnhnet`` file, decoded and shaped as MsnhNet builds them."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise _error(str(path), f"cannot be read: {error}") from error
    batch, dims, layers = parse(str(path), text)
    if not layers:
        raise _error(str(path), "has no layers after config")
    _Builder(str(path), dims, layers).run()
    return Net(str(path), batch, dims, layers)


def read_weights(path: str | Path, net: Net) -> list[dict[str, np.ndarray]]:
    """Every layer's weight arrays by name, from the ``.msnhbin`` (its length must be
    exactly what the layers take, as MsnhNet's loader requires)."""
    path = Path(path)
    data = np.fromfile(path, dtype="<f4") if path.is_file() else None
    size = path.stat().st_size if path.is_file() else 0
    needed = net.weight_count
    if data is None or size % 4 or size == 0 or data.size != needed:
        raise InputError(
            f"{path} does not hold the weights of {Path(net.path).name}",
            expected=f"{needed} float32 values ({needed * 4} bytes), as the layers take them",
            found=f"{size} bytes" if data is not None else "no file",
            remedy="pass the .msnhbin written with this .msnhnet",
        )
    out: list[dict[str, np.ndarray]] = []
    offset = 0
    for layer in net.layers:
        arrays = {}
        for name, shape in layer.weights.items():
            count = math.prod(shape)
            arrays[name] = data[offset : offset + count].reshape(shape).astype(np.float32)
            offset += count
        out.append(arrays)
    return out


__all__ = ["ACTIVATIONS", "Activation", "Layer", "Net", "parse", "pooled", "read_net", "read_weights"]
