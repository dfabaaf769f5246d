"""The Jupyter layer: graph views (live Netron, static SVG) and ipywidgets panels.

This is the only package that imports IPython and ipywidgets; steps, readers and
writers never import it.
"""

from .graph_svg import GraphDrawing, draw_graph
from .netron_view import serve_graph, show_graph, stop_graphs
from .panels import ComparisonExplorer, NameMapEditor, PipelineStepper, pipeline_stepper
from .pipeline import Pipeline

__all__ = [
    "ComparisonExplorer",
    "GraphDrawing",
    "NameMapEditor",
    "Pipeline",
    "PipelineStepper",
    "draw_graph",
    "pipeline_stepper",
    "serve_graph",
    "show_graph",
    "stop_graphs",
]
