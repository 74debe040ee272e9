"""Box toolkit: small pure tensor functions shared by every detector.

Formats are always named: "xyxy" (x_min, y_min, x_max, y_max), "cxcywh" (centre, size)
and "xywh" (top-left corner, size). Boxes are float tensors (..., 4). Coordinates may be
fractional ([0, 1] of the image) or pixels; `to_absolute` and `to_fractional` convert.

This module is facedet's only home of box geometry. The overlap family shares one formula:
    box_intersection     overlap area of matched pairs (..., 4), (..., 4) -> (...)
    elementwise_box_iou  IoU of matched pairs (..., 4), (..., 4) -> (...)
    box_iou              every pair (N, 4), (M, 4) -> (N, M)
    box_iou_batched      every pair within each group (G, N, 4), (G, M, 4) -> (G, N, M)
    elementwise_box_ioa  intersection over the first box's area (COCO's crowd regions)
    generalized_box_iou  GIoU of matched pairs (..., 4), (..., 4) -> (...), for box losses
and greedy NMS has one engine, `greedy_nms_mask`, under `nms`, `batched_nms` and the rungs'
post-processing helpers. `anchor_wh` and `grid_anchors` lay out the anchors of RetinaNet
and Faster R-CNN's RPN. `gaussian_radius` is the IoU geometry behind CenterNet's heatmap targets.
Shared by several rungs, so written here once:
    multiclass_nms       per-class score filter + NMS + top_k of a batch (the SSD family)
    suppress_nested, merge_windows   NMS for windows of very different sizes (sliding window, Viola-Jones)
    pad_targets, match_priors        a batch's targets as padded tensors; SSD's prior matching

Toy example to check by hand: two 2x2 squares side by side, overlapping by one column,
    box_iou(tensor([[0., 0, 2, 2]]), tensor([[1., 0, 3, 2]]))  ->  [[1/3]]
(intersection 1x2 = 2, union 4 + 4 - 2 = 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

FORMATS = ("xyxy", "cxcywh", "xywh")


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes (..., 4) between "xyxy", "cxcywh" and "xywh"; goes through "xyxy"."""
    for fmt in (in_fmt, out_fmt):
        if fmt not in FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {FORMATS}")
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    elif in_fmt == "xywh":
        c, d = a + c, b + d
    # now (a, b, c, d) = (x1, y1, x2, y2)
    if out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    elif out_fmt == "xywh":
        c, d = c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def to_absolute(boxes: Tensor, width: float, height: float) -> Tensor:
    """Fractional "xyxy" boxes (..., 4) in [0, 1] -> pixel "xyxy" boxes for a width x height image."""
    return boxes * boxes.new_tensor([width, height, width, height])


def to_fractional(boxes: Tensor, width: float, height: float) -> Tensor:
    """Pixel "xyxy" boxes (..., 4) of a width x height image -> fractional "xyxy" boxes."""
    return boxes / boxes.new_tensor([width, height, width, height])


