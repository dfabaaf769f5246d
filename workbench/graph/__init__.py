"""The in-memory graph (onnx-ir) and what every step shares: provenance, reports, shapes."""

from .model import Model, SourceInfo
from .report import StepReport

__all__ = ["Model", "SourceInfo", "StepReport"]
