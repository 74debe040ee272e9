"""Box toolkit: small pure tensor functions shared by every detector.

Formats are always named: "xyxy" (x_min, y_min, x_max, y_max), "cxcywh" (centre, size)
and "xywh" (top-left corner, size). Boxes are float tensors (..., 4); a function that
pairs boxes up (IoU, NMS) takes two-dimensional (N, 4) tensors. Coordinates may be
fractional ([0, 1] of the image) or pixels; `to_absolute` and `to_fractional` convert.

Toy example to check by hand: two 2x2 squares side by side, overlapping by one column,
    box_iou(tensor([[0., 0, 2, 2]]), tensor([[1., 0, 3, 2]]))  ->  [[1/3]]
(intersection 1x2 = 2, union 4 + 4 - 2 = 6).
"""

from __future__ import annotations

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


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: "xyxy" (N, 4) and (M, 4) -> (N, M).

    Pairs whose union is empty (two zero-area boxes) get IoU 0, never NaN.
    """
    # one (N, M) plane per coordinate: faster than (N, M, 2) slices for large N
    a, b = boxes1[:, None, :], boxes2[None, :, :]  # (N, 1, 4), (1, M, 4)
    inter_w = (torch.min(a[..., 2], b[..., 2]) - torch.max(a[..., 0], b[..., 0])).clamp(min=0)  # (N, M)
    inter_h = (torch.min(a[..., 3], b[..., 3]) - torch.max(a[..., 1], b[..., 1])).clamp(min=0)  # (N, M)
    inter = inter_w * inter_h
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    # union == 0 implies inter == 0, so 0 / tiny = 0; a tiny floor also keeps gradients finite
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


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


# Greedy NMS visits boxes in score order, this many at a time: enough that the Python step
# per block is rare (40 steps for 10,000 boxes), few enough that a block's own (b, b) IoU
# matrix and its fixed-point rounds stay cheap. 128-256 measured fastest at 1k-10k boxes.
NMS_BLOCK = 256


def _overlaps(boxes1: Tensor, boxes2: Tensor, iou_threshold: float) -> Tensor:
    """box_iou(boxes1, boxes2) > iou_threshold: (N, 4), (M, 4) "xyxy" -> (N, M) bool.

    box_iou's arithmetic step for step, so the same bits, but in place: NMS needs no
    gradients, and reusing two (N, M) buffers instead of a dozen makes it ~3x faster.
    """
    x1, y1, x2, y2 = (c[:, None] for c in boxes1.unbind(-1))  # (N, 1) each
    u1, v1, u2, v2 = (c[None, :] for c in boxes2.unbind(-1))  # (1, M) each
    inter = torch.min(x2, u2).sub_(torch.max(x1, u1)).clamp_(min=0)  # width, then the intersection
    inter.mul_(torch.min(y2, v2).sub_(torch.max(y1, v1)).clamp_(min=0))
    union = (box_area(boxes1)[:, None] + box_area(boxes2)[None, :]).sub_(inter)
    return inter.div_(union.clamp_(min=torch.finfo(union.dtype).tiny)) > iou_threshold


def _greedy_in_block(suppress: Tensor, alive: Tensor) -> Tensor:
    """Greedy NMS inside one block: suppress (b, b) bool, [j, i] = earlier box j would remove
    box i (j < i only); alive (b,) bool = not removed by earlier blocks -> keep (b,) bool.

    The rule keep[i] = alive[i] and no kept j < i suppresses i refers only to earlier boxes,
    so it has exactly one solution, the greedy loop's. Re-applying it to every box at once,
    starting from keep = alive, makes at least one more box final per round (after t
    rounds the first t are); random and real detections settle in 2-5 rounds.
    """
    suppress = suppress.to(torch.float32)  # a matrix product counts the kept suppressors
    keep = alive
    while True:
        new_keep = alive & ((keep.to(torch.float32) @ suppress) == 0)  # (b,)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def _greedy_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, labels: Tensor | None) -> Tensor:
    """Shared body of `nms` and `batched_nms`; labels=None means one class.

    Exactly the greedy loop's answer, without its loop over boxes and without an (N, N)
    IoU matrix. Sorted by score, the boxes go through in blocks of NMS_BLOCK:
      1. a box that overlaps a box kept from an earlier block is removed: one (K, b) IoU
         against the K boxes kept so far;
      2. the rest of the block is resolved among itself by `_greedy_in_block`.
    That is about N x K IoU pairs, the work of the one-box-at-a-time algorithm, done in
    N / NMS_BLOCK vectorised steps, with O(K x NMS_BLOCK) memory.
    """
    order = scores.argsort(descending=True, stable=True)  # ties keep input order
    sorted_boxes = boxes[order]
    sorted_labels = labels[order] if labels is not None else None
    keep = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    kept_boxes, kept_labels = sorted_boxes[:0], (sorted_labels[:0] if labels is not None else None)
    for start in range(0, len(order), NMS_BLOCK):
        block = sorted_boxes[start : start + NMS_BLOCK]  # (b, 4)
        suppress = _overlaps(block, block, iou_threshold).triu_(diagonal=1)  # (b, b) [j, i], j < i
        removed = _overlaps(kept_boxes, block, iou_threshold)  # (K, b)
        if labels is not None:  # boxes of different labels never suppress each other
            block_labels = sorted_labels[start : start + NMS_BLOCK]
            suppress &= block_labels[:, None] == block_labels[None, :]
            removed &= kept_labels[:, None] == block_labels[None, :]
        block_keep = _greedy_in_block(suppress, ~removed.any(dim=0))
        keep[start : start + NMS_BLOCK] = block_keep
        kept_boxes = torch.cat([kept_boxes, block[block_keep]])
        if labels is not None:
            kept_labels = torch.cat([kept_labels, block_labels[block_keep]])
    return order[keep]


def nms(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression on "xyxy" boxes (N, 4) with scores (N,).

    Returns int64 indices (K,) of kept boxes, sorted by decreasing score. A box is removed
    when its IoU with a kept higher-scoring box is > iou_threshold (as in torchvision).
    Costs about N x K IoU pairs (K kept) and O(K x 256) memory; see `_greedy_nms`.
    """
    return _greedy_nms(boxes_xyxy, scores, iou_threshold, labels=None)


