"""Losses shared by several rungs, each written once (a rung's own loss stays in its file).

    binary_cross_entropy   BCE of probabilities, written out: the grid (rung 3) and YOLO-face (rung 4)
    sigmoid_focal_loss     Lin et al.'s focal loss on logits: RetinaNet (rung 6), and SSD and the
                           fast.ai head with `loss: focal` (rung 5)
    fast_rcnn_loss         the two-stage detectors' multi-task loss on sampled regions: the second
                           stage of Fast and Faster R-CNN, and Faster R-CNN's RPN (one class)

Element-wise, unreduced: each criterion sums or averages as its paper does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def binary_cross_entropy(p: Tensor, t: Tensor) -> Tensor:
    """Elementwise BCE of probabilities p against targets t: -(t log p + (1 - t) log(1 - p)).

    A sigmoid rounds to exactly 1.0 in float32 for logits above ~17, and log(0) = -inf would
    make a NaN gradient; so p and 1 - p are clamped at 1e-12 before the log: an element
    costs at most -log(1e-12) = 27.6. Written out (instead of F.binary_cross_entropy, which
    refuses NaN inputs) so a NaN prediction gives a NaN term, which the trainer's non-finite
    check reports by name.
    """
    eps = 1e-12
    return -(t * torch.log(p.clamp(min=eps)) + (1 - t) * torch.log((1 - p).clamp(min=eps)))


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float | None = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t) (Lin et al. 2017).

    logits, targets: same shape, targets in {0, 1}; returns the same shape, unreduced.
    alpha weighs positives (1 - alpha negatives), None = no weighting; (1 - p_t)^gamma
    shrinks the loss of examples already classified well, i.e. the flood of easy background
    anchors. gamma = 0 and alpha = None is binary cross-entropy. RetinaNet (rung 6,
    facedet.models.retinanet) works an example through by hand.
    """
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_t)
    loss = (1 - p_t).pow(gamma) * bce
    if alpha is None:
        return loss
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * loss


def fast_rcnn_loss(class_logits: Tensor, box_deltas: Tensor, labels: Tensor, target_deltas: Tensor,
                   beta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Fast R-CNN's multi-task loss L = L_cls + lambda [u >= 1] L_loc (Girshick 2015, eq. 1), both terms returned.

    class_logits (S, C + 1) of S sampled regions (column 0 = background), box_deltas (S, C, 4)
    one correction per object class, labels (S,) int64 (0 = background, class + 1 otherwise),
    target_deltas (S, 4) of each region towards its object (ignored for background).
      L_cls: softmax cross-entropy, averaged over the S regions;
      L_loc: Smooth L1 (kink at `beta`) between the deltas of the region's TRUE class and the
             targets, summed over the foreground and divided by S (Detectron's normalisation:
             a sample with few faces does not blow their box loss up).
    With no region (S = 0) both terms are 0 and still carry a gradient (the graph stays connected).
    A binary RPN uses it with C = 1: logits (S, 2) as [background, object].
    """
    if len(labels) == 0:
        zero = class_logits.sum() * 0.0 + box_deltas.sum() * 0.0
        return zero, zero
    cls = F.cross_entropy(class_logits, labels)
    foreground = torch.nonzero(labels > 0).flatten()
    chosen = box_deltas[foreground, labels[foreground] - 1]  # (S_fg, 4) the true class's deltas
    box = F.smooth_l1_loss(chosen, target_deltas[foreground], beta=beta, reduction="sum") / len(labels)
    return cls, box
