"""Figures for comparisons: error per layer along depth, and one layer's difference.

Built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend),
so they work in scripts, the CLI (``--plot``) and notebooks alike. They take plain
data (``LayerErrors``, arrays) and know nothing of how a comparison is made.

In a notebook a plain Figure shows only its text repr unless ``%matplotlib inline``
is on; these figures give IPython a PNG themselves (``_repr_png_``), so they show as
images in JupyterLab, in an executed record and in its HTML export.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FLOOR = 1e-12  # exact agreement is drawn here on the log axis
TITLE_CHARACTERS_PER_INCH = 11  # long titles (file paths) wrap instead of running off the figure


def _notebook_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # "tight" keeps annotations and long titles that reach past the axes inside the image
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


@cache
def _notebook_figure_class() -> type[Figure]:
    """A Figure subclass that renders as a PNG in Jupyter (IPython asks for ``_repr_png_``);
    made on first use because matplotlib takes a third of a second to import."""
    from matplotlib.figure import Figure

    return type("NotebookFigure", (Figure,), {"_repr_png_": _notebook_png})


def new_figure(**options: Any) -> Figure:
    """A figure that shows as an image in notebooks, records and HTML exports."""
    return _notebook_figure_class()(**options)


def _wrapped(title: str, figure: Figure) -> str:
    return textwrap.fill(title, width=int(figure.get_figwidth() * TITLE_CHARACTERS_PER_INCH))


@dataclass(frozen=True, kw_only=True)
class LayerErrors:
    """What the error-along-depth figure draws, one value per compared layer in
    reference order (``Comparison.layer_errors()`` makes it)."""

    max_abs: Sequence[float]
    mean_abs: Sequence[float]
    allowed: Sequence[float]  # the tolerance of each layer: atol + rtol * max|reference|
    shape_mismatch: Sequence[int] = field(default_factory=list)  # layers whose shapes differ
    divergence: int | None = None  # the first divergence's layer
    divergence_label: str = ""
    title: str = ""


class HasLayerErrors(Protocol):
    def layer_errors(self) -> LayerErrors: ...


def _finite(value: float) -> float:
    """A shape mismatch has no error value: leave a gap in the line."""
    return value if np.isfinite(value) else np.nan


def plot_layer_errors(errors: LayerErrors | HasLayerErrors, path: str | Path | None = None) -> Figure:
    """Max and mean absolute error of every compared layer, in reference order,
    on a log scale, with the tolerance and the first divergence marked.

    ``errors`` is the plain data, or a comparison that gives it (``layer_errors()``)."""
    data = errors if isinstance(errors, LayerErrors) else errors.layer_errors()
    figure = new_figure(figsize=(max(6.0, min(0.12 * len(data.max_abs), 18.0)), 4.0), layout="constrained")
    axes = figure.add_subplot()
    depth = np.arange(len(data.max_abs))
    allowed = np.asarray(data.allowed, dtype=np.float64)
    axes.semilogy(depth, [max(_finite(v), FLOOR) for v in data.max_abs], marker=".", label="max |a − b|")
    axes.semilogy(depth, [max(_finite(v), FLOOR) for v in data.mean_abs], marker=".", alpha=0.6, label="mean |a − b|")
    axes.semilogy(depth, allowed, linestyle="--", color="grey", label="tolerance")
    if data.shape_mismatch:
        mismatched = list(data.shape_mismatch)
        axes.scatter(mismatched, allowed[mismatched], marker="x", color="red", label="shape differs")
    if data.divergence is not None:
        axes.axvline(data.divergence, color="red", alpha=0.5)
        axes.annotate(
            data.divergence_label,
            (data.divergence, allowed[data.divergence]),
            textcoords="offset points",
            xytext=(6, 12),
            color="red",
        )
    axes.set_xlabel("layer (reference order)")
    axes.set_ylabel("absolute error")
    axes.set_title(_wrapped(data.title, figure), fontsize="medium")
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
    given = np.asarray(candidate, dtype=np.float64)
    b = given if given.shape == a.shape else given.reshape(a.shape) if given.size == a.size else None
    figure = new_figure(figsize=(10.0, 4.0), layout="constrained")
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


__all__ = ["LayerErrors", "new_figure", "plot_difference", "plot_layer_errors"]
