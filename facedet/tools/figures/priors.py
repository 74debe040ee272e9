"""SSD's priors, drawn (the SSD tutorial, seed 003: "priors in the centre cell of conv9_2",
"the same priors exist in every other cell", and prior matching).

    priors_at_cell          the priors of one cell of one feature map, picked out of the
                            concatenated (P, 4) tensor the model predicts against
    toy_grid_priors         SSD-style priors on a small toy grid (default 4 x 4, 3 per cell)
    plot_priors_at_cell     the priors of one cell over an image and its feature-map grid
    plot_toy_grid_priors    the toy grid's priors in every cell, one cell highlighted
    plot_prior_matching     ssd.match_priors on the toy grid and two objects: which prior
                            becomes a positive for which object, with its IoU

Boxes are fractional "cxcywh" like make_priors(); drawing converts them to pixels.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from facedet.plots import save_figure
from facedet.boxes import box_convert, box_iou
from facedet.models.fastai_ssd import make_anchors
from facedet.models.ssd import match_priors

COLOURS = ["tab:red", "tab:orange", "gold", "tab:green", "tab:cyan", "tab:blue", "tab:purple", "tab:pink"]


def priors_at_cell(priors: Tensor, maps: Sequence[tuple[int, int]], map_index: int, row: int, col: int) -> Tensor:
    """The priors of cell (row, col) of feature map `map_index`: (P, 4) -> (k, 4).

    priors: all priors concatenated map by map, cells row by row, the k priors of a cell
    side by side (the order of ssd.make_priors and of the model's predictions);
    maps: (cells per side, priors per cell) of every map, in that order, e.g. for SSD300
    [(38, 4), (19, 6), (10, 6), (5, 6), (3, 4), (1, 4)]. The first prior of the cell is at
    index  sum_{m < map_index} size_m^2 * k_m  +  (row * size + col) * k.
    """
    size, per_cell = maps[map_index]
    if not (0 <= row < size and 0 <= col < size):
        raise IndexError(f"cell ({row}, {col}) is outside the {size} x {size} map {map_index}")
    offset = sum(s * s * k for s, k in maps[:map_index]) + (row * size + col) * per_cell
    return priors[offset : offset + per_cell]


def toy_grid_priors(grid: int = 4, ratios: Sequence[float] = (1.0, 2.0, 0.5), scale: float | None = None) -> Tensor:
    """SSD-style priors of one toy feature map: (grid * grid * len(ratios), 4) "cxcywh" fractional.

    Each cell gets one prior per aspect ratio a = w / h, of scale s (w = s * sqrt(a),
    h = s / sqrt(a), area s^2, as in SSD); s defaults to the cell side 1 / grid. Built with
    fastai_ssd.make_anchors, whose zoom z gives w = z * rw / grid: z = s * grid, rw = sqrt(a).
    """
    scale = 1.0 / grid if scale is None else scale
    shapes = [(math.sqrt(a), 1 / math.sqrt(a)) for a in ratios]
    anchors, _ = make_anchors(grids=(grid,), zooms=(scale * grid,), ratios=shapes)
    return anchors


# --------------------------------------------------------------------------- drawing helpers


def _canvas(image: Image.Image | None, side: int) -> np.ndarray:
    """A side x side RGB array: the image resized (the network's view), or light grey."""
    if image is None:
        return np.full((side, side, 3), 235, dtype=np.uint8)
    return np.asarray(image.convert("RGB").resize((side, side)))


def _grid(ax: Axes, cells: int, side: int, colour: str = "white") -> None:
    """The cell borders, over the image only."""
    for k in range(1, cells):
        ax.plot([k * side / cells] * 2, [0, side], color=colour, linewidth=0.8, alpha=0.9)
        ax.plot([0, side], [k * side / cells] * 2, color=colour, linewidth=0.8, alpha=0.9)


def _box(ax: Axes, box_cxcywh: Tensor, side: int, colour: str, **style) -> None:
    x1, y1, x2, y2 = (box_convert(box_cxcywh, "cxcywh", "xyxy") * side).tolist()
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, **style))


