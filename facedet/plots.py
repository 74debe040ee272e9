"""Figures produced by the package (never drawn by hand).

plot_pr_curves: precision-recall curves of an evaluation, one line per class, AP in the legend.
plot_validation_curves: validation AP50 against images seen, one line per training run.
save_figure: the common end of every figure: title, wrapped caption, PNG written, path returned.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facedet.evaluation import average_precision


def plot_pr_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "precision-recall",
    colors: dict[str, str] | None = None,
) -> Path:
    """Save a PNG of precision-recall curves and return its path.

    curves: name -> (precision (K,), recall (K,)) in decreasing score order, as returned by
    `EvalResult.pr_curves()`. The legend gives each curve's all-point AP. Draws on a bare
    Agg canvas rather than through pyplot, so it works headless and leaves the caller's
    matplotlib backend (a notebook's, say) untouched. `colors` (name -> matplotlib colour) keeps
    one detector's colour across figures.
    """
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)  # attaches itself to fig
    ax = fig.add_subplot()
    for name, (precision, recall) in curves.items():
        precision = np.asarray(precision, dtype=np.float64)
        recall = np.asarray(recall, dtype=np.float64)
        if len(recall) == 0:  # no detections: a single point at (0, 0)
            precision, recall = np.zeros(1), np.zeros(1)
        ap = float(average_precision(precision, recall))
        # start each curve at recall 0 with its first precision, so a single point still shows as a line
        ax.plot(np.r_[0.0, recall], np.r_[precision[:1], precision], lw=1.5, label=f"{name} (AP {ap:.3f})",
                color=(colors or {}).get(name))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    return _finish_curves(fig, ax, title, "lower left", path)


def plot_validation_curves(curves: dict[str, list[tuple[int, float]]], path: str | Path,
                           title: str = "validation AP50 while training", colors: dict[str, str] | None = None) -> Path:
    """Save a PNG of validation curves, one line per run, and return its path.

    curves: name -> [(images seen, AP50), ...] in training order. The x axis is images seen
    (not epochs), so runs whose epochs differ in length share one axis. `colors` as plot_pr_curves.
    """
    fig = Figure(figsize=(6.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)  # attaches itself to fig
    ax = fig.add_subplot()
    for name, points in curves.items():
        xs = [seen / 1000 for seen, _ in points]
        ax.plot(xs, [ap for _, ap in points], marker="o", ms=3, lw=1.5, label=name, color=(colors or {}).get(name))
    ax.set_xlabel("images seen (thousands)")
    ax.set_ylabel("validation AP50")
    ax.set_ylim(0, 1.0)
    return _finish_curves(fig, ax, title, "upper left", path)


def _finish_curves(fig: Figure, ax, title: str, legend_loc: str, path: str | Path) -> Path:
    """The common end of the one-panel curve plots: title, grid, legend (when there are lines), PNG."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc=legend_loc, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int, title: str = "", caption: str = "") -> Path:
    """Give `fig` its title and a caption wrapped under the panels, write it as a PNG (its
    folder made), return the path."""
    if title:
        fig.suptitle(title)
    if caption:
        fig.supxlabel(textwrap.fill(caption, width=int(fig.get_figwidth() * 16)), fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path
