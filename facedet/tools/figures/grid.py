"""The grid rung's teaching figures (seed 000, "Detecție cu grilă").

    plot_truth_matrix       a photo, its face boxes and the S x S "truth matrix" the model is
                            trained against (the seed's Matricea_de_adevar figure)
    plot_probability_grid   what a grid model outputs: p(face) of every cell as a heat map, the
                            values written in the cells, and the boxes read off the grid
    plot_combined           the same photo through a 7 x 7 and a 14 x 14 model, side by side
                            (the seed's combined_* figures)
    plot_touching_failure   the known failure of connected components, on hand-made grids:
                            two touching faces come out as ONE box, two separated faces as two

Every function takes a photo (a PIL image, or a (3, H, W) tensor: uint8 0-255 or float 0-1)
and writes one PNG, drawn on matplotlib `Figure` objects with the Agg canvas (off-screen: no
display, no pyplot state). Grids and boxes are drawn over the whole photo: the model sees the
photo squashed to a square, so fractions of its input are fractions of the photo, and a cell
of a non-square photo is a rectangle. Regenerate the figures of doc_images/ with

    python -m facedet.tools.figures --only grid --checkpoint grid7=runs/grid7/best.pt \\
        --checkpoint grid14=runs/grid14/best.pt --data $FACEDET_DATA/faces-caltech --count 6 --out doc_images/
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from facedet.boxes import to_absolute, to_fractional
from facedet.checkpoint import load_detector
from facedet.errors import CheckpointError
from facedet.models.detector import to_image_tensor
from facedet.models.grid import GridPostprocess, truth_matrix

ImageLike = Image.Image | Tensor

PANEL_INCHES = 5.0  # width of one photo panel; the height follows the photo's aspect ratio
TRUE_BOX = {"edgecolor": "white", "linestyle": "--", "linewidth": 1.5}   # ground-truth faces: dashed white
FOUND_BOX = {"edgecolor": "lime", "linestyle": "-", "linewidth": 2.5}    # boxes read off the grid: solid green
# black outline around white text: readable on any photo and any heat-map colour
OUTLINED = [patheffects.withStroke(linewidth=2, foreground="black")]


# --------------------------------------------------------------------------- drawing helpers


def _as_array(image: ImageLike) -> np.ndarray:
    """A PIL image (any mode) or a (3, H, W) tensor (uint8, or float in [0, 1]) -> (H, W, 3) uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    pixels = image.detach().cpu()
    if pixels.dtype != torch.uint8:
        pixels = (pixels.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def _new_figure(columns: int, width: int, height: int, extra_width: float = 0.0) -> tuple[Figure, list[Axes]]:
    """A figure of `columns` photo panels for a width x height photo, with the Agg canvas attached."""
    panel_height = float(np.clip(PANEL_INCHES * height / width, 2.5, 8.0))
    fig = Figure(figsize=(columns * PANEL_INCHES + extra_width, panel_height + 1.2), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to fig
    axes = fig.subplots(1, columns, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Figure, path: str | os.PathLike, caption: str, dpi: int) -> Path:
    """Write the caption under the panels (wrapped), save the PNG, return its path."""
    fig.supxlabel(textwrap.fill(caption, width=int(fig.get_figwidth() * 15)), fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path


def _show_photo(ax: Axes, pixels: np.ndarray) -> None:
    """The photo in pixel coordinates (x right, y down), without ticks."""
    height, width = pixels.shape[:2]
    ax.imshow(pixels, extent=(0, width, height, 0), interpolation="bilinear")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_grid_lines(ax: Axes, griddim: int, width: int, height: int) -> None:
    """The S x S cell borders over a width x height photo."""
    for k in range(1, griddim):
        ax.axvline(k * width / griddim, color="white", linewidth=0.6, alpha=0.8)
        ax.axhline(k * height / griddim, color="white", linewidth=0.6, alpha=0.8)


def _draw_boxes(ax: Axes, boxes_xyxy: Tensor, style: dict[str, Any], scores: Tensor | None = None) -> None:
    """Rectangles for (K, 4) "xyxy" pixel boxes; with scores (K,), each captioned with its score
    just above the box, or below it when there is no room above, or inside when there is neither."""
    height = abs(ax.get_ylim()[0] - ax.get_ylim()[1])
    margin = 0.06 * height  # room for one line of 8 pt text
    for k, (x1, y1, x2, y2) in enumerate(boxes_xyxy.tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))
        if scores is not None:
            y, va = (y1, "bottom") if y1 > margin else (y2, "top") if y2 < height - margin else (y1, "top")
            ax.text(x1, y, f"{scores[k]:.2f}", color=style["edgecolor"], fontsize=8, va=va, fontweight="bold",
                    path_effects=OUTLINED, clip_on=True)


def grid_boxes(probs: Tensor, threshold: float = 0.5) -> dict[str, Tensor]:
    """The boxes GridPostprocess reads off one grid: probs (S, S) -> {"boxes" (K, 4) fractional
    "xyxy", "scores" (K,), "labels" (K,)}, one box per 8-connected group of cells with p >= threshold."""
    return GridPostprocess(probs.shape[-1], cell_threshold=threshold)(probs[None].float().cpu(), min_score=0.0)[0]


def _draw_probability_panel(
    ax: Axes, pixels: np.ndarray, probs: Tensor, threshold: float, true_boxes_xyxy: Tensor | None
) -> tuple[Any, int]:
    """Photo + heat map of probs (S, S) + the value of every cell + the extracted boxes.

    Returns (the heat-map image, for a colour bar; the number of boxes found).
    """
    height, width = pixels.shape[:2]
    S = probs.shape[-1]
    probs = probs.detach().float().cpu()
    _show_photo(ax, pixels)
    heat = ax.imshow(probs.numpy(), extent=(0, width, height, 0), cmap="magma", vmin=0, vmax=1, alpha=0.5,
                     interpolation="nearest")
    _draw_grid_lines(ax, S, width, height)
    # one value per cell, in a font that shrinks with the cells: 9 pt at S = 7, 4.5 pt at S = 14
    fontsize = min(9.0, 63.0 / S)
    outline = [patheffects.withStroke(linewidth=fontsize / 4, foreground="black")]
    for (row, col), p in np.ndenumerate(probs.numpy()):
        ax.text((col + 0.5) * width / S, (row + 0.5) * height / S, f"{p:.2f}", ha="center", va="center",
                fontsize=fontsize, color="white", fontweight="bold" if p >= threshold else "normal",
                path_effects=outline)
    if true_boxes_xyxy is not None:
        _draw_boxes(ax, true_boxes_xyxy.reshape(-1, 4).float(), TRUE_BOX)
    found = grid_boxes(probs, threshold)
    _draw_boxes(ax, to_absolute(found["boxes"], width, height), FOUND_BOX, found["scores"])
    return heat, len(found["boxes"])


BOXES_RULE = ("Green boxes: one per group of touching cells (8 neighbours) with p >= {t:g}, as GridPostprocess "
              "finds them by connected-component labelling; the number is the group's mean p.")


# --------------------------------------------------------------------------- figures


def plot_truth_matrix(
    image: ImageLike,
    boxes_xyxy_pixels: Tensor,
    griddim: int,
    path: str | os.PathLike,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Draw the "truth matrix" of one photo (the seed's Matricea_de_adevar figure).

    image: a PIL image or a (3, H, W) tensor (uint8, or float in [0, 1]);
    boxes_xyxy_pixels: (M, 4) face boxes, "xyxy" in pixels of that image; griddim: S.
    Left: the photo cut into S x S cells, the faces (dashed), a dot at every cell centre and the
    positive cells shaded green. Right: the S x S matrix of 0s and 1s itself, as the model's
    BCE loss sees it. The caption states the rule of `facedet.models.grid.truth_matrix`.
    Returns the PNG's path.
    """
    pixels = _as_array(image)
    height, width = pixels.shape[:2]
    S = griddim
    boxes = torch.as_tensor(boxes_xyxy_pixels, dtype=torch.float32).reshape(-1, 4)
    truth = truth_matrix(to_fractional(boxes, width, height), S)             # (S, S) 0/1

    fig, (photo_ax, matrix_ax) = _new_figure(2, width, height)
    _show_photo(photo_ax, pixels)
    shade = np.zeros((S, S, 4), dtype=np.float32)                            # RGBA per cell
    shade[truth.bool().numpy()] = (0.0, 0.8, 0.0, 0.45)                      # translucent green on the 1s
    photo_ax.imshow(shade, extent=(0, width, height, 0), interpolation="nearest")
    _draw_grid_lines(photo_ax, S, width, height)
    centres = (torch.arange(S) + 0.5) / S                                    # (S,) cell centres, fractions
    cx, cy = torch.meshgrid(centres * width, centres * height, indexing="xy")  # (S, S) each, pixels
    positive = truth.bool()
    photo_ax.scatter(cx[positive], cy[positive], s=14, color="lime", edgecolors="black", linewidths=0.5, zorder=3)
    photo_ax.scatter(cx[~positive], cy[~positive], s=6, color="white", alpha=0.7, zorder=3)
    _draw_boxes(photo_ax, boxes, TRUE_BOX)
    photo_ax.set_title(f"{len(boxes)} face box(es) on a {S} x {S} grid", fontsize=10)

    matrix_ax.imshow(truth.numpy(), cmap="Greens", vmin=0, vmax=1.6, interpolation="nearest")
    for (row, col), value in np.ndenumerate(truth.numpy().astype(int)):
        matrix_ax.text(col, row, str(value), ha="center", va="center", fontsize=min(10.0, 70.0 / S))
    matrix_ax.set_xticks(np.arange(S) - 0.5, minor=True)
    matrix_ax.set_yticks(np.arange(S) - 0.5, minor=True)
    matrix_ax.grid(which="minor", color="grey", linewidth=0.5)
    matrix_ax.tick_params(which="both", length=0, labelsize=7)
    matrix_ax.set_title(f"truth matrix: {int(truth.sum())} of {S * S} cells are 1", fontsize=10)
    fig.suptitle(title or "the truth matrix the grid model learns")
    caption = ("Rule: a cell is 1 when its centre (dot) lies inside a face box, edges included; a face too "
               "small to cover any cell centre marks the one cell holding its own centre. Every other cell "
               "is 0. The model is trained with one binary cross-entropy per cell against this matrix.")
    return _save(fig, path, caption, dpi)


def plot_probability_grid(
    image: ImageLike,
    probs: Tensor,
    path: str | os.PathLike,
    threshold: float = 0.5,
    true_boxes_xyxy: Tensor | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Draw a grid model's output over the photo it saw, and the boxes read off it.

    image: a PIL image or a (3, H, W) tensor (uint8, or float in [0, 1]); probs: (S, S) cell face
    probabilities (the model's output for this image, in [0, 1]); threshold: GridPostprocess's
    cell_threshold; true_boxes_xyxy: optional (M, 4) ground-truth faces in pixels, drawn dashed.
    The heat map colours each cell by p, its value is written inside, and the green boxes are
    the connected components of the cells with p >= threshold. Returns the PNG's path.
    """
    pixels = _as_array(image)
    height, width = pixels.shape[:2]
    S = probs.shape[-1]
    fig, (ax,) = _new_figure(1, width, height, extra_width=0.8)
    heat, found = _draw_probability_panel(ax, pixels, probs, threshold, true_boxes_xyxy)
    fig.colorbar(heat, ax=ax, fraction=0.04, label="p(face) of the cell")
    ax.set_title(title or f"{S} x {S} grid: {found} box(es) at threshold {threshold:g}", fontsize=10)
    caption = BOXES_RULE.format(t=threshold)
    if true_boxes_xyxy is not None:
        caption += " Dashed white: the true faces."
    return _save(fig, path, caption, dpi)


def plot_combined(
    image: ImageLike,
    probs7: Tensor,
    probs14: Tensor,
    path: str | os.PathLike,
    threshold: float = 0.5,
    true_boxes_xyxy: Tensor | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """The same photo through two grid models, side by side (the seed's combined_* figures).

    image: a PIL image or a (3, H, W) tensor; probs7: (7, 7) and probs14: (14, 14) cell
    probabilities of the two models for this photo (any two grid sizes work; the titles say
    which). Each panel is drawn as in `plot_probability_grid`, with its own extracted boxes.
    A finer grid follows the faces' outlines more closely, but also splits or merges them
    differently. Returns the PNG's path.
    """
    pixels = _as_array(image)
    height, width = pixels.shape[:2]
    fig, axes = _new_figure(2, width, height, extra_width=0.8)
    for ax, probs in zip(axes, (probs7, probs14)):
        heat, found = _draw_probability_panel(ax, pixels, probs, threshold, true_boxes_xyxy)
        S = probs.shape[-1]
        ax.set_title(f"{S} x {S} grid: {found} box(es)", fontsize=10)
    fig.colorbar(heat, ax=axes, fraction=0.03, label="p(face) of the cell")
    fig.suptitle(title or f"grid size: {probs7.shape[-1]} x {probs7.shape[-1]} vs {probs14.shape[-1]} x {probs14.shape[-1]}")
    caption = BOXES_RULE.format(t=threshold)
    if true_boxes_xyxy is not None:
        caption += " Dashed white: the true faces."
    return _save(fig, path, caption, dpi)


def touching_failure_grids(griddim: int = 7) -> dict[str, tuple[Tensor, Tensor]]:
    """The two hand-made grids of `plot_touching_failure`: name -> (probs (S, S), faces (2, 4)).

    Each grid is what a PERFECT model would output for two faces (fractional "xyxy"): about 0.9
    on the cells of their truth matrix, under 0.15 elsewhere (fixed pseudo-random jitter).
    "touching": the faces meet at x = 0.45, so their cells are neighbours (columns 1-2 and
    3-5 at S = 7) and form one connected component -> ONE box covering both.
    "separated": a gap of cells between them (columns 0-1 and 4-5) -> two components, two boxes.
    """
    faces = {
        "touching": torch.tensor([[0.12, 0.28, 0.45, 0.72], [0.45, 0.30, 0.80, 0.70]]),
        "separated": torch.tensor([[0.05, 0.28, 0.35, 0.72], [0.55, 0.30, 0.92, 0.70]]),
    }
    generator = torch.Generator().manual_seed(0)
    grids = {}
    for name, boxes in faces.items():
        truth = truth_matrix(boxes, griddim)                                  # (S, S) 0/1
        jitter = torch.rand(griddim, griddim, generator=generator)           # (S, S) in [0, 1)
        probs = torch.where(truth.bool(), 0.8 + 0.18 * jitter, 0.15 * jitter)
        grids[name] = (probs, boxes)
    return grids


def plot_touching_failure(path: str | os.PathLike, griddim: int = 7, threshold: float = 0.5, dpi: int = 110) -> Path:
    """Show the known failure of reading boxes off a grid by connected components.

    No model needed: `touching_failure_grids` makes two perfect grids of two faces each. Left,
    the faces touch: their cells are neighbours, GridPostprocess finds one component and
    returns ONE box around both faces. Right, a column of empty cells separates them: two
    boxes. The dashed boxes are the true faces. Returns the PNG's path.
    """
    side = 224  # a blank square "photo", the grid model's input size
    pixels = np.full((side, side, 3), 200, dtype=np.uint8)
    fig, axes = _new_figure(2, side, side, extra_width=0.8)
    for ax, (name, (probs, faces)) in zip(axes, touching_failure_grids(griddim).items()):
        heat, found = _draw_probability_panel(ax, pixels, probs, threshold, to_absolute(faces, side, side))
        ax.set_title(f"{name}: {len(faces)} faces -> {found} box{'es' if found != 1 else ''}", fontsize=11)
    fig.colorbar(heat, ax=axes, fraction=0.03, label="p(face) of the cell")
    fig.suptitle("connected components merge touching faces")
    caption = (BOXES_RULE.format(t=threshold) + " Dashed white: the true faces. Both grids are what a perfect "
               "model would output, yet two faces whose cells touch (even at a corner) become one box. "
               "The YOLO rung avoids this by regressing one box per cell instead.")
    return _save(fig, path, caption, dpi)


# --------------------------------------------------------------------------- a grid checkpoint


def load_grid_checkpoint(path: str | os.PathLike, device: torch.device) -> tuple[Any, int, int]:
    """A grid checkpoint -> (detector in eval mode, griddim S, image_size); refuses other models."""
    detector = load_detector(path, device)
    cfg = detector.config
    if not isinstance(detector.postprocess, GridPostprocess):
        raise CheckpointError(f"{path}: a '{cfg.model.name}' checkpoint; expected a grid model (grid_simple or grid_cnn)")
    return detector, cfg.model.griddim, cfg.model.image_size


@torch.no_grad()
def grid_probabilities(detector: Any, image: Image.Image) -> Tensor:
    """One photo through a grid detector: resized to its input, normalised, forward -> probs (S, S) on the CPU."""
    inputs = detector.prepare(to_image_tensor(image))                                         # (3, size, size)
    return detector.model(inputs[None].to(detector.device))[0].float().cpu()                # (S, S)