def _photo_axes(ax: Axes, pixels: np.ndarray, boxes_cxcywh: Tensor | None = None) -> None:
    """The image in pixel coordinates, with room around it for the boxes that reach past it."""
    side = pixels.shape[0]
    ax.imshow(pixels, extent=(0, side, side, 0))
    low, high = 0.0, 1.0
    if boxes_cxcywh is not None and len(boxes_cxcywh):
        corners = box_convert(boxes_cxcywh, "cxcywh", "xyxy")
        low, high = min(low, corners.min().item()), max(high, corners.max().item())
    pad = 0.03
    ax.set_xlim((low - pad) * side, (high + pad) * side)
    ax.set_ylim((high + pad) * side, (low - pad) * side)
    ax.add_patch(Rectangle((0, 0), side, side, fill=False, edgecolor="black", linewidth=1))
    ax.set_xticks([])
    ax.set_yticks([])




# --------------------------------------------------------------------------- figures


def plot_priors_at_cell(
    priors: Tensor,
    maps: Sequence[tuple[int, int]],
    map_index: int,
    row: int,
    col: int,
    path: str | os.PathLike,
    labels: Sequence[str] = (),
    image: Image.Image | None = None,
    side: int = 300,
    title: str = "",
    dpi: int = 110,
) -> Path:
    """Draw the priors of one cell (priors_at_cell) over the image and the map's grid.

    priors, maps, map_index, row, col: as in priors_at_cell; labels: one legend entry per
    prior of the cell (e.g. "1:1, s = 0.55"); image: drawn resized to side x side pixels.
    """
    cell_priors = priors_at_cell(priors, maps, map_index, row, col)
    size = maps[map_index][0]
    fig = Figure(figsize=(6.5, 5.2), layout="constrained")
    ax = fig.subplots()
    _photo_axes(ax, _canvas(image, side), cell_priors)
    _grid(ax, size, side)
    ax.add_patch(Rectangle((col * side / size, row * side / size), side / size, side / size,
                           facecolor="white", alpha=0.35, edgecolor="none"))
    for k, prior in enumerate(cell_priors):
        _box(ax, prior, side, COLOURS[k % len(COLOURS)], linewidth=2,
             label=labels[k] if k < len(labels) else f"prior {k}")
    ax.plot(*(cell_priors[0, :2] * side).tolist(), "o", color="black", ms=4)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.set_title(title or f"the {len(cell_priors)} priors of cell ({row}, {col}) of a {size} x {size} map", fontsize=10)
    return save_figure(fig, path, dpi)


def plot_toy_grid_priors(
    path: str | os.PathLike, grid: int = 4, ratios: Sequence[float] = (1.0, 2.0, 0.5),
    highlight: tuple[int, int] = (1, 2), side: int = 300, dpi: int = 110,
) -> Path:
    """Left: the priors of one cell of a toy grid. Right: the same priors in every cell."""
    priors = toy_grid_priors(grid, ratios)
    per_cell = len(ratios)
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, cells in zip(axes, ([highlight], [(r, c) for r in range(grid) for c in range(grid)])):
        _photo_axes(ax, _canvas(None, side), priors)
        _grid(ax, grid, side, colour="grey")
        for r, c in cells:
            for k, prior in enumerate(priors_at_cell(priors, [(grid, per_cell)], 0, r, c)):
                _box(ax, prior, side, COLOURS[k], linewidth=1.8 if len(cells) == 1 else 0.9,
                     label=f"ratio {ratios[k]:g}" if (r, c) == cells[0] else None)
            ax.plot((c + 0.5) * side / grid, (r + 0.5) * side / grid, "o", color="black", ms=3)
    axes[0].legend(loc="lower left", fontsize=8)
    axes[0].set_title(f"cell {highlight}: {per_cell} priors of scale 1/{grid}, ratios w/h {', '.join(f'{a:g}' for a in ratios)}",
                      fontsize=9)
    axes[1].set_title(f"the same priors in every cell: {grid} x {grid} x {per_cell} = {len(priors)} priors", fontsize=9)
    return save_figure(fig, path, dpi)


