"""What every rung hands to the trainer, the evaluator and the CLI."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Detector:
    """A model, its criterion and its post-processor, built side by side.

    model:       images (B, 3, H, W) -> outputs (a tensor or a tuple of tensors)
    criterion:   (outputs, targets: list[dict]) -> dict[str, scalar Tensor] of weighted loss terms
    postprocess: (outputs, *, min_score, nms_iou, top_k) -> list[dict] per image with
                 "boxes" (K, 4) "xyxy" fractional, "scores" (K,), "labels" (K,) 0-based.
                 For task="classification" it returns face probabilities (B,).
    mean, std:   the input normalisation the model expects.
    fixed_input: True when images are resized to `model.image_size`; False when the model
                 takes whole images of any size (the sliding window scans the photo itself).
    """

    model: nn.Module
    criterion: nn.Module
    postprocess: Callable
    task: str = "detection"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    fixed_input: bool = True
