"""The second stage of the two-stage detectors: look at each region once, say what it is and correct its box.

Fast R-CNN (2015) and Faster R-CNN (2015) share this stage; they differ only in where the
regions come from (Selective Search, or the RPN). For each region of interest (RoI):

    1. cut a fixed-size block (roi_size x roi_size) out of the shared feature map:
       facedet.ops.roi_align (Faster R-CNN, Mask R-CNN's fix) or roi_pool (Fast R-CNN);
    2. two fully connected layers (the paper's "fc6", "fc7");
    3. softmax over C + 1 classes (0 = background) and C class-specific box corrections
       (dx, dy, dw, dh), each class its own, so a face box and a hand box are corrected differently.

With several feature maps (a feature pyramid), a RoI is pooled from the level that suits its
size (FPN, Lin et al. 2017, eq. 1): level k = floor(4 + log2(sqrt(w h) / 224)), clamped to the
levels there are; a 224 x 224 RoI (an ImageNet object) goes to level 4, stride 16, and each
halving of the side goes one level finer.

    RoIHead               regions -> class logits and per-class deltas
    assign_levels         the pyramid level of each RoI
    decode_roi_detections per-class boxes, softmax scores, class-aware NMS: the post-processing
                          both detectors share
The loss of this stage is facedet.models.losses.fast_rcnn_loss; its targets come from
facedet.region_targets (sample_rois, encode_deltas with FAST_RCNN_WEIGHTS).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import clip_boxes, greedy_nms_mask
from facedet.errors import ConfigError
from facedet.ops import roi_align, roi_pool
from facedet.region_targets import FAST_RCNN_WEIGHTS, decode_deltas

ROI_OPS = ("align", "pool")
# FPN's eq. 1: a RoI of side 224 px (ImageNet's crop) belongs on level 4 (stride 16)
CANONICAL_SIDE, CANONICAL_LEVEL = 224.0, 4


def assign_levels(rois_xyxy: Tensor, levels: Sequence[int]) -> Tensor:
    """(K,) index into `levels` (pyramid levels, e.g. [3, 4, 5] for strides 8, 16, 32) of each RoI (K, 4) "xyxy" px."""
    side = ((rois_xyxy[:, 2] - rois_xyxy[:, 0]).clamp(min=1e-6) * (rois_xyxy[:, 3] - rois_xyxy[:, 1]).clamp(min=1e-6)).sqrt()
    level = torch.floor(CANONICAL_LEVEL + torch.log2(side / CANONICAL_SIDE)).clamp(min(levels), max(levels))
    return (level - min(levels)).long()


class RoIHead(nn.Module):
    """Pool each RoI, two FC layers, then class logits and per-class box deltas.

    maps [(N, F, H_l, W_l)] with strides `strides`; rois (K, 5) (photo index, x1, y1, x2, y2) in
    input pixels -> class_logits (K, C + 1) (column 0 = background), box_deltas (K, C, 4)
    (encode_deltas with FAST_RCNN_WEIGHTS). roi_op "align": roi_align with 2 x 2 samples per bin
    and aligned=True (Detectron2's setting); "pool": roi_pool, the quantised original.
    Weights: the FC layers from PyTorch's default; the class layer N(0, 0.01), the box layer
    N(0, 0.001) (the paper's), so the first corrections are tiny and training starts from the regions.
    """

    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], roi_op: str = "align",
                 roi_size: int = 7, hidden: int = 128) -> None:
        super().__init__()
        if roi_op not in ROI_OPS:
            raise ConfigError(f"model.roi_op={roi_op!r}: expected one of {', '.join(ROI_OPS)}")
        self.num_classes, self.strides, self.roi_op, self.roi_size = num_classes, tuple(strides), roi_op, roi_size
        self.fc = nn.Sequential(nn.Linear(channels * roi_size * roi_size, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.cls = nn.Linear(hidden, num_classes + 1)
        self.box = nn.Linear(hidden, num_classes * 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def pool(self, maps: Sequence[Tensor], rois: Tensor) -> Tensor:
        """(K, F, roi_size, roi_size): each RoI cut from its level's map."""
        def cut(feature: Tensor, boxes: Tensor, stride: int) -> Tensor:
            if self.roi_op == "pool":
                return roi_pool(feature, boxes, self.roi_size, 1.0 / stride)
            return roi_align(feature, boxes, self.roi_size, 1.0 / stride, sampling_ratio=2, aligned=True)

        if len(maps) == 1:
            return cut(maps[0], rois, self.strides[0])
        levels = [round(math.log2(s)) for s in self.strides]
        which = assign_levels(rois[:, 1:], levels)  # (K,)
        pooled = maps[0].new_zeros(len(rois), maps[0].shape[1], self.roi_size, self.roi_size)
        for i, (feature, stride) in enumerate(zip(maps, self.strides)):  # at most a handful of levels
            mask = which == i
            if mask.any():
                pooled[mask] = cut(feature, rois[mask], stride)
        return pooled

    def forward(self, maps: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        x = self.fc(self.pool(maps, rois).flatten(1))  # (K, hidden)
        return self.cls(x), self.box(x).reshape(-1, self.num_classes, 4)


@torch.no_grad()
def decode_roi_detections(regions: Tensor, valid: Tensor, class_logits: Tensor, box_deltas: Tensor, *,
                          min_score: float, nms_iou: float, top_k: int) -> list[dict[str, Tensor]]:
    """The second stage's detections for a batch, every photo and class at once.

    regions (B, R, 4) "xyxy" fractional of the input, valid (B, R) bool (False = padding),
    class_logits (B, R, C + 1), box_deltas (B, R, C, 4). Each region becomes C candidates:
    its box corrected by class c's deltas (clipped to the input), scored by the softmax
    probability of class c. Candidates scoring >= min_score go through class-aware NMS
    (greedy_nms_mask, labels = class), and the top_k best of a photo are kept.
    returns per photo {"boxes" (K, 4) "xyxy" fractional, "scores" (K,), "labels" (K,) 0-based}.
    """
    b, r, c = box_deltas.shape[:3]
    scores = F.softmax(class_logits.float(), dim=-1)[..., 1:]  # (B, R, C) without the background
    boxes = clip_boxes(decode_deltas(box_deltas.float(), regions[:, :, None].float(), FAST_RCNN_WEIGHTS), 1, 1)
    scores = scores.masked_fill(~valid[..., None], -1.0).reshape(b, r * c)
    boxes, labels = boxes.reshape(b, r * c, 4), torch.arange(c, device=scores.device).repeat(r).expand(b, -1)
    scores, order = scores.sort(dim=1, descending=True)  # greedy NMS visits them best first
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    labels = labels.gather(1, order)
    keep = greedy_nms_mask(boxes, scores >= min_score, nms_iou, labels)  # (B, R * C)
    best, index = scores.masked_fill(~keep, -1.0).topk(min(top_k, r * c), dim=1)
    found = best >= min_score
    return [{"boxes": boxes[i, index[i]][found[i]], "scores": best[i][found[i]], "labels": labels[i, index[i]][found[i]]}
            for i in range(b)]
