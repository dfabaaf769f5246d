"""Run a graph (or an ONNX file) in onnxruntime, the independent ONNX reference."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from ..graph import Model


class OnnxRuntimeRunner:
    name = "onnxruntime"

    def __init__(self, model: Model | ir.Model | str | Path) -> None:
        if isinstance(model, Model):
            model = model.ir
        if isinstance(model, ir.Model):
            payload = ir.to_proto(model).SerializeToString()
        else:
            payload = str(model)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Final outputs by name."""
        if not isinstance(inputs, Mapping):
            inputs = dict(zip(self.input_names, inputs))
        feed = {name: np.asarray(inputs[name], dtype=np.float32) for name in self.input_names}
        results = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, results))
