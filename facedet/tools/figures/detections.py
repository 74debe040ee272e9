"""Detections before and after non-maximum suppression (seed 000 "NMS", the SSD tutorial's
"Non-Maximum Suppression"): every rung above the grid proposes many overlapping boxes per
face, and NMS keeps the best one.

    toy_candidates          hand-made proposals around known faces (no model needed)
    nms_before_after        any detector on one photo: its proposals, and what survives NMS
    plot_before_after       the two side by side (PNG)
    plot_toy_nms            toy_candidates on a synthetic scene through facedet.boxes.nms

Boxes are "xyxy" in pixels of the photo drawn.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from facedet.plots import save_figure
from facedet.boxes import box_convert, clip_boxes, nms
from facedet.data.synthetic import render_scene
from facedet.models.detector import to_image_tensor
from facedet.models.sliding_window import sliding_window_postprocess
from facedet.models.viola_jones import viola_jones_postprocess

OUTLINED = [patheffects.withStroke(linewidth=2, foreground="black")]


def toy_candidates(true_boxes_xyxy: Tensor, per_face: int = 6, spurious: int = 3, seed: int = 0,
                   width: float = 256, height: float = 256) -> tuple[Tensor, Tensor]:
    """Proposals a detector might make: `per_face` jittered copies of each true box (centre
    moved by up to 15% of its size, sides scaled by 0.8-1.25, scores 0.55-0.95) and a few
    `spurious` boxes elsewhere with low scores (0.3-0.5). Returns boxes (K, 4) "xyxy" pixels
    clipped to the image, and scores (K,)."""
    generator = torch.Generator().manual_seed(seed)
    cxcywh = box_convert(true_boxes_xyxy.float().reshape(-1, 4), "xyxy", "cxcywh")         # (M, 4)
    copies = cxcywh.repeat_interleave(per_face, dim=0)                                      # (M * per_face, 4)
    shift = (torch.rand(len(copies), 2, generator=generator) - 0.5) * 0.3 * copies[:, 2:]
    scale = 0.8 + 0.45 * torch.rand(len(copies), 2, generator=generator)
    jittered = torch.cat([copies[:, :2] + shift, copies[:, 2:] * scale], dim=1)
    scores = 0.55 + 0.4 * torch.rand(len(copies), generator=generator)
    side = torch.tensor([width, height]) * (0.1 + 0.15 * torch.rand(spurious, 1, generator=generator))
    centre = torch.tensor([width, height]) * (0.15 + 0.7 * torch.rand(spurious, 2, generator=generator))
    stray = torch.cat([centre, side], dim=1)
    boxes = box_convert(torch.cat([jittered, stray]), "cxcywh", "xyxy")
    scores = torch.cat([scores, 0.3 + 0.2 * torch.rand(spurious, generator=generator)])
    return clip_boxes(boxes, width, height), scores


@torch.no_grad()
def nms_before_after(detector: Any, image: Image.Image, min_score: float = 0.3,
                     nms_iou: float = 0.45) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One photo through a detector: (proposals, detections), each {"boxes" (K, 4) "xyxy" pixels,
    "scores" (K,)}.

    The detector runs twice (its one inference path), with nms_iou=1.0 (an IoU is never above
    1, so NMS removes nothing: every box scoring >= min_score) and with `nms_iou`. The sliding
    window's extra "nested window" pass is switched off for the proposals too.
    """
    photo = to_image_tensor(image)
    nested = detector.postprocess in (sliding_window_postprocess, viola_jones_postprocess)
    extra = {"max_contained": None} if nested else {}
    raw = detector.detect_tensors([photo], min_score=min_score, nms_iou=1.0, top_k=100_000, options=extra)[0]
    kept = detector.detect_tensors([photo], min_score=min_score, nms_iou=nms_iou)[0]
    return tuple({"boxes": d["boxes"], "scores": d["scores"]} for d in (raw, kept))


def _draw(ax: Axes, pixels: np.ndarray, boxes: Tensor, scores: Tensor, colours: ScalarMappable, labels: bool) -> None:
    height, width = pixels.shape[:2]
    ax.imshow(pixels, extent=(0, width, height, 0))
    order = scores.argsort()  # best boxes drawn last, on top
    for (x1, y1, x2, y2), score in zip(boxes[order].tolist(), scores[order].tolist()):
        colour = colours.to_rgba(score)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.6))
        if labels:
            ax.text(x1, y1, f"{score:.2f}", color="white", fontsize=8, va="bottom", path_effects=OUTLINED,
                    clip_on=True)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_before_after(
    image: Image.Image | np.ndarray,
    before: dict[str, Tensor],
    after: dict[str, Tensor],
    path: str | os.PathLike,
    title: str = "",
    true_boxes_xyxy: Tensor | None = None,
    caption: str = "",
    dpi: int = 110,
) -> Path:
    """Proposals (left) and the boxes NMS keeps (right) over the photo, coloured by score.

    before, after: {"boxes" (K, 4) "xyxy" pixels, "scores" (K,)}; true_boxes_xyxy: optional
    (M, 4) ground truth, drawn dashed white on both panels. Returns the PNG's path.
    """
    pixels = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    height, width = pixels.shape[:2]
    colours = ScalarMappable(Normalize(0, 1), "viridis")
    fig = Figure(figsize=(10, 5 * height / width + 1.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, found, name in zip(axes, (before, after), ("before NMS", "after NMS")):
        _draw(ax, pixels, found["boxes"], found["scores"], colours, labels=len(found["boxes"]) <= 30)
        if true_boxes_xyxy is not None:
            for x1, y1, x2, y2 in true_boxes_xyxy.reshape(-1, 4).tolist():
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linestyle="--",
                                       linewidth=1.2))
        ax.set_title(f"{name}: {len(found['boxes'])} boxes", fontsize=10)
    fig.colorbar(colours, ax=axes, fraction=0.03, label="score")
    return save_figure(fig, path, dpi, title, caption)


def plot_toy_nms(path: str | os.PathLike, iou_threshold: float = 0.45, seed: int = 4, dpi: int = 110) -> Path:
    """NMS without a model: toy_candidates around the faces of a synthetic scene, then
    facedet.boxes.nms. Returns the PNG's path."""
    scene, faces = render_scene(np.random.default_rng([seed, 5]), 256, min_faces=2, max_faces=3)
    boxes, scores = toy_candidates(faces, seed=seed, width=scene.width, height=scene.height)
    keep = nms(boxes, scores, iou_threshold)
    return plot_before_after(
        scene, {"boxes": boxes, "scores": scores}, {"boxes": boxes[keep], "scores": scores[keep]}, path,
        title="non-maximum suppression", true_boxes_xyxy=faces, dpi=dpi,
        caption=f"Greedy NMS: take the best-scoring box, delete every box overlapping it with IoU > {iou_threshold:g}, "
                "repeat with the best box left. NMS removes duplicates, not false positives: the low-scoring "
                "strays stay until a score threshold drops them. Dashed white: the true faces.",
    )
