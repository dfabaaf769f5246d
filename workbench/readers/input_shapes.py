"""Input shapes given at load time (``load(..., input_shape=...)``, ``--input-shape``).

A shape is given as one shape (for a model with one input) or as ``{input name:
shape}``. Readers that need shapes to read at all (MXNet symbols, Caffe inputs
declared without one) receive them by name; after reading, ``fix_input_shapes``
gives every named input its shape. Only open dimensions (a symbolic batch) may
change there: a fixed dimension that disagrees is bad input, since the rest of the
graph was built for it. A shape the weights cannot take (an image size a flattening
Linear layer was not trained for) is bad input too, named at the first node whose
shapes stop agreeing, instead of surfacing later as a writer's or simplifier's error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx_ir as ir

from ..errors import InputError
from ..graph import Model
from ..graph.shapes import shape_inference_error

InputShapes = Sequence[int] | Mapping[str, Sequence[int]]


def shapes_by_name(names: Sequence[str], shapes: InputShapes) -> dict[str, tuple[int, ...]]:
    """``{input name: shape}`` for ``shapes`` given as one shape or by name."""
    if isinstance(shapes, Mapping):
        unknown = sorted(set(shapes) - set(names))
        if unknown:
            raise InputError(
                f"input shapes were given for {', '.join(unknown)}, which the model does not have",
                expected=", ".join(names),
                found=", ".join(shapes),
                remedy="name the model's inputs",
            )
        return {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
    if len(names) != 1:
        raise InputError(
            "one input shape was given, but the model has several inputs",
            found=", ".join(names) or "no inputs",
            remedy="give a shape per input name, e.g. input_shape={'a': (1, 3, 8, 8), 'b': (1, 4)}",
        )
    return {names[0]: tuple(int(d) for d in shapes)}


# How ONNX's shape inference words a disagreement between shapes; other failures (an op it
# does not know, a custom domain) say nothing about the shapes given and are left to the writers.
SHAPE_DISAGREEMENTS = ("Dimension mismatch", "Incompatible dimensions", "shape and existing shape differ")


def fix_input_shapes(model: Model, shapes: InputShapes) -> None:
    """Give the (freshly read) model's inputs these shapes, where they are open, and
    check that the graph's shapes still agree with them."""
    inputs = {value.name or "": value for value in model.graph.inputs}
    given = shapes_by_name(list(inputs), shapes)
    for name, shape in given.items():
        current = inputs[name].shape
        _check_fits(name, tuple(current) if current is not None else None, shape)
        inputs[name].shape = ir.Shape(shape)
    error = shape_inference_error(model.ir)
    if error is not None and any(words in error for words in SHAPE_DISAGREEMENTS):
        shown = ", ".join(f"{name} {list(shape)}" for name, shape in given.items())
        raise InputError(
            f"the input shape {shown} does not fit the model's weights",
            found=error.strip(),
            remedy="give the input shape the model was built for (the first node named above is where "
            "the shapes stop agreeing, e.g. a Linear layer sized for another image size)",
        )


def _check_fits(name: str, current: tuple | None, shape: tuple[int, ...]) -> None:
    if current is None:
        return
    if len(current) != len(shape):
        raise InputError(
            f"the input shape has {len(shape)} dimensions, input {name} has {len(current)}",
            expected=str(list(current)),
            found=str(list(shape)),
        )
    if any(isinstance(d, int) and d != s for d, s in zip(current, shape)):
        raise InputError(
            f"the input shape does not fit input {name}",
            expected=str(list(current)),
            found=str(list(shape)),
            remedy="only the model's open dimensions (such as the batch) can be set",
        )
