"""The deploy net of a Caffe ``.prototxt``, as Caffe would run it.

``read_net`` parses the protobuf text into the layers Caffe runs in the TEST
phase, each as a ``LayerParameter``; the pre-2015 ``layers { type: CONVOLUTION }``
form is upgraded the way Caffe's ``upgrade_proto`` does (enum type -> type
string, the same ``*_param`` messages).

PoolingParameter field 13 has two meanings in the wild: BVLC's ``round_mode``
(enum CEIL/FLOOR) and OpenCV's / SSD's ``ceil_mode`` (bool). The shared schema
omits it; the prototxt is parsed with a variant of the schema that knows both
spellings by name. Only text is parsed with the variant, so the field number
given to ``ceil_mode`` is never read or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from ...errors import InputError
from ...formats import caffe_pb2

# V1LayerParameter.LayerType -> the type string of the current format, as
# Caffe's UpgradeV1LayerType spells it.
V1_TYPE_NAMES = {
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

_TEXT_ONLY_CEIL_MODE_NUMBER = 10013  # any free number: the variant schema only parses text


def _text_schema() -> descriptor_pool.DescriptorPool:
    """A schema variant whose PoolingParameter also has
    ``round_mode`` (enum, BVLC) and ``ceil_mode`` (bool, OpenCV/SSD)."""
    file_proto = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(file_proto)
    file_proto.name = "workbench_caffe_text_variant.proto"
    pooling = next(m for m in file_proto.message_type if m.name == "PoolingParameter")
    round_mode = pooling.enum_type.add(name="RoundMode")
    round_mode.value.add(name="CEIL", number=0)
    round_mode.value.add(name="FLOOR", number=1)
    label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    pooling.field.add(
        name="round_mode",
        number=13,
        label=label,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
        type_name=f".{file_proto.package}.PoolingParameter.RoundMode",
    )
    pooling.field.add(
        name="ceil_mode",
        number=_TEXT_ONLY_CEIL_MODE_NUMBER,
        label=label,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return pool


_TEXT_SCHEMA = _text_schema()
TextNetParameter: Any = message_factory.GetMessageClass(
    _TEXT_SCHEMA.FindMessageTypeByName("workbench.caffe.NetParameter")
)
TextLayerParameter: Any = message_factory.GetMessageClass(
    _TEXT_SCHEMA.FindMessageTypeByName("workbench.caffe.LayerParameter")
)


def pooling_rounds_up(pooling_param: Any) -> bool:
    """Caffe's output-size rounding for a PoolingParameter parsed from text:
    up unless ``round_mode: FLOOR`` or ``ceil_mode: false`` says otherwise."""
    if pooling_param.HasField("round_mode"):
        return pooling_param.round_mode == 0
    if pooling_param.HasField("ceil_mode"):
        return pooling_param.ceil_mode
    return True


@dataclass
class DeployNet:
    """The layers Caffe runs at test time, in order, and the declared inputs."""

    name: str
    inputs: dict[str, tuple[int, ...] | None]  # legacy header inputs; None = no shape given
    layers: list[Any]  # LayerParameter messages (text schema variant)
    skipped: list[str] = field(default_factory=list)  # layers outside the TEST phase


def _state_meets_rule(rule: Any, stages: set[str]) -> bool:
    """Caffe's StateMeetsRule for the TEST phase at level 0."""
    if rule.HasField("phase") and rule.phase != caffe_pb2.TEST:
        return False
    if rule.HasField("min_level") and 0 < rule.min_level:
        return False
    if rule.HasField("max_level") and 0 > rule.max_level:
        return False
    if any(stage not in stages for stage in rule.stage):
        return False
    return not any(stage in stages for stage in rule.not_stage)


def _runs_in_test_phase(layer: Any, stages: set[str]) -> bool:
    if layer.include:
        return any(_state_meets_rule(rule, stages) for rule in layer.include)
    return not any(_state_meets_rule(rule, stages) for rule in layer.exclude)


def _upgrade_v1(v1_layer: Any) -> Any:
    """A V1 ``layers`` entry as a current ``layer`` entry (same ``*_param`` messages)."""
    type_name = v1_layer.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[v1_layer.type].name
    layer = TextLayerParameter(name=v1_layer.name, type=V1_TYPE_NAMES.get(type_name, type_name))
    layer.bottom.extend(v1_layer.bottom)
    layer.top.extend(v1_layer.top)
    layer.include.extend(v1_layer.include)
    layer.exclude.extend(v1_layer.exclude)
    for descriptor, value in v1_layer.ListFields():
        if descriptor.name.endswith("_param") and descriptor.name in layer.DESCRIPTOR.fields_by_name:
            getattr(layer, descriptor.name).CopyFrom(value)
    return layer


def _header_inputs(net: Any, path: Path) -> dict[str, tuple[int, ...] | None]:
    names = list(net.input)
    if net.input_shape:
        shapes = [tuple(int(d) for d in shape.dim) for shape in net.input_shape]
    elif net.input_dim:
        dims = [int(d) for d in net.input_dim]
        shapes = [tuple(dims[i : i + 4]) for i in range(0, len(dims), 4)]
    else:
        return {name: None for name in names}
    if len(shapes) != len(names) or any(len(s) == 0 for s in shapes):
        raise InputError(
            f"{path}: the network header declares {len(names)} input(s) but {len(shapes)} shape(s)",
            expected="one input_shape (or four input_dim values) per input",
            found=f"inputs {names}, shapes {shapes}",
            remedy="give every `input:` its shape",
        )
    return dict(zip(names, shapes))


def read_net(path: Path) -> DeployNet:
    """Parse a ``.prototxt`` into the layers of its TEST phase."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"no such prototxt: {path}", remedy="check the path") from error
    except OSError as error:
        raise InputError(f"cannot read the prototxt {path}", found=error.strerror, remedy="check the path") from error
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path} is not a text file",
            expected="a Caffe network definition in protobuf text format (.prototxt)",
            found="binary data",
            remedy="pass the .prototxt as the network and the .caffemodel as the weights",
        ) from error
    net = TextNetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as error:
        raise InputError(
            f"{path} is not a readable Caffe prototxt",
            expected="a NetParameter in protobuf text format",
            found=str(error),
            remedy="fix the line named above; fields from other Caffe forks must be removed",
        ) from error
    if net.layer and net.layers:
        raise InputError(
            f"{path} mixes the current `layer` and the V1 `layers` formats",
            remedy="upgrade the file with Caffe's upgrade_net_proto_text",
        )
    stages = set(net.state.stage)
    layers: list[Any] = []
    skipped: list[Any] = []
    for layer in [*net.layer, *(_upgrade_v1(v1) for v1 in net.layers)]:
        (layers if _runs_in_test_phase(layer, stages) else skipped).append(layer)
    return DeployNet(net.name or path.stem, _header_inputs(net, path), layers, [l.name for l in skipped])