def batched_nms(boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes (N, 4) "xyxy", scores (N,), labels (N,) int -> keep (K,) int64.

    Boxes of different labels never suppress each other; result sorted by decreasing score.
    torchvision gets this by shifting each class by label * (max_coordinate + 1) so that
    classes cannot overlap; since we compare boxes pair by pair anyway, we simply mask the
    pairs with different labels out, which is exact at any coordinate scale.
    """
    return _greedy_nms(boxes_xyxy, scores, iou_threshold, labels=labels)


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


def connected_components(mask: Tensor, connectivity: int = 8) -> Tensor:
    """Bounding boxes (K, 4) float32 "xyxy" in cell units of the components of mask (H, W).

    x1 = min column, y1 = min row, x2 = max column + 1, y2 = max row + 1, so a single cell
    at (row r, column c) gives [c, r, c + 1, r + 1]. Row k is component k + 1 of `label_components`.
    """
    labels_map, num = label_components(mask, connectivity)
    rows, cols = torch.nonzero(labels_map, as_tuple=True)
    index = labels_map[rows, cols] - 1  # (n_foreground,) component of each cell
    big = max(mask.shape)
    x1 = torch.full((num,), big, dtype=torch.int64, device=mask.device).scatter_reduce(0, index, cols, "amin")
    y1 = torch.full((num,), big, dtype=torch.int64, device=mask.device).scatter_reduce(0, index, rows, "amin")
    x2 = torch.full((num,), -1, dtype=torch.int64, device=mask.device).scatter_reduce(0, index, cols, "amax")
    y2 = torch.full((num,), -1, dtype=torch.int64, device=mask.device).scatter_reduce(0, index, rows, "amax")
    return torch.stack((x1, y1, x2 + 1, y2 + 1), dim=-1).float()
