"""Training targets of the two-stage detectors: which regions teach what, and the box corrections.

Both stages of Faster R-CNN (and R-CNN / Fast R-CNN's one) learn from regions matched to the
ground truth by IoU; they differ in the thresholds and in how many regions one photo lends:

    encode_deltas / decode_deltas   R-CNN's box regression: (dx, dy, dw, dh) of a box against a region
    label_anchors                   RPN: each anchor positive (1), negative (0) or ignored (-1)
    sample_balanced                 RPN: 256 anchors per photo, at most half of them positive
    sample_rois                     Fast R-CNN: 64 RoIs per photo, at most 25 % foreground

Box regression (R-CNN, appendix C): a region P (centre px, py, size pw, ph) is corrected
towards the ground truth G by
    dx = (gx - px) / pw,   dy = (gy - py) / ph,   dw = log(gw / pw),   dh = log(gh / ph)
(shifts relative to the region's size, so the same numbers fit a small and a large face; the
log makes the size change symmetric: half or double are -0.69 / +0.69). Fast R-CNN multiplies
them by the weights (10, 10, 5, 5): the raw targets have standard deviations of about
0.1, 0.1, 0.2, 0.2, and the weights bring them to about 1, so Smooth L1's kink at 1 sits
where it should. (SSD's "variances" (0.1, 0.2), facedet.boxes.encode, are the same idea.)

Toy example to check by hand: the region (0, 0, 10, 10) and the truth (2, 0, 12, 20):
centres (5, 5) and (7, 10), sizes 10 x 10 and 10 x 20, so the deltas are
(0.2, 0.5, log 1 = 0, log 2 = 0.693), and (2, 5, 0, 3.466) with weights (10, 10, 5, 5).

Labels in sample_rois: 0 is background and a foreground region takes its object's class + 1
(facedet's records count classes from 0 with no background).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from facedet.boxes import box_iou

FAST_RCNN_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # see the module docstring
# decode never grows a box by more than 1000/16 times in one step: exp() of a wild early
# prediction would overflow (torchvision's bbox_xform_clip; 1000 px images, stride-16 anchors)
MAX_LOG_SCALE = math.log(1000.0 / 16)


def _centres_and_sizes(boxes_xyxy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = boxes_xyxy[..., 2] - boxes_xyxy[..., 0]
    h = boxes_xyxy[..., 3] - boxes_xyxy[..., 1]
    return boxes_xyxy[..., 0] + w / 2, boxes_xyxy[..., 1] + h / 2, w, h


def encode_deltas(boxes_xyxy: Tensor, regions_xyxy: Tensor,
                  weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Deltas (..., 4) = weights * (dx, dy, dw, dh) that move each region (..., 4) onto its box (..., 4).

    Both "xyxy", matched pairs (broadcast together). Regions and boxes need positive sizes
    (a zero-size one would give an infinite log): callers drop degenerate boxes first.
    """
    px, py, pw, ph = _centres_and_sizes(regions_xyxy)
    gx, gy, gw, gh = _centres_and_sizes(boxes_xyxy)
    wx, wy, ww, wh = weights
    return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                        ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=-1)


