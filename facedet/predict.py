"""Run a detector over a data loader: detections and ground truths in pixels, ready to score.

The loader yields photos at their own sizes (`DetectionDataset` without a transform, batched
by `collate_photos`); the Detector resizes them as its rung needs (its one inference path),
so validation, evaluation and the benchmark score exactly what a user's call would return.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from facedet.config import EvalConfig
from facedet.models.detector import Detector


@torch.no_grad()
def predict(
    detector: Detector,
    loader: torch.utils.data.DataLoader,
    cfg: EvalConfig,
    desc: str = "predict",
    **options,
) -> tuple[list[dict], list[dict]]:
    """Detections and ground truths per image, boxes "xyxy" in original-image pixels.

    options go to `Detector.detect_tensors` (size, scales, tile for a "scalable" detector).
    """
    detections, ground_truths = [], []
    # disable=None: no bar when stderr is not a terminal (a log file gets no carriage-return clutter)
    for images, targets in tqdm(loader, desc=desc, leave=False, mininterval=1.0, disable=None):
        if cfg.max_images:  # a batch may overshoot the limit: a sliding window takes seconds a photo
            images, targets = images[:cfg.max_images - len(detections)], targets[:cfg.max_images - len(detections)]
        found = detector.detect_tensors(list(images), min_score=cfg.min_score, nms_iou=cfg.nms_iou,
                                        top_k=cfg.top_k, **options)
        for det, target in zip(found, targets):
            h, w = target["orig_size"].tolist()
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            detections.append({**det, "path": target.get("path", "")})
            ground_truths.append({"boxes": target["boxes"].float() * scale, "labels": target["labels"],
                                  "difficult": target["difficult"], "path": target.get("path", "")})
        if cfg.max_images and len(detections) >= cfg.max_images:
            break
    return detections, ground_truths


@torch.no_grad()
def predict_classification(detector: Detector, loader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Face probabilities (N,) and 0/1 labels (N,) for the classifier rung."""
    model = detector.model.eval()
    probs, labels = [], []
    for images, targets in tqdm(loader, desc="predict", leave=False, mininterval=1.0, disable=None):
        probs.append(detector.postprocess(model(images.to(device))).float().cpu())
        labels.append(torch.stack([t["label"] for t in targets]).float().cpu())
    return torch.cat(probs), torch.cat(labels)