def box_area(boxes_xyxy: Tensor) -> Tensor:
    """Area of "xyxy" boxes (..., 4) -> (...). Inverted boxes (x2 < x1 or y2 < y1) have area 0."""
    wh = (boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_intersection(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Overlap area of "xyxy" boxes (..., 4) and (..., 4), broadcast together -> (...).

    Matched pairs by default; index to pair every box with every other, as `box_iou` does
    with boxes1[:, None] and boxes2[None]. Boxes that do not meet overlap by 0.
    """
    # one plane per coordinate: contiguous tensors, faster than (..., 2) slices on big tables.
    # The in-place ops only overwrite fresh results of min / max, which autograd allows,
    # and save the allocations (about 2x faster for NMS's large tables).
    width = torch.min(boxes1[..., 2], boxes2[..., 2]).sub_(torch.max(boxes1[..., 0], boxes2[..., 0])).clamp_(min=0)
    height = torch.min(boxes1[..., 3], boxes2[..., 3]).sub_(torch.max(boxes1[..., 1], boxes2[..., 1])).clamp_(min=0)
    return width.mul_(height)


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of "xyxy" boxes (..., 4) and (..., 4), broadcast together -> (...).

    The one IoU formula of facedet: `box_iou`, `box_iou_batched` and NMS are this function
    on broadcast views, so they all give the same bits. Pairs whose union is empty (two
    zero-area boxes) get IoU 0, never NaN.
    """
    inter = box_intersection(boxes1, boxes2)
    union = (box_area(boxes1) + box_area(boxes2)).sub_(inter)
    # union == 0 implies inter == 0, so 0 / tiny = 0; a tiny floor also keeps gradients finite
    return inter.div_(union.clamp_(min=torch.finfo(union.dtype).tiny))


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: "xyxy" (N, 4) and (M, 4) -> (N, M)."""
    return elementwise_box_iou(boxes1[:, None, :], boxes2[None, :, :])


def box_iou_batched(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """`box_iou` within each of G groups: "xyxy" (G, N, 4) and (G, M, 4) -> (G, N, M)."""
    return elementwise_box_iou(boxes1[:, :, None, :], boxes2[:, None, :, :])


def elementwise_box_ioa(boxes: Tensor, regions: Tensor) -> Tensor:
    """Intersection over the area of `boxes`: "xyxy" (..., 4) and (..., 4), broadcast -> (...).

    COCO's rule for crowd regions: a box lying wholly inside a region scores 1, however
    large the region. A zero-area box scores 0.
    """
    inter = box_intersection(boxes, regions)
    return inter.div_(box_area(boxes).clamp_(min=torch.finfo(inter.dtype).tiny))


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU (Rezatofighi et al. 2019) of "xyxy" boxes (..., 4) and (..., 4),
    broadcast together -> (...), in [-1, 1].

    GIoU = IoU - (area of C - union) / area of C, with C the smallest box enclosing both.
    Unlike IoU it still says how far apart two boxes are when they do not overlap, so
    1 - GIoU is a box loss with a gradient everywhere. Toy check: [0, 0, 1, 1] and [2, 0, 3, 1]
    have IoU 0, union 2 and C = [0, 0, 3, 1] of area 3, so GIoU = 0 - (3 - 2) / 3 = -1/3.
    """
    inter = box_intersection(boxes1, boxes2)
    union = box_area(boxes1) + box_area(boxes2) - inter
    tiny = torch.finfo(union.dtype).tiny
    iou = inter / union.clamp(min=tiny)
    top_left = torch.min(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    enclosing = box_area(torch.cat((top_left, bottom_right), dim=-1))
    return iou - (enclosing - union) / enclosing.clamp(min=tiny)


def clip_boxes(boxes_xyxy: Tensor, width: float, height: float) -> Tensor:
    """Clamp "xyxy" boxes (..., 4) into [0, width] x [0, height] (use 1, 1 for fractional boxes)."""
    upper = boxes_xyxy.new_tensor([width, height, width, height])
    return torch.min(boxes_xyxy.clamp(min=0), upper)


def encode(boxes_cxcywh: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = (0.1, 0.2)) -> Tensor:
    """SSD regression targets of boxes (..., P, 4) against priors (P, 4), both "cxcywh".

    g_cx = (cx - p_cx) / (p_w * v0),  g_w = log(w / p_w) / v1  (likewise for y and h).
    The default variances (0.1, 0.2) are the Caffe "variances": they multiply the
    offsets by 10 and the log-sizes by 5 so both have roughly unit spread for the loss.
    """
    v_center, v_size = variances
    g_center = (boxes_cxcywh[..., :2] - priors_cxcywh[..., :2]) / (priors_cxcywh[..., 2:] * v_center)
    g_size = torch.log(boxes_cxcywh[..., 2:] / priors_cxcywh[..., 2:]) / v_size
    return torch.cat((g_center, g_size), dim=-1)


def decode(offsets: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = (0.1, 0.2)) -> Tensor:
    """Inverse of `encode`: offsets (..., P, 4) and priors (P, 4) "cxcywh" -> boxes (..., P, 4) "cxcywh"."""
    v_center, v_size = variances
    center = offsets[..., :2] * priors_cxcywh[..., 2:] * v_center + priors_cxcywh[..., :2]
    size = torch.exp(offsets[..., 2:] * v_size) * priors_cxcywh[..., 2:]
    return torch.cat((center, size), dim=-1)


# ----------------------------------------------------------------------------- anchors
# The anchor layouts of RetinaNet (rung 6) and Faster R-CNN's RPN are built from these two.


def anchor_wh(sides: Sequence[float] | Tensor, ratios: Sequence[float]) -> Tensor:
    """Anchor shapes (S * R, 2) (w, h): every side s in every ratio r = h / w, keeping the area s^2.

    w = s / sqrt(r), h = s * sqrt(r); order: side by side, each in every ratio. Toy check:
    anchor_wh([32], [1, 4]) -> [[32, 32], [16, 64]].
    """
    s = torch.as_tensor(sides, dtype=torch.float64).reshape(-1, 1)  # (S, 1)
    r = torch.tensor(list(ratios), dtype=torch.float64)
    return torch.stack(((s / r.sqrt()).reshape(-1), (s * r.sqrt()).reshape(-1)), dim=-1).float()


def grid_anchors(rows: int, cols: int, stride: float, shapes: Tensor) -> Tensor:
    """Anchors of one feature map: shapes (A, 2) (w, h) px at every cell centre -> (rows * cols * A, 4) "cxcywh" px.

    Cell (i, j) is centred at ((j + 0.5) * stride, (i + 0.5) * stride); cells row by row, each
    cell's A shapes side by side: the order of a conv head's flattened (H, W, A) outputs.
    """
    cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float32) + 0.5) * stride,
                            (torch.arange(cols, dtype=torch.float32) + 0.5) * stride, indexing="ij")
    centres = torch.stack((cx, cy), dim=-1).reshape(-1, 1, 2)  # (rows*cols, 1, 2)
    a = len(shapes)
    return torch.cat((centres.expand(-1, a, 2), shapes.expand(rows * cols, a, 2)), dim=-1).reshape(-1, 4)