def toy_matching_example() -> tuple[Tensor, Tensor, Tensor]:
    """The toy matching problem of plot_prior_matching: (priors (48, 4) "cxcywh", objects
    (2, 4) "xyxy", labels (2,)) on the 4 x 4 toy grid. Object 0 is a tall face over two cells,
    centred on cell (1, 1), object 1 a small face between cells that no prior overlaps by 0.5
    (only the forced match gives it a positive)."""
    priors = toy_grid_priors(4)
    objects = torch.tensor([[0.275, 0.175, 0.475, 0.575], [0.70, 0.62, 0.86, 0.80]])
    return priors, objects, torch.tensor([0, 0])


def plot_prior_matching(path: str | os.PathLike, threshold: float = 0.5, side: int = 300, dpi: int = 110) -> Path:
    """SSD's matching (ssd.match_priors) on the toy grid and two objects.

    Each prior takes the object it overlaps most and becomes background when that IoU is
    below `threshold`; each object also claims its best prior whatever the IoU, so no object
    is left without a positive. Left: every prior, the objects dashed. Right: the positives,
    coloured by object, with their IoU; a star marks a forced match.
    """
    priors, objects, labels = toy_matching_example()
    priors_xyxy = box_convert(priors, "cxcywh", "xyxy")
    matched_labels, matched = match_priors(objects[None], labels[None], torch.ones(1, len(objects), dtype=torch.bool),
                                           priors_xyxy, threshold)       # (1, P), (1, P, 4)
    iou = box_iou(objects, priors_xyxy)                                   # (2, P)
    positives = (matched_labels[0] > 0).nonzero().flatten()
    # which object each prior was given: the one whose box it carries
    object_of = (matched[0, :, None, :] == objects[None]).all(-1).float().argmax(-1)  # (P,)
    forced = set(iou.argmax(dim=1).tolist())

    fig = Figure(figsize=(10, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax in axes:
        _photo_axes(ax, _canvas(None, side), priors)
        _grid(ax, 4, side, colour="grey")
        for k, obj in enumerate(objects):
            x1, y1, x2, y2 = (obj * side).tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="black", linestyle="--",
                                   linewidth=2))
            ax.text(x1, y1 - 4, f"object {k}", fontsize=8, va="bottom")
    for prior in priors:
        _box(axes[0], prior, side, "tab:grey", linewidth=0.6)
    object_colours = ["tab:red", "tab:blue"]
    for p in positives.tolist():
        k = int(object_of[p])
        colour = object_colours[k]
        _box(axes[1], priors[p], side, colour, linewidth=2)
        # the IoU at the prior's bottom-right corner: priors of one cell share their centre
        _, _, x2, y2 = (box_convert(priors[p], "cxcywh", "xyxy") * side).tolist()
        axes[1].text(x2, y2, f"{iou[k, p]:.2f}" + (" *" if p in forced and iou[k, p] < threshold else ""),
                     fontsize=8, color=colour, ha="right", va="bottom", fontweight="bold")
    axes[0].set_title(f"{len(priors)} priors (4 x 4 cells x 3 ratios) and 2 objects", fontsize=9)
    axes[1].set_title(f"{len(positives)} positives (IoU >= {threshold:g}; * = forced: the object's best prior)",
                      fontsize=9)
    fig.supxlabel("Every other prior is background (class 0): it is trained to say 'nothing here', "
                  "and hard negative mining keeps only the 3 x N_pos most confidently wrong of them.", fontsize=8)
    return save_figure(fig, path, dpi)
