"""The Jupyter layer: graph views (live Netron, static SVG) and ipywidgets panels.

This is the only package that imports IPython and ipywidgets; steps, readers and
writers never import it.
"""
from .graph_svg import GraphDrawing, draw_graph
from .netron_view import serve_graph, show_graph, stop_graphs

__all__ = ["GraphDrawing", "draw_graph", "serve_graph", "show_graph", "stop_graphs"]
