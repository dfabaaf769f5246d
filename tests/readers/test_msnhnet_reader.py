"""MsnhNet files read into a graph: the graph (in onnxruntime) computes what the MsnhNet
executor computes, layer by layer, including MsnhNet's own rules; every node names
its layer (``index:kind``) as provenance; layers MsnhNet computes with undefined
results are reported, all at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench import InputError, UnsupportedError
from workbench.graph import provenance
from workbench.readers import load
from workbench.steps.compare import compare

RNG = np.random.default_rng(0)
IDENTITY = "batchnorm:\n  eps: 0\n"


def files(tmp_path: Path, body: str, weights: list[np.ndarray], chw=(2, 6, 7)) -> tuple[Path, Path]:
    c, h, w = chw
    (tmp_path / "n.msnhnet").write_text(f"config:\n  batch: 1\n  width: {w}\n  height: {h}\n  channels: {c}\n{body}")
    data = np.concatenate([np.asarray(a, np.float32).ravel() for a in weights])
    (tmp_path / "n.msnhbin").write_bytes(data.astype("<f4").tobytes())
    return tmp_path / "n.msnhnet", tmp_path / "n.msnhbin"


def identity_weights(c: int) -> list[np.ndarray]:
    return [np.ones(c), np.zeros(c), np.zeros(c), np.ones(c)]


BODIES = {
    "conv-bn-leaky": ("conv:\n  filters: 3\n  kSize: 3\n  padding: 1\n  batchNorm: 1\n  activation: leaky,0.2\n",
                      [RNG.standard_normal(3 * 2 * 9), RNG.random(3) + 0.5, RNG.standard_normal(3), RNG.standard_normal(3), RNG.random(3) + 0.5]),
    "pooling-msnhnet-ceil": (IDENTITY + "maxpool:\n  kSize: 3\n  stride: 2\n  padding: 1\n  ceilMode: 1\nlocalavgpool:\n  kSize: 2\n  stride: 2\n  ceilMode: 1\n", identity_weights(2)),
    "softplus-default-threshold": (IDENTITY + "act:\n  activation: softplus\n", identity_weights(2)),
    "varop-tanh-is-tan": (IDENTITY + "varop:\n  type: tanh\nvarop:\n  type: mulConst\n  constVal: 0.5\n", identity_weights(2)),
    "route-add-and-concat": (IDENTITY + "act:\n  activation: relu\nroute:\n  layers: 0,1\n  addModel: 1\nroute:\n  layers: 1,2\n", identity_weights(2)),
    "softmax-groups-connect": (IDENTITY + "softmax:\n  groups: 2\nconnect:\n  output: 3\n", [*identity_weights(2), RNG.standard_normal(3 * 84), RNG.standard_normal(3)]),
    "view-permute-slice-padding": (IDENTITY + "view:\n  dim0: 6\n  dim1: 7\n  dim2: 2\npermute:\n  dim0: 2\n  dim1: 0\n  dim2: 1\nslice:\n  start1: 1\n  step2: 2\npadding:\n  top: 1\n  down: -1\n  right: 2\n  paddingVal: 3\n", identity_weights(2)),
    "pixshf": (IDENTITY + "pixshf:\n  factor: 2\n", identity_weights(8)),
    "upsample-and-reduction": (IDENTITY + "upsample:\n  type: bilinear\n  scaleX: 2\n  scaleY: 1.5\nreduction:\n  type: mean\n  axis: 1\n", identity_weights(2)),
    "stale-view": (IDENTITY + "act:\n  activation: relu\nview:\n  dim0: 84\n  dim1: 1\n  dim2: 1\nact:\n  activation: none\nroute:\n  layers: 1\n", identity_weights(2)),
}  # fmt: skip


@pytest.mark.parametrize("body,weights", BODIES.values(), ids=BODIES.keys())
def test_the_read_graph_computes_what_the_executor_computes(body, weights, tmp_path) -> None:
    chw = (8, 3, 4) if "pixshf" in body else (2, 6, 7)
    paths = files(tmp_path, body, weights, chw)
    model = load(*paths)
    x = RNG.standard_normal((1, *chw)).astype(np.float32) * 3
    comparison = compare(model, paths, [x], per_layer=True, atol=1e-5, rtol=1e-5)
    # onnxruntime on the read graph against the MsnhNet executor: every layer within 1e-5
    assert comparison.ok and comparison.first_divergence is None, comparison
    assert not comparison.unmatched_candidate
    assert {s for node in model.graph for s in provenance.sources(node)} <= {
        f"{i}:{layer}" for i, layer in enumerate(_kinds(body))
    }


def _kinds(body: str) -> list[str]:
    return [line[:-1].split(":")[0] for line in body.splitlines() if line and not line.startswith(" ")]


def test_undefined_layers_are_reported_all_at_once(tmp_path) -> None:
    body = (
        "conv:\n  filters: 2\n  kSizeX: 3\n  kSizeY: 1\n  paddingX: 1\n"
        "deconv:\n  filters: 2\n  kSize: 2\n  stride: 2\n  groups: 2\n"
        "maxpool:\n  kSize: 3\n  stride: 1\n  padding: 1\n"
    )
    paths = files(tmp_path, body, [np.zeros(2 * 2 * 3 + 2), np.zeros(1 * 2 * 4 + 2)], chw=(2, 12, 12))
    with pytest.raises(UnsupportedError) as raised:
        load(*paths)
    assert {p.op_type for p in raised.value.problems} == {"conv", "deconv", "maxpool"}


def test_the_input_shape_is_the_config(tmp_path) -> None:
    paths = files(tmp_path, "conv:\n  filters: 1\n", [np.ones(2), np.zeros(1)])
    assert load(*paths).input_shapes() == {"input": (1, 2, 6, 7)}
    with pytest.raises(InputError, match="fixed by its config"):
        load(*paths, input_shape=(1, 2, 8, 8))
