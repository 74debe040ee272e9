"""Run a detector over a data loader: detections and ground truths in pixels, ready to score."""
from __future__ import annotations

import torch
from tqdm import tqdm

from facedet.config import EvalConfig
from facedet.models.detector import Detector


def _scale(boxes: torch.Tensor, orig_size: torch.Tensor) -> torch.Tensor:
    """Fractional "xyxy" of the network input -> pixels of the original image.

    Evaluation resizes without letterboxing, so fractions of the input are fractions
    of the original image. orig_size is (h, w).
    """
    h, w = orig_size.tolist()
    return boxes.float().cpu() * torch.tensor([w, h, w, h], dtype=torch.float32)


@torch.no_grad()
def predict(
    detector: Detector,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    cfg: EvalConfig,
    desc: str = "predict",
) -> tuple[list[dict], list[dict]]:
    """Detections and ground truths per image, boxes "xyxy" in original-image pixels."""
    model = detector.model.eval()
    detections, ground_truths = [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, mininterval=1.0):
        outputs = model(images.to(device, non_blocking=True))
        batch = detector.postprocess(outputs, min_score=cfg.min_score, nms_iou=cfg.nms_iou, top_k=cfg.top_k)
        for det, target in zip(batch, targets):
            size = target["orig_size"]
            detections.append({"boxes": _scale(det["boxes"], size), "scores": det["scores"].float().cpu(),
                               "labels": det["labels"].cpu(), "path": target.get("path", "")})
            ground_truths.append({"boxes": _scale(target["boxes"], size), "labels": target["labels"],
                                  "difficult": target["difficult"], "path": target.get("path", "")})
        if cfg.max_images and len(detections) >= cfg.max_images:
            break
    return detections, ground_truths


@torch.no_grad()
def predict_classification(detector: Detector, loader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Face probabilities (N,) and 0/1 labels (N,) for the classifier rung."""
    model = detector.model.eval()
    probs, labels = [], []
    for images, targets in tqdm(loader, desc="predict", leave=False, mininterval=1.0):
        probs.append(detector.postprocess(model(images.to(device))).float().cpu())
        labels.append(torch.stack([t["label"] for t in targets]).float().cpu())
    return torch.cat(probs), torch.cat(labels)
