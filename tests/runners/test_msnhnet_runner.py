"""The MsnhNet executor on hand-written ``.msnhnet`` + ``.msnhbin`` files: MsnhNet 2.0's
semantics as its parser, builder and layers implement them. Expected values are
written out here with NumPy from the format's rules (weight order per layer, pooling
rounding, softmax over the flattened sample, ...); the rules that are MsnhNet's own
quirks were each observed in the real runtime (x86, AVX2) when the executor was
written. Files MsnhNet refuses are refused with its reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench import InputError, UnsupportedError
from workbench.formats.msnhnet import read_net
from workbench.runners import open_runner
from workbench.runners.msnhnet_runner import MsnhNetRunner

RNG = np.random.default_rng(0)


IDENTITY = "batchnorm:\n  eps: 0\n"  # MsnhNet refuses an empty .msnhbin: weightless nets start with an identity


def net(tmp_path: Path, body: str, weights: list[np.ndarray] | None = None, chw=(2, 4, 5)) -> MsnhNetRunner:
    """A network of ``body`` on a (C, H, W) input; without weights it starts with an
    identity batchnorm (layer 0, left out by ``layers``)."""
    c, h, w = chw
    if weights is None:
        body, weights = IDENTITY + body, [np.ones(c), np.zeros(c), np.zeros(c), np.ones(c)]
    text = f"config:\n  batch: 1\n  width: {w}\n  height: {h}\n  channels: {c}\n{body}"
    (tmp_path / "n.msnhnet").write_text(text)
    data = np.concatenate([np.asarray(a, np.float32).ravel() for a in weights])
    (tmp_path / "n.msnhbin").write_bytes(data.astype("<f4").tobytes())
    return MsnhNetRunner(tmp_path / "n.msnhnet", tmp_path / "n.msnhbin")


def layers(runner: MsnhNetRunner, x: np.ndarray) -> list[np.ndarray]:
    outputs = [array for _, array in runner.run_layers([x])]
    first = runner.net.layers[0]
    return outputs[1:] if first.kind == "batchnorm" and first.params["eps"] == 0 else outputs


def bn(x, scale, bias, mean, var, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return scale.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) + bias.reshape(shape)


def test_conv_with_batch_norm_takes_scale_bias_mean_var(tmp_path) -> None:
    w = RNG.standard_normal((3, 2, 1, 1)).astype(np.float32)
    scale, bias, mean, var = RNG.random(3) + 0.5, RNG.standard_normal(3), RNG.standard_normal(3), RNG.random(3) + 0.5
    runner = net(tmp_path, "conv:\n  filters: 3\n  batchNorm: 1\n  eps: 0.001\n", [w, scale, bias, mean, var])
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    expected = bn(np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]), scale, bias, mean, var, 1e-3)
    (actual,) = layers(runner, x)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)  # float32 against float64: atol 1e-5


def test_batch_norm_constants_for_diagnosis(tmp_path) -> None:
    w = np.ones((3, 2, 1, 1), np.float32)
    stats = [np.full(3, value, np.float32) for value in (2.0, 0.5, 0.25, 4.0)]
    runner = net(tmp_path, "conv:\n  filters: 3\n  batchNorm: 1\n  eps: 0.001\n", [w, *stats])
    constants = runner.layer_constants("0:conv")
    assert constants is not None and constants.op_type == "BatchNormalization"
    assert constants.attributes["epsilon"] == pytest.approx(1e-3)
    assert [float(constants.arrays[k][0]) for k in ("scale", "B", "input_mean", "input_var")] == [2.0, 0.5, 0.25, 4.0]


def test_connect_with_batch_norm_takes_scale_mean_var_bias(tmp_path) -> None:
    w = RNG.standard_normal((3, 40)).astype(np.float32)
    scale, mean, var, bias = RNG.random(3) + 0.5, RNG.standard_normal(3), RNG.random(3) + 0.5, RNG.standard_normal(3)
    runner = net(tmp_path, "connect:\n  output: 3\n  batchNorm: 1\n", [w, scale, mean, var, bias])
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    (actual,) = layers(runner, x)
    expected = bn(x.reshape(1, -1) @ w.T, scale, bias, mean, var)
    np.testing.assert_allclose(actual.reshape(1, 3), expected, rtol=1e-5, atol=1e-5)  # float32: atol 1e-5


def test_maxpool_ceil_mode_is_msnhnet_rule(tmp_path) -> None:
    """8x8, k3 s2 p1, ceilMode 1: 4x4 in MsnhNet (PyTorch and Caffe give 5x5)."""
    runner = net(tmp_path, "maxpool:\n  kSize: 3\n  stride: 2\n  padding: 1\n  ceilMode: 1\n", chw=(1, 8, 8))
    x = RNG.standard_normal((1, 1, 8, 8)).astype(np.float32)
    (actual,) = layers(runner, x)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)), constant_values=-np.inf)
    expected = np.array(
        [[padded[0, 0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max() for j in range(4)] for i in range(4)]
    )
    np.testing.assert_array_equal(actual[0, 0], expected)  # max pooling is exact


def test_stride_one_max_pooling_with_padding_reads_what_msnhnet_avx_reads(tmp_path) -> None:
    """MsnhNet's AVX path tests the padding at the first column of each block of 8
    only: left-edge windows miss the cells a padded neighbour would have read."""
    runner = net(tmp_path, "maxpool:\n  kSize: 3\n  stride: 1\n  padding: 1\n", chw=(1, 3, 20))
    x = RNG.standard_normal((1, 1, 3, 20)).astype(np.float32)
    (actual,) = layers(runner, x)
    padded = np.pad(x[0, 0], 1, constant_values=-np.inf)
    correct = np.array([[padded[i : i + 3, j : j + 3].max() for j in range(20)] for i in range(3)])
    block = np.array([[padded[i : i + 3, j + 1 : j + 3].max() for j in range(8)] for i in range(3)])  # tap 0 skipped
    np.testing.assert_array_equal(actual[0, 0, :, :8], block)
    np.testing.assert_array_equal(actual[0, 0, :, 16:], correct[:, 16:])  # the scalar tail is right


def test_softmax_normalises_the_whole_sample_in_groups(tmp_path) -> None:
    runner = net(tmp_path, "softmax:\n  groups: 2\n")
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    (actual,) = layers(runner, x)
    chunks = x.reshape(2, 20)
    expected = np.exp(chunks - chunks.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(actual.reshape(2, 20), expected, rtol=1e-6, atol=1e-7)  # float32: 1e-6 relative


def test_varop_tanh_computes_tan(tmp_path) -> None:
    runner = net(tmp_path, "act:\n  activation: none\nvarop:\n  type: tanh\n")
    x = RNG.uniform(-1, 1, (1, 2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(layers(runner, x)[1], np.tan(x), rtol=1e-6)  # float32 tanf: 1e-6 relative


def test_act_tanh_overflows_in_the_scalar_tail(tmp_path) -> None:
    """40 values: 5 AVX blocks, no tail; 30 values: a tail of 6 that gives NaN above 44."""
    x = np.full((1, 2, 3, 5), 50.0, np.float32)
    (actual,) = layers(net(tmp_path, "act:\n  activation: tanh\n", chw=(2, 3, 5)), x)
    assert np.isnan(actual.reshape(-1)[24:]).all() and (actual.reshape(-1)[:24] == 1).all()


def test_view_takes_dim0_as_the_width(tmp_path) -> None:
    runner = net(tmp_path, "act:\n  activation: relu\nview:\n  dim0: 8\n  dim1: 1\n  dim2: 5\n")
    assert [layer.dims for layer in runner.net.layers[1:]] == [(2, 4, 5), (5, 1, 8)]


def test_a_view_after_a_layer_with_its_own_buffer_reads_the_shared_buffer(tmp_path) -> None:
    """Layer 1 (relu) has its own buffer (route 4 names it); the view at 2 passes on the
    shared buffer, which still holds layer 0's output: the input, not its relu."""
    body = "act:\n  activation: relu\nview:\n  dim0: 40\n  dim1: 1\n  dim2: 1\nact:\n  activation: none\nroute:\n  layers: 1\n"
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    _, view, _, route = layers(net(tmp_path, body), x)
    np.testing.assert_array_equal(view.reshape(-1), x.reshape(-1))  # stale, as in MsnhNet
    np.testing.assert_array_equal(route, np.maximum(x, 0))
    first = (
        "conv:\n  filters: 2\nview:\n  dim0: 40\n  dim1: 1\n  dim2: 1\nact:\n  activation: none\nroute:\n  layers: 0\n"
    )
    with pytest.raises(InputError, match="shared buffer before any layer wrote it"):
        layers(net(tmp_path, first, [np.eye(2), np.zeros(2)]), x)


