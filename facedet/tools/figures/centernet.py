"""CenterNet on one photo, in three panels: the heatmap, its peaks, and the boxes read at the peaks.

    target_maps               the Gaussian targets of a photo's true boxes (no model needed)
    predicted_maps            what a trained CenterNet detector sees in a photo
    plot_heatmap_peaks_boxes  the three panels (PNG)
    plot_target_example       target_maps on a synthetic scene (`python -m facedet.tools.figures`)

Maps are dicts: "heatmap" (h, w) numpy, the max over classes of a stride-4 grid; "peaks" (P, 2)
cells (col, row) and "peak_scores" (P,); "boxes" (K, 4) "xyxy" pixels of the photo and "scores" (K,).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from facedet.plots import save_figure
from facedet.data.synthetic import render_scene
from facedet.models.centernet import (
    INPUT_MULTIPLE,
    OUTPUT_STRIDE,
    decode_peaks,
    encode_targets,
    find_peaks,
    top_peaks,
)
from facedet.models.detector import to_image_tensor


def _peaks(heatmap: Tensor, min_score: float, k: int = 100) -> tuple[Tensor, Tensor]:
    """The cells (P, 2) (col, row) of the k best peaks of heatmap (1, C, h, w) scoring >= min_score, and their scores."""
    scores, _, rows, cols = top_peaks(find_peaks(heatmap), k)
    keep = scores[0] >= min_score
    return torch.stack([cols[0], rows[0]], dim=-1)[keep], scores[0][keep]


def target_maps(image: Image.Image, boxes_xyxy: Tensor, min_iou: float = 0.7) -> dict[str, Any]:
    """The training targets of one photo: `encode_targets` on its stride-4 grid, then decoded back.

    boxes_xyxy (M, 4) pixels. The grid has floor(H / 4) x floor(W / 4) cells; every peak of the
    target scores exactly 1, and its box is the true box (the encode -> decode round trip).
    """
    h, w = image.height // OUTPUT_STRIDE, image.width // OUTPUT_STRIDE
    extent = torch.tensor([w, h, w, h], dtype=torch.float32) * OUTPUT_STRIDE  # pixels the grid covers
    boxes = boxes_xyxy.float().reshape(-1, 4)
    encoded = encode_targets([{"boxes": boxes / extent, "labels": torch.zeros(len(boxes), dtype=torch.int64)}],
                             num_classes=1, height=h, width=w, min_iou=min_iou)
    peaks, peak_scores = _peaks(encoded["heatmap"], min_score=1.0)
    found, scores, _ = decode_peaks(encoded["heatmap"], encoded["size"], encoded["offset"], k=len(peaks))
    return {"heatmap": encoded["heatmap"][0].amax(0).numpy(), "peaks": peaks, "peak_scores": peak_scores,
            "boxes": found[0] * extent, "scores": scores[0]}


@torch.no_grad()
def predicted_maps(detector: Any, image: Image.Image, min_score: float = 0.3) -> dict[str, Any]:
    """A CenterNet detector on one photo at its own size (padded to a multiple of 32, as the
    detector pads it): the predicted heatmap, its peaks and the detections scoring >= min_score."""
    photo = to_image_tensor(image)  # (3, H, W) in [0, 1]
    photo = (photo - torch.tensor(detector.mean).view(3, 1, 1)) / torch.tensor(detector.std).view(3, 1, 1)
    height, width = photo.shape[-2:]
    hp, wp = -(-height // INPUT_MULTIPLE) * INPUT_MULTIPLE, -(-width // INPUT_MULTIPLE) * INPUT_MULTIPLE
    inputs = F.pad(photo, (0, wp - width, 0, hp - height))[None].to(detector.device)
    detector.model.eval()
    outputs = detector.model(inputs)
    heatmap = torch.sigmoid(outputs[0]).float().cpu()  # (1, C, hp / 4, wp / 4)
    peaks, peak_scores = _peaks(heatmap, min_score)
    found = detector.postprocess(outputs, min_score=min_score, nms_iou=detector.nms_iou, top_k=detector.top_k)[0]
    boxes = found["boxes"].float().cpu() * torch.tensor([wp, hp, wp, hp], dtype=torch.float32)
    return {"heatmap": heatmap[0].amax(0).numpy(), "peaks": peaks, "peak_scores": peak_scores,
            "boxes": boxes, "scores": found["scores"].float().cpu()}


def plot_heatmap_peaks_boxes(image: Image.Image, maps: dict[str, Any], path: str | os.PathLike, title: str = "",
                             true_boxes_xyxy: Tensor | None = None, caption: str = "", dpi: int = 110) -> Path:
    """Three panels: the heatmap over the photo, the heatmap with its peaks marked, the boxes.

    maps: as `target_maps` / `predicted_maps` return; true_boxes_xyxy (M, 4) pixels, drawn dashed.
    """
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    heat = maps["heatmap"]
    h, w = heat.shape
    fig = Figure(figsize=(13, 4.3 * height / width + 1.2), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(pixels, extent=(0, width, height, 0))
    # cells below 0.02 left transparent: the photo shows through wherever nothing is centred
    axes[0].imshow(np.ma.masked_less(heat, 0.02), extent=(0, w * OUTPUT_STRIDE, h * OUTPUT_STRIDE, 0), cmap="magma",
                   alpha=0.8, vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title(f"heatmap, {h} x {w} cells of {OUTPUT_STRIDE} x {OUTPUT_STRIDE} px", fontsize=10)
    axes[1].imshow(heat, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    peaks = maps["peaks"].numpy().reshape(-1, 2)
    axes[1].scatter(peaks[:, 0], peaks[:, 1], marker="x", s=40, color="cyan", linewidths=1.5)
    axes[1].set_title(f"{len(peaks)} peaks (3x3 local maxima)", fontsize=10)
    axes[2].imshow(pixels, extent=(0, width, height, 0))
    colours = ScalarMappable(Normalize(0, 1), "viridis")
    for (x1, y1, x2, y2), score in zip(maps["boxes"].tolist(), maps["scores"].tolist()):
        axes[2].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colours.to_rgba(score),
                                    linewidth=1.8))
    axes[2].set_title(f"{len(maps['boxes'])} boxes: centre + offset -+ size / 2, no NMS", fontsize=10)
    for ax in (axes[0], axes[2]):
        if true_boxes_xyxy is not None:
            for x1, y1, x2, y2 in true_boxes_xyxy.reshape(-1, 4).tolist():
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linestyle="--",
                                       linewidth=1.0))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(colours, ax=axes, fraction=0.02, label="heat / score")
    return save_figure(fig, path, dpi, title, caption)


def plot_target_example(path: str | os.PathLike, seed: int = 5, size: int = 256, dpi: int = 110) -> Path:
    """The targets of a synthetic scene: Gaussian peaks, their peaks, and the boxes they decode to."""
    scene, faces = render_scene(np.random.default_rng([seed, 3]), size, min_faces=2, max_faces=4)
    return plot_heatmap_peaks_boxes(
        scene, target_maps(scene, faces), path, title="CenterNet targets: a face is a point", true_boxes_xyxy=faces,
        dpi=dpi,
        caption="Each face's centre becomes a Gaussian peak on a stride-4 heatmap (radius: how far the centre may be "
                "off while the box keeps IoU >= 0.7, CornerNet's formula); the size and sub-pixel offset are stored "
                "at the centre cell. Decoding takes the heatmap's 3x3 local maxima and reads each box there: the "
                "true boxes come back exactly, with no anchors and no NMS.")