def gaussian_radius(width: Tensor, height: Tensor, min_iou: float = 0.7) -> Tensor:
    """How far a box's corners may move while it keeps IoU >= min_iou with itself (CornerNet).

    width, height (...) box sides (any unit) -> radius r (...) in the same unit. CenterNet
    (and CornerNet before it) splat a Gaussian of this radius around each object's centre: a
    peak found within r of the true one still gives a box of IoU >= min_iou, so the loss
    punishes it less. Three ways the two corners of a w x h box can each move by r:

      1. both the same way (the box slides by (r, r)): inter = (w - r)(h - r) and union =
         2wh - inter, so IoU >= o  <=>  (1 + o)(w - r)(h - r) >= 2o wh
                                   <=>  r^2 - (w + h) r + wh (1 - o) / (1 + o) >= 0;
      2. both inwards (a (w - 2r) x (h - 2r) box inside the true one): IoU = (w - 2r)(h - 2r) / wh
         >= o  <=>  4 r^2 - 2(w + h) r + wh (1 - o) >= 0;
      3. both outwards (the true box inside a (w + 2r) x (h + 2r) one): IoU = wh / ((w + 2r)(h + 2r))
         >= o  <=>  4o r^2 + 2o (w + h) r - wh (1 - o) <= 0.

    Each holds from r = 0 up to the smaller root of its quadratic (the positive one in case 3):
      r1 = ((w + h) - sqrt((w + h)^2 - 4 wh (1 - o) / (1 + o))) / 2
      r2 = ((w + h) - sqrt((w + h)^2 - 4 wh (1 - o))) / 4
      r3 = (-(w + h) + sqrt((w + h)^2 + 4 wh (1 - o) / o)) / 4
    and the radius is min(r1, r2, r3), about 0.08 x the side of a square at o = 0.7 (case 2
    binds). The widely copied CornerNet code takes the other root and divides by 2 instead of
    2a, which gives much larger radii; these are the exact ones. Toy check: a 10 x 10 box at
    o = 0.7 has r1 = 0.925, r2 = (20 - sqrt(280)) / 4 = 0.817, r3 = 0.976 -> 0.817.
    """
    w, h, o = width, height, min_iou
    s, area = w + h, w * h
    r1 = (s - torch.sqrt(s * s - 4 * area * (1 - o) / (1 + o))) / 2
    r2 = (s - torch.sqrt(s * s - 4 * area * (1 - o))) / 4
    r3 = (torch.sqrt(s * s + 4 * area * (1 - o) / o) - s) / 4
    return torch.min(torch.min(r1, r2), r3)


