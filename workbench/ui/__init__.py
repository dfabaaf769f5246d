"""The Jupyter layer: graph views (live Netron, static drawing) and ipywidgets panels.

This is the only package that imports IPython and ipywidgets; steps, readers and
writers never import it.
"""

from .graph_drawing import GraphDrawing, draw_graph
from .netron_view import GraphView, show_graph, stop_graphs
from .panels import ComparisonExplorer, NameMapEditor, PipelineStepper, pipeline_stepper
from .pipeline import Pipeline

__all__ = [
    "ComparisonExplorer",
    "GraphDrawing",
    "GraphView",
    "NameMapEditor",
    "Pipeline",
    "PipelineStepper",
    "draw_graph",
    "pipeline_stepper",
    "show_graph",
    "stop_graphs",
]