def decode_deltas(deltas: Tensor, regions_xyxy: Tensor,
                  weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Boxes (..., 4) "xyxy": each region (..., 4) corrected by its deltas (..., 4); the inverse of encode_deltas.

    dw and dh are clamped to log(1000 / 16) before exp() (MAX_LOG_SCALE).
    """
    px, py, pw, ph = _centres_and_sizes(regions_xyxy)
    wx, wy, ww, wh = weights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=MAX_LOG_SCALE)
    dh = (deltas[..., 3] / wh).clamp(max=MAX_LOG_SCALE)
    cx, cy = px + dx * pw, py + dy * ph
    w, h = pw * torch.exp(dw), ph * torch.exp(dh)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def inside_image(boxes_xyxy: Tensor, width: float, height: float, allowed_border: float = 0.0) -> Tensor:
    """(N,) bool: the box lies within the image, give or take `allowed_border` pixels."""
    return ((boxes_xyxy[:, 0] >= -allowed_border) & (boxes_xyxy[:, 1] >= -allowed_border)
            & (boxes_xyxy[:, 2] <= width + allowed_border) & (boxes_xyxy[:, 3] <= height + allowed_border))


def label_anchors(anchors_xyxy: Tensor, boxes_xyxy: Tensor, positive_iou: float = 0.7, negative_iou: float = 0.3,
                  image_size: tuple[float, float] | None = None, allowed_border: float = 0.0) -> tuple[Tensor, Tensor]:
    """The RPN's labels (Faster R-CNN, section 3.1.2): anchors (A, 4), ground truth (G, 4), "xyxy" pixels.

    Returns (labels (A,) int64: 1 positive, 0 negative, -1 ignored; matched (A,) int64: the
    index of each anchor's best-overlapping ground-truth box, 0 when there is none).
      positive: IoU >= positive_iou with some box, or an anchor with the highest IoU for some
                box (ties included), so that every box has an anchor even when none reaches
                0.7 (a face between two anchor sizes)
      negative: IoU < negative_iou with every box (and not a box's best)
      ignored:  the rest, in between: too ambiguous to teach either way
    image_size (width, height): anchors crossing the image border by more than allowed_border
    pixels are ignored and cannot be a box's best (the paper's training choice); None keeps all.
    """
    num = len(anchors_xyxy)
    labels = torch.full((num,), -1, dtype=torch.int64, device=anchors_xyxy.device)
    usable = torch.ones(num, dtype=torch.bool, device=anchors_xyxy.device)
    if image_size is not None:
        usable = inside_image(anchors_xyxy, image_size[0], image_size[1], allowed_border)
    if len(boxes_xyxy) == 0:  # no object: every usable anchor is background
        labels[usable] = 0
        return labels, torch.zeros(num, dtype=torch.int64, device=anchors_xyxy.device)
    iou = box_iou(anchors_xyxy, boxes_xyxy)  # (A, G)
    iou = torch.where(usable[:, None], iou, torch.full_like(iou, -1.0))  # unusable anchors match nothing
    best_iou, matched = iou.max(dim=1)  # (A,)
    labels[usable & (best_iou < negative_iou)] = 0
    per_box_best = iou.max(dim=0).values  # (G,)
    is_best = ((iou == per_box_best[None]) & (per_box_best[None] > 0)).any(dim=1)  # (A,)
    labels[is_best | (best_iou >= positive_iou)] = 1
    return labels, matched


def _random_subset(mask: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """Indices of `count` entries drawn at random, without replacement, among mask's True ones (fewer if short)."""
    index = torch.nonzero(mask).flatten()
    order = torch.randperm(len(index), generator=generator, device=mask.device)
    return index[order[:count]]


def sample_balanced(labels: Tensor, num_samples: int = 256, positive_fraction: float = 0.5,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Pick the anchors (or RoIs) one photo trains on: labels (A,) with 1 / 0 / -1 -> (positive, negative) indices.

    At most num_samples * positive_fraction positives (256 x 0.5 = 128 for the RPN), drawn at
    random when there are more; negatives fill the rest up to num_samples. A photo with few
    faces has few positives, so its sample is mostly negatives (faces are rare; a 1:1 cap keeps
    the many easy background anchors from drowning them when they are not).
    """
    positives = _random_subset(labels == 1, int(num_samples * positive_fraction), generator)
    negatives = _random_subset(labels == 0, num_samples - len(positives), generator)
    return positives, negatives


def sample_rois(proposals_xyxy: Tensor, boxes_xyxy: Tensor, box_labels: Tensor, num_samples: int = 64,
                foreground_fraction: float = 0.25, foreground_iou: float = 0.5,
                background_iou: tuple[float, float] = (0.1, 0.5), add_boxes: bool = True,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Fast R-CNN's RoI sample for one photo (section 2.3): proposals (P, 4), ground truth (G, 4) and labels (G,).

    Returns (rois (S, 4) "xyxy", labels (S,) int64 with 0 = background and class + 1 for a
    foreground RoI, matched_boxes (S, 4): the ground truth each RoI regresses to (its own box
    for background, whose box loss is not counted)), S <= num_samples, foreground first.
      foreground: IoU >= foreground_iou with some box, at most num_samples * foreground_fraction
                  (64 x 0.25 = 16), drawn at random
      background: best IoU in [background_iou[0], background_iou[1]): regions that touch an
                  object without being one (the 0.1 floor is a crude hard-negative choice,
                  from the paper); they fill the rest
    add_boxes: the ground-truth boxes join the proposals (a perfect foreground RoI for each,
    as the reference implementations do). The paper's mini-batch is 2 photos x 64 RoIs.
    """
    regions = torch.cat([proposals_xyxy, boxes_xyxy]) if add_boxes else proposals_xyxy
    if len(boxes_xyxy) == 0:
        best_iou = torch.zeros(len(regions), device=regions.device)
        matched = torch.zeros(len(regions), dtype=torch.int64, device=regions.device)
    else:
        best_iou, matched = box_iou(regions, boxes_xyxy).max(dim=1)  # (R,)
    roles = torch.full((len(regions),), -1, dtype=torch.int64, device=regions.device)
    roles[(best_iou >= background_iou[0]) & (best_iou < background_iou[1])] = 0
    roles[best_iou >= foreground_iou] = 1
    foreground, background = sample_balanced(roles, num_samples, foreground_fraction, generator)
    chosen = torch.cat([foreground, background])
    labels = torch.zeros(len(chosen), dtype=torch.int64, device=regions.device)
    if len(boxes_xyxy):
        labels[:len(foreground)] = box_labels[matched[foreground]] + 1
        matched_boxes = torch.cat([boxes_xyxy[matched[foreground]], regions[background]])
    else:
        matched_boxes = regions[background]
    return regions[chosen], labels, matched_boxes