# Greedy NMS visits boxes in score order, this many at a time: enough that the Python step
# per block is rare (40 steps for 10,000 boxes), few enough that a block's own (b, b) IoU
# matrix and its fixed-point rounds stay cheap. 128-256 measured fastest at 1k-10k boxes.
NMS_BLOCK = 256

# Entries of the IoU tables built at once: 2^26 floats = 256 MB. A barely trained SSD scores
# every prior above min_score 0.01, so a group can hold all 8732 priors; before this bound a
# validation batch of 16 images x 3 classes asked for 14 GB.
MAX_IOU_ENTRIES = 1 << 26


def _greedy_in_block(suppress: Tensor, alive: Tensor) -> Tensor:
    """Greedy NMS inside one block of each group: suppress (G, b, b) bool, [g, j, i] = earlier
    box j would remove box i (j < i only); alive (G, b) bool = valid and not removed by
    earlier blocks -> keep (G, b) bool.

    The rule keep[i] = alive[i] and no kept j < i suppresses i refers only to earlier boxes,
    so it has exactly one solution, the greedy loop's. Re-applying it to every box at once,
    starting from keep = alive, makes at least one more box final per round (after t
    rounds the first t are); random and real detections settle in 2-5 rounds.
    """
    suppress = suppress.to(torch.float32)  # a matrix product counts the kept suppressors
    keep = alive
    while True:
        # (G, 1, b) @ (G, b, b): how many kept earlier boxes overlap each box
        hits = torch.bmm(keep.to(torch.float32).unsqueeze(1), suppress).squeeze(1)  # (G, b)
        new_keep = alive & (hits == 0)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def greedy_nms_mask(boxes: Tensor, valid: Tensor, iou_threshold: float, labels: Tensor | None = None) -> Tensor:
    """Greedy NMS in G groups at once; `nms`, `batched_nms` and SSD's `multiclass_nms` all run on it.

    boxes (G, K, 4) "xyxy", each group sorted by decreasing score; valid (G, K) bool (False =
    padding: never kept, suppresses nothing); labels (G, K) int or None: boxes of different
    labels never suppress each other. Returns keep (G, K) bool, exactly what the
    one-box-at-a-time loop keeps: a box goes when its IoU with a kept earlier box of its
    group (and label) is > iou_threshold.

    No loop over boxes and no (K, K) IoU matrix: the boxes go through in blocks of NMS_BLOCK,
      1. a box that overlaps a box kept from an earlier block is removed: one (K', b) IoU
         per group against the K' boxes kept so far;
      2. the rest of the block is resolved among itself by `_greedy_in_block`.
    That is about K x K' IoU pairs, the loop's work, in K / NMS_BLOCK vectorised steps.
    Groups are taken in chunks so that no IoU table exceeds MAX_IOU_ENTRIES entries.
    """
    g, k = valid.shape
    per_chunk = max(1, MAX_IOU_ENTRIES // max(1, k * min(k, NMS_BLOCK)))
    if g > per_chunk:
        return torch.cat([greedy_nms_mask(boxes[i : i + per_chunk], valid[i : i + per_chunk], iou_threshold,
                                          None if labels is None else labels[i : i + per_chunk])
                          for i in range(0, g, per_chunk)])
    keep = torch.zeros_like(valid)
    if g == 0:
        return keep
    kept_boxes = boxes[:, :0]  # (G, K', 4) the boxes kept so far in each group
    kept_labels = labels[:, :0] if labels is not None else None  # (G, K')
    for start in range(0, k, NMS_BLOCK):
        block = slice(start, start + NMS_BLOCK)
        block_boxes = boxes[:, block]  # (G, b, 4)
        suppress = (box_iou_batched(block_boxes, block_boxes) > iou_threshold).triu_(diagonal=1)  # [g, j, i], j < i
        removed = box_iou_batched(kept_boxes, block_boxes) > iou_threshold  # (G, K', b)
        if labels is not None:
            block_labels = labels[:, block]  # (G, b)
            suppress &= block_labels[:, :, None] == block_labels[:, None, :]
            removed &= kept_labels[:, :, None] == block_labels[:, None, :]
        block_keep = _greedy_in_block(suppress, valid[:, block] & ~removed.any(dim=1))  # (G, b)
        keep[:, block] = block_keep
        # append each group's newly kept boxes, packed to the front: K' grows by the most any
        # group kept. A group that kept fewer is padded with NaN boxes: every comparison with
        # NaN is False, so padding removes nothing (and one group is never padded).
        count = int(block_keep.sum(dim=1).max())
        first = block_keep.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :count]  # (G, count)
        new_boxes = block_boxes.gather(1, first[..., None].expand(-1, -1, 4))
        new_boxes = new_boxes.masked_fill(~block_keep.gather(1, first)[..., None], float("nan"))
        kept_boxes = torch.cat([kept_boxes, new_boxes], dim=1)
        if labels is not None:
            kept_labels = torch.cat([kept_labels, block_labels.gather(1, first)], dim=1)
    return keep


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float, labels: Tensor | None) -> Tensor:
    """Shared body of `nms` and `batched_nms`: sort by score, one group, `greedy_nms_mask`."""
    order = scores.argsort(descending=True, stable=True)  # ties keep input order
    valid = torch.ones(1, len(order), dtype=torch.bool, device=boxes.device)
    sorted_labels = labels[order][None] if labels is not None else None
    keep = greedy_nms_mask(boxes[order][None], valid, iou_threshold, sorted_labels)[0]  # (N,)
    return order[keep]


