"""The two MsnhNet files of a built net: the ``.msnhnet`` text and the ``.msnhbin`` bytes.

``.msnhnet`` is one YAML mapping whose keys repeat (MsnhNet's parser keeps them
in order): ``config`` first (batch, width, height, channels), then one entry per
layer, each preceded by a ``#index`` comment. Keys are written in the order the
converter gave them, which matters: MsnhNet's ``upsample`` parser fills unset
X/Y strides and scales from the scalar after *every* key, so ``type`` comes first.
A list of layers (``route``/``varop`` ``layers``) is written as absolute indexes
joined by commas without spaces (the real parser rejects ``1, -1``).

``.msnhbin`` is every layer's weights as little-endian float32, in layer order,
with no header: joined once and written once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .net import MsnhLayer, MsnhNet, float_text


def _value_text(value: Any, index_of: dict[int, int]) -> str:
    if isinstance(value, list):
        return ",".join(_value_text(item, index_of) for item in value)
    if isinstance(value, MsnhLayer):
        return str(index_of[id(value)])
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return float_text(float(value))
    return str(value)


def render(net: MsnhNet) -> str:
    """The ``.msnhnet`` text of ``net``."""
    c, h, w = net.input_dims
    lines = ["config:", f"  batch: {net.batch}", f"  width: {w}", f"  height: {h}", f"  channels: {c}"]
    index_of = {id(layer): index for index, layer in enumerate(net.layers)}
    for index, layer in enumerate(net.layers):
        lines += [f"#{index}", f"{layer.kind}:"]
        lines += [f"  {key}: {_value_text(value, index_of)}" for key, value in layer.params.items()]
        if not layer.params:
            lines[-1] += " {}"  # an empty map: MsnhNet rejects a layer whose value is not a map
    return "\n".join(lines) + "\n"


def weight_bytes(net: MsnhNet) -> bytes:
    """Every weight array, flattened in layer order, as one little-endian float32 buffer."""
    arrays = [weights.reshape(-1) for layer in net.layers for weights in layer.weights]
    if not arrays:
        return b""
    return np.concatenate(arrays).astype("<f4", copy=False).tobytes()
