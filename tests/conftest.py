"""Helpers several test files share; a test file imports them by name (`from conftest import n_params`).

    n_params      parameters of a model
    target        one image's target dict from plain lists
    det, gt       one image's detections / ground truth for the evaluation tests, from plain lists
    iou_oracle    IoU of two "xyxy" boxes, the slow readable way (the oracle of the vectorised box_iou)
    scene_batch   normalised synthetic scenes and their fractional face boxes: the overfit tests' batch
    assert_png    a figure file is a real PNG with something drawn in it
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from facedet.data.dataset import image_to_tensor
from facedet.data.synthetic import render_scene
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def target(boxes: Sequence, labels: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """{"boxes" (M, 4) float32, "labels" (M,) int64}; labels default to class 0 (face)."""
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = [0] * len(boxes) if labels is None else labels
    return {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64)}


def det(boxes: Sequence, scores: Sequence[float], labels: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """{"boxes" (K, 4) float32, "scores" (K,), "labels" (K,)}; labels default to class 0."""
    labels = [0] * len(scores) if labels is None else labels
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}


def gt(boxes: Sequence, labels: Sequence[int] | None = None,
       difficult: Sequence[bool] | None = None) -> dict[str, torch.Tensor]:
    """{"boxes" (M, 4) float32, "labels" (M,)[, "difficult" (M,)]}; labels default to class 0."""
    out = target(boxes, labels)
    if difficult is not None:
        out["difficult"] = torch.tensor(difficult)
    return out


def iou_oracle(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two "xyxy" boxes, one number at a time; 0 when both are empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scene_batch(size: int, seeds: tuple[int, ...]) -> tuple[torch.Tensor, list[dict]]:
    """Synthetic scenes with one to three faces each: images (N, 3, size, size) normalised with the
    ImageNet mean/std, targets with "xyxy" fractional boxes, label 0."""
    images, targets = [], []
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for seed in seeds:
        image, boxes = render_scene(np.random.default_rng(seed), size=size, min_faces=1, max_faces=3)
        images.append((image_to_tensor(image) - mean) / std)
        targets.append({"boxes": boxes / size, "labels": torch.zeros(len(boxes), dtype=torch.int64)})
    return torch.stack(images), targets


def overfit(detector, images: torch.Tensor, targets: list[dict], steps: int, lr: float) -> list[float]:
    """Adam on one fixed batch for `steps` steps, the rung's summed loss terms; the losses, step by step."""
    optimizer = torch.optim.Adam(detector.model.parameters(), lr=lr)
    detector.model.train()
    losses = []
    for _ in range(steps):
        loss = sum(detector.criterion(detector.model(images), targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path