def nms(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression on "xyxy" boxes (N, 4) with scores (N,).

    Returns int64 indices (K,) of kept boxes, sorted by decreasing score. A box is removed
    when its IoU with a kept higher-scoring box is > iou_threshold (as in torchvision).
    Costs about N x K IoU pairs (K kept) and O(K x 256) memory; see `greedy_nms_mask`.
    """
    return _nms(boxes_xyxy, scores, iou_threshold, labels=None)


def batched_nms(boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes (N, 4) "xyxy", scores (N,), labels (N,) int -> keep (K,) int64.

    Boxes of different labels never suppress each other; result sorted by decreasing score.
    torchvision gets this by shifting each class by label * (max_coordinate + 1) so that
    classes cannot overlap; since we compare boxes pair by pair anyway, we simply mask the
    pairs with different labels out, which is exact at any coordinate scale.
    """
    return _nms(boxes_xyxy, scores, iou_threshold, labels=labels)


# ----------------------------------------------------------------------------- shared by several rungs
# Post-processing and matching that more than one rung uses, written once: SSD's class-aware NMS
# (SSD300, FaceSSD, the fast.ai head), the windows' merge (sliding window, Viola-Jones), and the
# prior/anchor matching of the SSD family (with RetinaNet's own rule in models/retinanet.py).


def multiclass_nms(boxes: Tensor, scores: Tensor, min_score: float, nms_iou: float,
                   top_k: int, candidates: int | None = None) -> list[dict[str, Tensor]]:
    """Per-class score filter + per-class NMS + top_k, for a batch, all classes at once.

    boxes  (B, P, 4) "xyxy" (one box per prior, shared by the classes)
    scores (B, P, C) probabilities of the C object classes (no background column)
    Every (image, class) pair is a group: its boxes scoring >= min_score, best first.
    Only the best `candidates` of each group enter one padded NMS (`greedy_nms_mask`,
    all groups at once). The top_k boxes of an image are shared by its
    C classes, so the default is 4 * top_k / C (at most top_k): the IoU work grows with its
    square. A group cut short could still own a box of the final top_k if most of its
    candidates were suppressed; when that can happen the cut is doubled and NMS redone, so
    the result is always that of NMS on every candidate.
    returns per image {"boxes" (K, 4) "xyxy", "scores" (K,), "labels" (K,) 0-based},
    K <= top_k, sorted by decreasing score.
    """
    b, p, c = scores.shape
    group_scores = scores.transpose(1, 2).reshape(b * c, p)  # (G, P), group g = image * C + class
    passing = group_scores >= min_score
    num_pass = passing.sum(dim=1)  # (G,)
    most = int(num_pass.max()) if num_pass.numel() else 0
    if candidates is None:
        candidates = min(top_k, max(16, 4 * math.ceil(top_k / c)))
    cut = min(max(1, candidates), max(1, most))
    image = torch.arange(b, device=boxes.device).repeat_interleave(c)  # (G,) image of each group
    while True:
        ranked = group_scores.masked_fill(~passing, -1.0)
        cand_scores, cand_prior = ranked.topk(cut, dim=1)  # (G, cut) best first
        cand_valid = cand_scores >= min_score
        cand_boxes = boxes[image.unsqueeze(1), cand_prior]  # (G, cut, 4)
        keep = greedy_nms_mask(cand_boxes, cand_valid, nms_iou)

        kept_scores = cand_scores.masked_fill(~keep, -1.0).view(b, c * cut)  # (B, C*cut)
        if cut >= most:
            break
        # the best missing box of a cut group scores at most its last candidate's score
        cut_groups = (num_pass > cut).view(b, c)
        threshold = cand_scores[:, -1].view(b, c)
        num_better = (kept_scores.unsqueeze(1) > threshold.unsqueeze(2)).sum(dim=2)  # (B, C)
        if bool(((num_better >= top_k) | ~cut_groups).all()):
            break
        cut = min(2 * cut, most)

    best_scores, best = kept_scores.topk(min(top_k, c * cut), dim=1)  # (B, top_k)
    best_boxes = cand_boxes.view(b, c * cut, 4).gather(1, best.unsqueeze(-1).expand(-1, -1, 4))
    best_labels = best // cut  # position in (class, candidate) order -> 0-based class
    found = best_scores >= min_score
    return [
        {"boxes": best_boxes[i][found[i]], "scores": best_scores[i][found[i]],
         "labels": best_labels[i][found[i]]}
        for i in range(b)  # variable-length results: one dict per image
    ]


def suppress_nested(boxes: Tensor, groups: Tensor, max_contained: float) -> Tensor:
    """Drop boxes lying mostly inside a higher-scoring box of the same group.

    boxes: (K, 4) "xyxy", sorted by decreasing score; groups: (K,) int (the image index).
    Returns keep (K,) bool. A pair is "nested" when intersection / area of the smaller box
    >= max_contained. IoU misses this case: a 48-px window inside a 96-px one has IoU 0.25
    whatever their scores, so plain NMS keeps both; the seed asks for an NMS that
    "summarises boxes at very different resolutions". One vectorised pass: a box goes when
    ANY higher-scoring box contains it, even one that is itself dropped.
    """
    inter = box_intersection(boxes[:, None, :], boxes[None, :, :])                      # (K, K)
    area = box_area(boxes)                                                              # (K,)
    smaller = torch.minimum(area[:, None], area[None, :]).clamp(min=1e-12)
    higher = torch.ones_like(inter, dtype=torch.bool).triu(diagonal=1)                   # row i scores above column j
    nested = (inter / smaller >= max_contained) & higher & (groups[:, None] == groups[None, :])
    return ~nested.any(dim=0)


# A window covering at least this share of a smaller window's area "contains" it (suppress_nested)
MAX_CONTAINED = 0.8


def merge_windows(boxes: Tensor, scores: Tensor, min_score: float, nms_iou: float, top_k: int,
                  max_contained: float | None) -> list[dict[str, Tensor]]:
    """Scored windows of many sizes -> detections, one dict per image (the sliding window's and
    Viola-Jones' merge).

    boxes (B, n, 4) "xyxy", scores (B, n). Windows scoring >= min_score of all sizes compete in
    one NMS per image (the image index plays the class in batched_nms, so images never suppress
    each other); then windows nested in a better one are dropped (`suppress_nested`;
    max_contained=None skips it). Returns [{"boxes": (K, 4) "xyxy", "scores": (K,), "labels": (K,)
    zeros}] with K <= top_k, by decreasing score.
    """
    image_index, window_index = (scores >= min_score).nonzero(as_tuple=True)           # (P,), (P,)
    candidates = boxes[image_index, window_index]                                       # (P, 4)
    candidate_scores = scores[image_index, window_index]
    keep = batched_nms(candidates, candidate_scores, image_index, nms_iou)             # by decreasing score
    if max_contained is not None:
        keep = keep[suppress_nested(candidates[keep], image_index[keep], max_contained)]
    detections = []
    for b in range(scores.shape[0]):
        kept = keep[image_index[keep] == b][:top_k]
        detections.append({
            "boxes": candidates[kept],
            "scores": candidate_scores[kept],
            "labels": torch.zeros(len(kept), dtype=torch.int64, device=scores.device),  # 0 = face
        })
    return detections


def pad_targets(targets: Sequence[dict], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image targets into padded tensors so matching is one batched operation.

    targets: list of B dicts with "boxes" (n_i, 4) "xyxy" fractional and "labels" (n_i,)
    returns boxes (B, M, 4) "xyxy", labels (B, M) int64, valid (B, M) bool, M = max(1, max n_i)
    (padding rows are zeros with valid False; M >= 1 keeps shapes non-empty).
    """
    counts = [len(t["labels"]) for t in targets]
    m = max([1] + counts)
    boxes = torch.zeros(len(targets), m, 4, device=device)
    labels = torch.zeros(len(targets), m, dtype=torch.int64, device=device)
    valid = torch.zeros(len(targets), m, dtype=torch.bool, device=device)
    if sum(counts):
        # the (image, slot) of every box in the batch, so one scatter fills the padded
        # tensors: a fixed handful of operations instead of three copies per image
        per_image = torch.tensor(counts)
        image = torch.repeat_interleave(torch.arange(len(targets)), per_image)  # (n,)
        first = torch.cumsum(per_image, 0) - per_image  # (B,) index of each image's first box
        slot = torch.arange(len(image)) - first.repeat_interleave(per_image)  # (n,) 0, 1, .. within its image
        image, slot = image.to(device), slot.to(device)
        boxes[image, slot] = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device, torch.float32)
        labels[image, slot] = torch.cat([t["labels"].reshape(-1) for t in targets]).to(device, torch.int64)
        valid[image, slot] = True
    return boxes, labels, valid


def match_priors(gt_boxes: Tensor, gt_labels: Tensor, valid: Tensor, priors_xyxy: Tensor,
                 threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Assign every prior an object (or background), for a whole batch at once.

    gt_boxes (B, M, 4) "xyxy", gt_labels (B, M) 0-based, valid (B, M), priors_xyxy (P, 4).
    Rules (SSD paper): each prior takes the object it overlaps most; each object also
    takes its best prior whatever the overlap (so no object goes unmatched); priors whose
    overlap is below `threshold` are background.
    returns labels (B, P) int64 with 0 = background and object class c as c + 1,
            matched (B, P, 4) "xyxy" box of each prior's object (meaningful where labels > 0).
    """
    b, m, _ = gt_boxes.shape
    iou = box_iou(gt_boxes.reshape(b * m, 4), priors_xyxy).reshape(b, m, -1)  # (B, M, P)
    iou = iou.masked_fill(~valid.unsqueeze(-1), -1.0)  # padding never wins
    overlap, obj_for_prior = iou.max(dim=1)  # (B, P)
    prior_for_obj = iou.argmax(dim=2)  # (B, M)
    img, obj = valid.nonzero(as_tuple=True)
    pri = prior_for_obj[img, obj]
    obj_for_prior[img, pri] = obj
    overlap[img, pri] = 2.0  # above any threshold: forced matches stay positive
    labels = gt_labels.gather(1, obj_for_prior) + 1  # (B, P)
    labels[overlap < threshold] = 0
    matched = gt_boxes.gather(1, obj_for_prior.unsqueeze(-1).expand(-1, -1, 4))  # (B, P, 4)
    return labels, matched


def _neighbour_offsets(connectivity: int) -> list[tuple[int, int]]:
    if connectivity == 4:
        return [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        return [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


def label_components(mask: Tensor, connectivity: int = 8) -> tuple[Tensor, int]:
    """Connected components of a boolean mask (H, W).

    Returns (labels_map, K): labels_map (H, W) int64 with 0 = background and 1..K the
    components, numbered in raster order of their first (top-most, then left-most) cell.
    Method: every foreground cell starts with its own id, then repeatedly takes the largest
    id among itself and its neighbours (label propagation) and jumps to the id held by the
    cell its id points at (pointer jumping, to converge in far fewer steps), until nothing changes.
    """
    offsets = _neighbour_offsets(connectivity)
    mask = mask.bool()
    height, width = mask.shape
    n = height * width
    # id = n - raster index, so the largest id in a component belongs to its first cell
    ids = (n - torch.arange(n, device=mask.device)).view(height, width)
    ids = torch.where(mask, ids, 0)
    while True:
        padded = F.pad(ids, (1, 1, 1, 1))  # (H+2, W+2), zero border = background
        neighbours = [padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in offsets]
        new = torch.where(mask, torch.stack([ids, *neighbours]).amax(dim=0), 0)
        flat = new.flatten()
        new = torch.where(mask, flat[(n - new).clamp(max=n - 1)], 0)  # pointer jump
        if torch.equal(new, ids):
            break
        ids = new
    # converged: each component holds the id of its first cell; renumber 1..K in that order
    first_cell = torch.where(mask, n - ids, n)  # background -> n, sorts last
    uniques, inverse = torch.unique(first_cell, return_inverse=True)
    labels_map = torch.where(mask, inverse + 1, 0)
    num = len(uniques) - int(bool((~mask).any()))
    return labels_map, num


def component_boxes(labels_map: Tensor, num: int) -> Tensor:
    """Bounding boxes (K, 4) float32 "xyxy" in cell units of components 1..K of labels_map (H, W).

    x1 = min column, y1 = min row, x2 = max column + 1, y2 = max row + 1, so a single cell
    at (row r, column c) gives [c, r, c + 1, r + 1]. Row k is component k + 1.
    """
    rows, cols = torch.nonzero(labels_map, as_tuple=True)
    index = labels_map[rows, cols] - 1  # (n_foreground,) component of each cell
    big = max(labels_map.shape)
    x1 = torch.full((num,), big, dtype=torch.int64, device=labels_map.device).scatter_reduce(0, index, cols, "amin")
    y1 = torch.full((num,), big, dtype=torch.int64, device=labels_map.device).scatter_reduce(0, index, rows, "amin")
    x2 = torch.full((num,), -1, dtype=torch.int64, device=labels_map.device).scatter_reduce(0, index, cols, "amax")
    y2 = torch.full((num,), -1, dtype=torch.int64, device=labels_map.device).scatter_reduce(0, index, rows, "amax")
    return torch.stack((x1, y1, x2 + 1, y2 + 1), dim=-1).float()


def connected_components(mask: Tensor, connectivity: int = 8) -> Tensor:
    """Bounding boxes (K, 4) float32 "xyxy" in cell units of the components of mask (H, W).

    `label_components`, then `component_boxes`: row k is component k + 1.
    """
    return component_boxes(*label_components(mask, connectivity))
