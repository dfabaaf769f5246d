"""Conversion workbench: move trained networks between frameworks, verified layer by layer."""
from .errors import InputError, Problem, UnsupportedError, WorkbenchError
from .graph import Model, SourceInfo, StepReport
from .readers import example_inputs, export, load

__all__ = [
    "InputError",
    "Model",
    "Problem",
    "SourceInfo",
    "StepReport",
    "UnsupportedError",
    "WorkbenchError",
    "example_inputs",
    "export",
    "load",
]
