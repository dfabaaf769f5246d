"""Figures for comparisons: error per layer along depth, and one layer's difference.

Built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend),
so they work in scripts, the CLI (``--plot``) and notebooks alike. In a notebook a
plain Figure shows only its text repr unless ``%matplotlib inline`` is on; these
figures give IPython a PNG themselves, so they show as images in JupyterLab, in an
executed record and in its HTML export.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .compare import Comparison

FLOOR = 1e-12  # exact agreement is drawn here on the log axis
TITLE_CHARACTERS_PER_INCH = 11  # long titles (file paths) wrap instead of running off the figure


class NotebookFigure(Figure):
    """A Figure that renders as a PNG in Jupyter (IPython asks for ``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        # "tight" keeps annotations and long titles that reach past the axes inside the image
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _wrapped(title: str, figure: Figure) -> str:
    return textwrap.fill(title, width=int(figure.get_figwidth() * TITLE_CHARACTERS_PER_INCH))


def _finite(value: float) -> float:
    """A shape mismatch has no error value: leave a gap in the line."""
    return value if np.isfinite(value) else np.nan


def plot_layer_errors(comparison: "Comparison", path: str | Path | None = None) -> Figure:
    """Max and mean absolute error of every compared layer, in reference order,
    on a log scale, with the tolerance and the first divergence marked."""
    figure = NotebookFigure(figsize=(max(6.0, min(0.12 * len(comparison.layers), 18.0)), 4.0), layout="constrained")
    axes = figure.add_subplot()
    depth = np.arange(len(comparison.layers))
    max_abs = np.array([max(_finite(p.stats.max_abs), FLOOR) for p in comparison.layers])
    mean_abs = np.array([max(_finite(p.stats.mean_abs), FLOOR) for p in comparison.layers])
    allowed = np.array([comparison.atol + comparison.rtol * p.stats.reference_max for p in comparison.layers])
    axes.semilogy(depth, max_abs, marker=".", label="max |a − b|")
    axes.semilogy(depth, mean_abs, marker=".", alpha=0.6, label="mean |a − b|")
    axes.semilogy(depth, allowed, linestyle="--", color="grey", label="tolerance")
    mismatched = [i for i, p in enumerate(comparison.layers) if not p.stats.shapes_match]
    if mismatched:
        axes.scatter(mismatched, [allowed[i] for i in mismatched], marker="x", color="red", label="shape differs")
    divergence = comparison.first_divergence
    if divergence is not None:
        index = next(i for i, p in enumerate(comparison.layers) if p is divergence.pair)
        axes.axvline(index, color="red", alpha=0.5)
        cause = f" ({divergence.cause.kind})" if divergence.cause else ""
        axes.annotate(
            f"first divergence: {divergence.target}{cause}",
            (index, allowed[index]),
            textcoords="offset points",
            xytext=(6, 12),
            color="red",
        )
    axes.set_xlabel("layer (reference order)")
    axes.set_ylabel("absolute error")
    axes.set_title(_wrapped(f"{comparison.reference} vs {comparison.candidate}", figure))
    axes.legend(loc="upper left", fontsize="small")
    if path is not None:
        figure.savefig(path)
    return figure


def plot_difference(
    reference: np.ndarray,
    candidate: np.ndarray,
    title: str = "",
    path: str | Path | None = None,
    channel: int | None = None,
) -> Figure:
    """Histogram of ``candidate - reference`` and a heat map of ``|difference|``
    (one channel of an ``[N, C, H, W]`` tensor: the worst, unless ``channel`` is given)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        b = b.reshape(a.shape) if a.size == b.size else None
    figure = NotebookFigure(figsize=(10.0, 4.0), layout="constrained")
    left, right = figure.subplots(1, 2)
    if b is None:
        left.text(0.5, 0.5, f"shapes differ: {list(np.shape(reference))} vs {list(np.shape(candidate))}", ha="center")
        right.set_axis_off()
    else:
        difference = b - a
        left.hist(difference.ravel(), bins=100, log=True)
        left.set_xlabel("candidate − reference")
        left.set_ylabel("count")
        if difference.ndim >= 3:
            per_channel = np.abs(difference).reshape(difference.shape[0], difference.shape[1], -1).max(axis=(0, 2))
            chosen = int(np.argmax(per_channel)) if channel is None else channel
            plane = np.abs(difference[0, chosen]).reshape(difference.shape[-2], -1)
            label = f"|difference|, channel {chosen}"
        else:
            plane = np.abs(difference).reshape(difference.shape[0], -1)
            label = "|difference|"
        image = right.imshow(plane, cmap="magma", aspect="auto")
        figure.colorbar(image, ax=right)
        right.set_title(label)
    figure.suptitle(_wrapped(title, figure))
    if path is not None:
        figure.savefig(path)
    return figure


__all__ = ["NotebookFigure", "plot_difference", "plot_layer_errors"]