def test_upsample_strides_given_after_type_are_ignored(tmp_path) -> None:
    """MsnhNet fills unset X/Y strides from the scalar after every key: ``type`` first fixes them at 1."""
    runner = net(tmp_path, "upsample:\n  type: nearest\n  stride: 2\n")
    assert runner.net.layers[1].dims == (2, 4, 5)
    runner = net(tmp_path, "upsample:\n  stride: 2\n  type: nearest\n")
    assert runner.net.layers[1].dims == (2, 8, 10)


def test_route_indexes_absolute_and_relative(tmp_path) -> None:
    body = "act:\n  activation: relu\nact:\n  activation: logistic\nroute:\n  layers: 1,-1\n"
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    *_, joined = layers(net(tmp_path, body), x)
    expected = np.concatenate([np.maximum(x, 0), 1 / (1 + np.exp(-np.maximum(x, 0)))], axis=1)
    np.testing.assert_allclose(joined, expected, rtol=1e-6)  # float32 exp: 1e-6 relative


def test_pixshf_is_msnhnets_own_shuffle(tmp_path) -> None:
    x = np.arange(1 * 4 * 2 * 3, dtype=np.float32).reshape(1, 4, 2, 3)
    (actual,) = layers(net(tmp_path, "pixshf:\n  factor: 2\n", chw=(4, 2, 3)), x)
    flat = x.reshape(-1)
    expected = np.array(
        [[flat[0 * 12 + h * 3 + (w % 2) * 6 + w // 2] for w in range(6)] for h in range(4)], np.float32
    )  # out[c,h,w] = in[c*f*W*H + h*W + (w%f)*W*H + w/f]
    np.testing.assert_array_equal(actual[0, 0], expected)


MSNHNET_REFUSES = {
    "route-with-spaces": ("route:\n  layers: 0, -1\n", "can't convert to int"),
    "unknown-key": ("conv:\n  filter: 3\n", "filter is not supported in \\[conv\\]"),
    "conv-after-softmax": ("softmax:\n  groups: 1\nconv:\n  filters: 1\n", "must output image"),
    "route-first": ("route:\n  layers: 0\n", "should not be 0 layer"),
    "varop-first": ("varop:\n  type: exp\n", "should not be 0 layer"),
    "not-a-map": ("softmax:\n", "content error"),
    "unknown-layer": ("deformable:\n  k: 1\n", "is not supported"),
}


@pytest.mark.parametrize("body,message", MSNHNET_REFUSES.values(), ids=MSNHNET_REFUSES.keys())
def test_files_msnhnet_refuses_are_refused_with_its_reason(body, message, tmp_path) -> None:
    (tmp_path / "n.msnhnet").write_text(f"config:\n  batch: 1\n  width: 5\n  height: 4\n  channels: 2\n{body}")
    with pytest.raises(InputError, match=message):
        read_net(tmp_path / "n.msnhnet")


def test_block_layers_are_listed_as_unsupported(tmp_path) -> None:
    body = "conv:\n  filters: 2\nresblock:\n  size: 1\nyolo:\n  classNum: 1\n"
    (tmp_path / "n.msnhnet").write_text(f"config:\n  batch: 1\n  width: 5\n  height: 4\n  channels: 2\n{body}")
    with pytest.raises(UnsupportedError) as raised:
        read_net(tmp_path / "n.msnhnet")
    assert "resblock" in str(raised.value) and "yolo" in str(raised.value)


@pytest.mark.parametrize("extra", [-1, 1], ids=["short", "long"])
def test_the_weights_must_be_exactly_what_the_layers_take(extra, tmp_path) -> None:
    weights = [np.zeros(3 * 2 + 3 + extra, np.float32)]
    with pytest.raises(InputError, match=r"9 float32 values"):
        net(tmp_path, "conv:\n  filters: 3\n", weights)


def test_non_square_convolution_is_refused(tmp_path) -> None:
    runner = net(tmp_path, "conv:\n  filters: 1\n  kSizeX: 3\n  kSizeY: 1\n  paddingX: 1\n", [np.zeros(2 * 3 + 1)])
    with pytest.raises(InputError, match="X and Y differ"):
        layers(runner, np.zeros((1, 2, 4, 5), np.float32))


def test_open_runner_takes_the_files(tmp_path) -> None:
    net(tmp_path, "conv:\n  filters: 1\n", [np.ones(2), np.zeros(1)])
    runner = open_runner(tmp_path / "n.msnhnet", tmp_path / "n.msnhbin")
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    (output,) = runner.run([x]).values()
    np.testing.assert_allclose(output, x.sum(1, keepdims=True), rtol=1e-6)  # a 1x1 conv of ones: float32 sums
    assert runner.layer_names([x]) == ["0:conv"] and runner.input_shapes() == [(1, 2, 4, 5)]


def test_a_deconv_as_layer_0_of_a_non_square_input_is_refused_as_runclassify_does(tmp_path) -> None:
    """MsnhNet's deconv counts its input as width x width x channels; runClassify checks layer 0's count."""
    runner = net(tmp_path, "deconv:\n  filters: 1\n  kSize: 2\n  stride: 2\n", [np.ones(2 * 4), np.zeros(1)])
    with pytest.raises(InputError, match="width x width x channels"):
        runner.run([np.zeros((1, 2, 4, 5), np.float32)])
