"""Detection and classification metrics: VOC AP, COCO AP, recall at N false positives, ROC AUC.

Read top to bottom:
1. reading the inputs, overlaps, and the greedy matcher that labels every detection TP, FP or ignored;
2. precision-recall curves and the ways of turning one into a single AP number;
3. `evaluate_detections`, which runs the VOC and the COCO protocol and returns an `EvalResult`;
4. `evaluate_classification` for the face / non-face classifier rung.

Input format, one entry per image, both lists in the same image order:
    detections[i]    = {"boxes": (K, 4) "xyxy", "scores": (K,), "labels": (K,) int64 0-based}
    ground_truths[i] = {"boxes": (N, 4) "xyxy", "labels": (N,) int64 0-based,
                        "difficult": (N,) bool (optional, default all False)}
Boxes may be in any unit (pixels, or fractions of the image) as long as the detections and the
ground truth share it: IoU does not depend on the unit. Tensors, numpy arrays and lists all work.

Toy example to check by hand: one image, 2 faces, 3 detections which in decreasing score order
are TP, FP, TP:
    cumulative TP 1 1 2, FP 0 1 1  ->  precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    all-point AP         = 1/2 * 1 + 1/2 * 2/3                      = 0.833
    VOC07 11-point AP    = (6 levels 0..0.5 at 1 + 5 levels 0.6..1 at 2/3) / 11 = 0.848
    COCO 101-point AP    = (51 levels 0..0.5 at 1 + 50 levels at 2/3) / 101     = 0.835
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facedet.boxes import box_area, elementwise_box_ioa, elementwise_box_iou
from facedet.errors import DataError

# How a VOC detection is matched (see `_match`): facedet's greedy rule, or the VOC devkit's.
VOC_RULES = ("greedy", "devkit")

# Status the matcher gives each detection.
FP, TP, IGNORED = 0, 1, -1

# Recall levels at which interpolated precision is read, and COCO's IoU thresholds, built exactly
# as the reference code builds them (float rounding included: the 4th VOC07 level is
# 0.30000000000000004), so a recall of exactly 0.3 falls on the same side of a level as there.
VOC07_RECALL_LEVELS = np.arange(0.0, 1.1, 0.1)  # 11 levels, VOC2007 devkit
COCO_RECALL_LEVELS = np.linspace(0.0, 1.0, 101)  # 101 levels, pycocotools
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50, 0.55, ..., 0.95
COCO_MAX_DETS = 100  # detections kept per image and class (pycocotools' maxDets[-1])


# ----------------------------------------------------------------------------- inputs


@dataclass
class _Flat:
    """Every image's boxes concatenated; `*_image` holds the index of the image each row came from."""

    pred_boxes: Tensor  # (P, 4) float64 "xyxy"
    pred_scores: Tensor  # (P,) float64
    pred_labels: Tensor  # (P,) int64
    pred_image: Tensor  # (P,) int64
    gt_boxes: Tensor  # (G, 4) float64 "xyxy"
    gt_labels: Tensor  # (G,) int64
    gt_difficult: Tensor  # (G,) bool
    gt_image: Tensor  # (G,) int64
    num_images: int


def _read(item: Mapping, index: int, kind: str, num_classes: int) -> dict[str, Tensor]:
    """One image's dict as CPU tensors: boxes (N, 4) float64, labels (N,) int64, scores or difficult (N,)."""
    required = ("boxes", "scores", "labels") if kind == "detections" else ("boxes", "labels")
    for key in required:
        if key not in item:
            raise DataError(f"{kind}[{index}] has no '{key}'; expected keys {', '.join(required)}")
    boxes = torch.as_tensor(item["boxes"]).detach().to("cpu", torch.float64)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{kind}[{index}]['boxes'] has shape {tuple(boxes.shape)}; expected (N, 4) \"xyxy\"")
    n = len(boxes)
    out = {"boxes": boxes, "labels": torch.as_tensor(item["labels"]).detach().to("cpu", torch.int64).reshape(-1)}
    if kind == "detections":
        out["scores"] = torch.as_tensor(item["scores"]).detach().to("cpu", torch.float64).reshape(-1)
    else:
        difficult = item.get("difficult")
        difficult = torch.zeros(n, dtype=torch.bool) if difficult is None else torch.as_tensor(difficult)
        out["difficult"] = difficult.detach().to("cpu", torch.bool).reshape(-1)
    for key, value in out.items():
        if len(value) != n:
            raise DataError(f"{kind}[{index}]['{key}'] has {len(value)} values for {n} boxes")
    labels = out["labels"]
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise DataError(f"{kind}[{index}]['labels'] holds {int(bad[0])}; expected 0..{num_classes - 1} "
                        f"({num_classes} class names)")
    return out


def _flatten(detections: Sequence[Mapping], ground_truths: Sequence[Mapping], num_classes: int) -> _Flat:
    """Concatenate the per-image dicts into one `_Flat` (the Python loop only gathers data)."""
    if len(detections) != len(ground_truths):
        raise DataError(f"{len(detections)} detection dicts for {len(ground_truths)} ground-truth dicts; "
                        "expected one of each per image")
    preds = [_read(d, i, "detections", num_classes) for i, d in enumerate(detections)]
    truths = [_read(g, i, "ground_truths", num_classes) for i, g in enumerate(ground_truths)]

    def cat(parts: list[dict[str, Tensor]], key: str, empty: Tensor) -> Tensor:
        return torch.cat([p[key] for p in parts]) if parts else empty

    def image_index(parts: list[dict[str, Tensor]]) -> Tensor:
        counts = torch.tensor([len(p["boxes"]) for p in parts], dtype=torch.int64)
        return torch.repeat_interleave(torch.arange(len(parts)), counts)

    boxes0, float0 = torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    long0, bool0 = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool)
    return _Flat(
        pred_boxes=cat(preds, "boxes", boxes0), pred_scores=cat(preds, "scores", float0),
        pred_labels=cat(preds, "labels", long0), pred_image=image_index(preds),
        gt_boxes=cat(truths, "boxes", boxes0), gt_labels=cat(truths, "labels", long0),
        gt_difficult=cat(truths, "difficult", bool0), gt_image=image_index(truths),
        num_images=len(detections),
    )


def _sort_within_groups(groups: Tensor, scores: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Order rows by group, and by decreasing score inside a group.

    groups (N,) int64; scores (N,) or None to keep the input order inside each group.
    Returns order (N,), indices of the rows in sorted order, and rank (N,), the position of each
    sorted row inside its group (0 = best score). Both sorts are stable, so equal scores keep
    their input order, as pycocotools' mergesort does.
    """
    order = torch.arange(len(groups))
    if scores is not None:
        order = torch.sort(scores, descending=True, stable=True).indices
    order = order[torch.sort(groups[order], stable=True).indices]
    sorted_groups = groups[order]
    first = torch.searchsorted(sorted_groups, sorted_groups)  # where each row's group starts
    return order, torch.arange(len(groups)) - first


def _pad(values: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int], fill: float | bool) -> Tensor:
    """Scatter values (N, ...) into a new (*shape, ...) tensor at [rows, cols]; the rest is `fill`."""
    out = values.new_full((*shape, *values.shape[1:]), fill)
    out[rows, cols] = values
    return out


# ----------------------------------------------------------------------------- matching


def _overlaps(boxes: Tensor, gt_boxes: Tensor, crowd: Tensor) -> Tensor:
    """Overlap of one box per image with each ground truth of that image.

    boxes (I, 4) "xyxy"; gt_boxes (I, G, 4) "xyxy"; crowd (I, G) bool. Returns (I, G):
    IoU, except against crowd regions, where it is intersection / area(box) (COCO's iscrowd
    rule: a box lying wholly inside a crowd region scores 1). Each image's box meets only its
    own image's ground truth, so this is the elementwise form, broadcast over the G boxes.
    """
    box = boxes[:, None, :]  # (I, 1, 4)
    return torch.where(crowd, elementwise_box_ioa(box, gt_boxes), elementwise_box_iou(box, gt_boxes))


def _match(flat: _Flat, keep: Tensor, iou_thresholds: Tensor, coco: bool, devkit: bool = False) -> Tensor:
    """Label each kept detection TP, FP or IGNORED at every IoU threshold.

    Greedy matching, as in both VOC and COCO: detections are taken in decreasing score order and
    each one claims the still-unclaimed ground truth of its class with the highest overlap >= the
    threshold (TP). A detection that finds none is a FP; so is a duplicate, since the box it
    overlaps is already claimed. Difficult ground truth is an ignore region: it never counts as a
    positive, a detection that lands on it is IGNORED (neither TP nor FP), and it can absorb any
    number of detections.
      VOC  (coco=False): overlap = IoU throughout; the best candidate wins, difficult or not.
      VOC devkit (coco=False, devkit=True): the rule of the PASCAL VOC devkit's VOCevaldet.m, which
           published VOC numbers (SSD300's 77.2 mAP) use: a detection looks only at the single
           ground truth of its class it overlaps most, and is a TP when that IoU is strictly
           above the threshold and the box is still unclaimed, IGNORED when it is difficult, and a
           duplicate FP when it is claimed - even if another unclaimed box clears the threshold.
      COCO (coco=True):  difficult is iscrowd=1: overlap = intersection / area(detection), and a
           normal ground truth clearing the threshold is preferred to any ignore region.
    Which image a detection lies in matters, its rank among other images' detections does not,
    so the loop runs over rank-within-image (at most the largest detection count of one image)
    and handles all images, classes (by a label mask) and IoU thresholds at once.

    keep (P,) bool selects the detections to match; iou_thresholds (T,) float64.
    Returns status (T, P) int8 of TP / FP / IGNORED (rows not kept read FP and mean nothing).
    """
    num_images, num_thresholds = flat.num_images, len(iou_thresholds)
    status = torch.full((num_thresholds, len(keep)), FP, dtype=torch.int8)
    kept = keep.nonzero().squeeze(1)
    if len(kept) == 0 or len(flat.gt_boxes) == 0:  # no ground truth: every detection is a FP
        return status
    order, rank = _sort_within_groups(flat.pred_image[kept], flat.pred_scores[kept])
    kept = kept[order]  # grouped by image, best score first
    rows = flat.pred_image[kept]
    shape = (num_images, int(rank.max()) + 1)  # (I, D)
    pred_boxes = _pad(flat.pred_boxes[kept], rows, rank, shape, 0.0)  # (I, D, 4)
    pred_labels = _pad(flat.pred_labels[kept], rows, rank, shape, -1)  # (I, D), -1 = padding

    gt_order, gt_rank = _sort_within_groups(flat.gt_image)
    gt_rows = flat.gt_image[gt_order]
    gt_shape = (num_images, int(gt_rank.max()) + 1)  # (I, G)
    gt_boxes = _pad(flat.gt_boxes[gt_order], gt_rows, gt_rank, gt_shape, 0.0)  # (I, G, 4)
    gt_labels = _pad(flat.gt_labels[gt_order], gt_rows, gt_rank, gt_shape, -2)  # -2 never equals a pred label
    gt_ignore = _pad(flat.gt_difficult[gt_order], gt_rows, gt_rank, gt_shape, False)  # (I, G)
    crowd = gt_ignore if coco else torch.zeros_like(gt_ignore)
    # COCO: adding 2 (more than any overlap) ranks every normal candidate above every ignore region
    preference = 2.0 * (~gt_ignore) if coco else torch.zeros(gt_shape, dtype=torch.float64)
    thresholds = iou_thresholds.view(-1, 1, 1)  # (T, 1, 1)

    # (T, I, G) claimed ground truth; ignore regions are never marked, so they can absorb any number
    taken = torch.zeros(num_thresholds, *gt_shape, dtype=torch.bool)
    padded = torch.full((num_thresholds, *shape), FP, dtype=torch.int8)  # (T, I, D)
    for r in range(shape[1]):
        overlap = _overlaps(pred_boxes[:, r], gt_boxes, crowd)  # (I, G)
        same_class = gt_labels == pred_labels[:, r, None]  # (I, G)
        if devkit:
            best_overlap, best_gt = torch.where(same_class, overlap, -1.0).max(-1)  # (I,)
            found = best_overlap > thresholds[..., 0]  # (T, I): strictly above, as the devkit
            on_ignore = gt_ignore.gather(-1, best_gt[:, None])[:, 0].expand(num_thresholds, -1)  # (T, I)
            claimed = taken.gather(-1, best_gt[None, :, None].expand(num_thresholds, -1, 1))[..., 0]  # (T, I)
            padded[:, :, r] = torch.where(found, torch.where(on_ignore, IGNORED, torch.where(claimed, FP, TP)),
                                          FP).to(torch.int8)
            taken |= F.one_hot(best_gt, gt_shape[1]).bool() & (found & ~on_ignore & ~claimed)[..., None]
            continue
        candidate = same_class & (overlap >= thresholds) & ~taken  # (T, I, G)
        best = torch.where(candidate, overlap + preference, -1.0).argmax(-1)  # (T, I)
        found = candidate.any(-1)  # (T, I)
        on_ignore = gt_ignore.expand(num_thresholds, -1, -1).gather(-1, best[..., None])[..., 0]  # (T, I)
        padded[:, :, r] = torch.where(found, torch.where(on_ignore, IGNORED, TP), FP).to(torch.int8)
        taken |= F.one_hot(best, gt_shape[1]).bool() & (found & ~on_ignore)[..., None]
    status[:, kept] = padded[:, rows, rank]
    return status


# ----------------------------------------------------------------------------- curves and AP


def _cumulative_counts(
    flat: _Flat, keep: Tensor, status: Tensor, num_classes: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Running TP and FP counts per class down all images' detections in decreasing score order.

    status (T, P) from `_match`. Classes are padded to a common length L with IGNORED entries,
    which leave both counts unchanged. Returns tp, fp (T, C, L) float64, and counted (T, C, L)
    bool marking real TP or FP entries (for plotting).
    """
    kept = keep.nonzero().squeeze(1)
    order, rank = _sort_within_groups(flat.pred_labels[kept], flat.pred_scores[kept])
    kept = kept[order]
    length = int(rank.max()) + 1 if len(kept) else 0
    per_class = torch.full((len(status), num_classes, length), IGNORED, dtype=torch.int8)  # (T, C, L)
    per_class[:, flat.pred_labels[kept], rank] = status[:, kept]
    tp = (per_class == TP).cumsum(-1, dtype=torch.float64)
    fp = (per_class == FP).cumsum(-1, dtype=torch.float64)
    return tp, fp, per_class != IGNORED


def _precision_recall(tp: Tensor, fp: Tensor, num_pos: Tensor) -> tuple[Tensor, Tensor]:
    """Precision and recall (T, C, L) from cumulative counts (T, C, L) and positives per class (C,).

    Precision is 0 before the first TP or FP; recall of a class without positives is 0 here
    (its AP is set to NaN by the caller).
    """
    precision = tp / (tp + fp).clamp(min=1)
    recall = tp / num_pos.clamp(min=1).to(torch.float64)[:, None]
    return precision, recall


def precision_envelope(precision: Tensor) -> Tensor:
    """Monotone envelope of precision (..., L) along decreasing score: at each point the best
    precision at this or any later (higher-recall) point. Example: [1, .5, .67] -> [1, .67, .67]."""
    return precision.flip(-1).cummax(-1).values.flip(-1)


def interpolated_precision(precision: Tensor, recall: Tensor, levels: Tensor | np.ndarray) -> Tensor:
    """Envelope precision read at recall levels (R,) for curves (..., L) -> (..., R).

    At level r it is the best precision over points with recall >= r, and 0 when the curve
    never reaches r. Recall must be non-decreasing along L (it is, in score order).
    """
    levels = torch.as_tensor(levels, dtype=torch.float64)
    length = recall.shape[-1]
    if length == 0:
        return torch.zeros(*recall.shape[:-1], len(levels), dtype=torch.float64)
    wanted = levels.expand(*recall.shape[:-1], len(levels)).contiguous()
    index = torch.searchsorted(recall.contiguous(), wanted)  # first point with recall >= level
    values = precision_envelope(precision).gather(-1, index.clamp(max=length - 1))
    return torch.where(index < length, values, 0.0)


def average_precision(
    precision: Tensor | np.ndarray, recall: Tensor | np.ndarray, use_07_metric: bool = False
) -> Tensor:
    """AP of precision-recall curves (..., L) ordered by decreasing score -> (...) float64.

    use_07_metric=False: all-point AP (VOC2010 and later), the area under the precision envelope:
        sum over points of (recall step) x (envelope precision there).
    use_07_metric=True: VOC2007 11-point AP, mean envelope precision at recall 0, 0.1, ..., 1.
    An empty curve (no detections) has AP 0.
    """
    precision = torch.as_tensor(precision, dtype=torch.float64)
    recall = torch.as_tensor(recall, dtype=torch.float64)
    if use_07_metric:
        return interpolated_precision(precision, recall, VOC07_RECALL_LEVELS).mean(-1)
    steps = torch.diff(recall, dim=-1, prepend=torch.zeros_like(recall[..., :1]))
    return (steps * precision_envelope(precision)).sum(-1)


def _recall_at_fp(tp: Tensor, fp: Tensor, num_pos: Tensor, max_fp: int) -> Tensor:
    """Recall (C,) reached before the (max_fp + 1)-th false positive; tp, fp (C, L) cumulative."""
    if tp.shape[-1] == 0:
        return torch.zeros(len(num_pos), dtype=torch.float64)
    best_tp = torch.where(fp <= max_fp, tp, 0.0).amax(-1)  # tp only grows, so this is the last allowed point
    return best_tp / num_pos.clamp(min=1)


def _top_k_per_image_class(flat: _Flat, num_classes: int, k: int) -> Tensor:
    """keep (P,) bool: the k best-scoring detections of each (image, class) pair."""
    order, rank = _sort_within_groups(flat.pred_image * num_classes + flat.pred_labels, flat.pred_scores)
    keep = torch.zeros(len(rank), dtype=torch.bool)
    keep[order] = rank < k
    return keep


# ----------------------------------------------------------------------------- evaluate_detections


@dataclass
class EvalResult:
    """Everything `evaluate_detections` measured.

    Per-class arrays follow `class_names`. A class with no non-difficult ground truth has NaN
    AP and recall, and is left out of every mean.
    """

    class_names: list[str]
    iou_thresholds: tuple[float, ...]  # VOC IoU thresholds, T of them
    use_07_metric: bool  # which VOC AP `mAP` reports
    max_fp: int
    num_gt: np.ndarray  # (C,) int, non-difficult ground-truth boxes
    num_det: np.ndarray  # (C,) int, detections
    ap: np.ndarray  # (T, C) VOC all-point AP at each IoU threshold
    ap07: np.ndarray  # (T, C) VOC2007 11-point AP
    coco_ap: np.ndarray  # (C,) COCO AP@[.5:.95]: 101 recall levels, 10 IoU thresholds, 100 dets per image
    coco_ap50: np.ndarray  # (C,) the same at IoU 0.5 only
    coco_ap75: np.ndarray  # (C,) the same at IoU 0.75 only
    recall_at_fp: np.ndarray  # (C,) recall before the (max_fp + 1)-th false positive, IoU iou_thresholds[0]
    curves: list[dict[str, tuple[np.ndarray, np.ndarray]]]  # per threshold: class -> (precision, recall)

    @property
    def mAP(self) -> float:
        """Headline: mean VOC AP over classes at iou_thresholds[0], 11-point if use_07_metric."""
        return _mean((self.ap07 if self.use_07_metric else self.ap)[0])

    def pr_curves(self, iou_threshold: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Class name -> (precision, recall) arrays (K,) in decreasing score order, at one of the
        VOC IoU thresholds (default the first); classes without positives are left out."""
        index = 0 if iou_threshold is None else self.iou_thresholds.index(iou_threshold)
        return dict(self.curves[index])

    def as_dict(self) -> dict[str, float]:
        """Flat metrics for CSV logging, e.g. mAP, mAP50, mAP50_07, AP_coco, recall@50FP, AP50/face."""
        out = {"mAP": self.mAP}
        for t, threshold in enumerate(self.iou_thresholds):
            tag = _tag(threshold)
            out[f"mAP{tag}"] = _mean(self.ap[t])
            out[f"mAP{tag}_07"] = _mean(self.ap07[t])
        out["AP_coco"] = _mean(self.coco_ap)
        out["AP50_coco"] = _mean(self.coco_ap50)
        out["AP75_coco"] = _mean(self.coco_ap75)
        out[f"recall@{self.max_fp}FP"] = _mean(self.recall_at_fp)
        tag = _tag(self.iou_thresholds[0])
        for c, name in enumerate(self.class_names):
            out[f"AP{tag}/{name}"] = float(self.ap[0, c])
            out[f"AP{tag}_07/{name}"] = float(self.ap07[0, c])
        return out


def _tag(threshold: float) -> str:
    return str(int(round(threshold * 100)))  # 0.5 -> "50"


def _mean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN when there are none (without numpy's warning)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def evaluate_detections(
    detections: Sequence[Mapping],
    ground_truths: Sequence[Mapping],
    class_names: Sequence[str],
    iou_thresholds: Sequence[float] = (0.5,),
    use_07_metric: bool = False,
    max_fp: int = 50,
    voc_rule: str = "greedy",
) -> EvalResult:
    """Score detections against ground truth with the VOC and the COCO protocol.

    detections[i] = {"boxes": (K, 4) "xyxy", "scores": (K,), "labels": (K,)} and
    ground_truths[i] = {"boxes": (N, 4) "xyxy", "labels": (N,), "difficult": (N,) optional},
    one per image, boxes of an image in one shared unit (pixels or fractions).
    VOC: every detection, greedy matching at each of `iou_thresholds`, AP all-point and 11-point,
    and recall at `max_fp` false positives (per class, all images pooled, first threshold).
    COCO: top 100 detections per image and class, IoU 0.50:0.05:0.95, 101-point AP, area "all";
    difficult boxes act as iscrowd=1 regions (see `_match`).
    voc_rule: "greedy" (a detection claims the best unclaimed box at IoU >= threshold) or
    "devkit" (the PASCAL VOC devkit's rule, as published VOC results; see `_match`).
    """
    if voc_rule not in VOC_RULES:
        raise DataError(f"voc_rule={voc_rule!r}; expected one of {', '.join(VOC_RULES)}")
    num_classes = len(class_names)
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not thresholds or not all(0.0 < t <= 1.0 for t in thresholds):
        raise DataError(f"iou_thresholds={thresholds}; expected one or more values in (0, 1]")
    if max_fp < 0:
        raise DataError(f"max_fp={max_fp}; expected a count >= 0")
    flat = _flatten(detections, ground_truths, num_classes)
    num_pos = torch.bincount(flat.gt_labels[~flat.gt_difficult], minlength=num_classes)  # (C,)
    no_pos = (num_pos == 0).numpy()

    # VOC
    keep = torch.ones(len(flat.pred_scores), dtype=torch.bool)
    status = _match(flat, keep, torch.tensor(thresholds, dtype=torch.float64), coco=False,
                    devkit=voc_rule == "devkit")
    tp, fp, counted = _cumulative_counts(flat, keep, status, num_classes)  # (T, C, L)
    precision, recall = _precision_recall(tp, fp, num_pos)
    ap = average_precision(precision, recall).numpy()  # (T, C)
    ap07 = average_precision(precision, recall, use_07_metric=True).numpy()
    recall_at_fp = _recall_at_fp(tp[0], fp[0], num_pos, max_fp).numpy()
    ap[:, no_pos], ap07[:, no_pos], recall_at_fp[no_pos] = math.nan, math.nan, math.nan
    curves = [
        {name: (precision[t, c][counted[t, c]].numpy(), recall[t, c][counted[t, c]].numpy())
         for c, name in enumerate(class_names) if not no_pos[c]}
        for t in range(len(thresholds))
    ]

    # COCO
    keep = _top_k_per_image_class(flat, num_classes, COCO_MAX_DETS)
    status = _match(flat, keep, torch.from_numpy(COCO_IOU_THRESHOLDS), coco=True)
    tp, fp, _ = _cumulative_counts(flat, keep, status, num_classes)  # (10, C, L)
    precision, recall = _precision_recall(tp, fp, num_pos)
    sampled = interpolated_precision(precision, recall, COCO_RECALL_LEVELS).numpy()  # (10, C, 101)
    sampled[:, no_pos] = math.nan
    index75 = int(np.argmin(np.abs(COCO_IOU_THRESHOLDS - 0.75)))

    return EvalResult(
        class_names=list(class_names), iou_thresholds=thresholds, use_07_metric=use_07_metric, max_fp=max_fp,
        num_gt=num_pos.numpy(), num_det=torch.bincount(flat.pred_labels, minlength=num_classes).numpy(),
        ap=ap, ap07=ap07, coco_ap=sampled.mean(axis=(0, 2)), coco_ap50=sampled[0].mean(-1),
        coco_ap75=sampled[index75].mean(-1), recall_at_fp=recall_at_fp, curves=curves,
    )


def format_table(result: EvalResult) -> str:
    """Per-class table of the metrics in `result`, one row per class plus the mean over classes."""
    columns: dict[str, np.ndarray] = {}  # column title -> per-class values (C,)
    for t, threshold in enumerate(result.iou_thresholds):
        columns[f"AP{_tag(threshold)}"] = result.ap[t]
        columns[f"AP{_tag(threshold)}_07"] = result.ap07[t]
    columns |= {"AP_coco": result.coco_ap, "AP50_coco": result.coco_ap50, "AP75_coco": result.coco_ap75,
                f"R@{result.max_fp}FP": result.recall_at_fp}
    width = max(len("class"), *(len(name) for name in result.class_names))

    def line(name: str, num_gt: int, num_det: int, values: list[float]) -> str:
        cells = [f"{'-' if math.isnan(v) else f'{v:.3f}':>{max(len(title), 6) + 2}}" for title, v in zip(columns, values)]
        return f"{name:<{width}} {num_gt:>7} {num_det:>7}" + "".join(cells)

    header = f"{'class':<{width}} {'GT':>7} {'dets':>7}" + "".join(f"{title:>{max(len(title), 6) + 2}}" for title in columns)
    rows = [line(name, int(result.num_gt[c]), int(result.num_det[c]), [float(v[c]) for v in columns.values()])
            for c, name in enumerate(result.class_names)]
    mean = line("mean", int(result.num_gt.sum()), int(result.num_det.sum()), [_mean(v) for v in columns.values()])
    rule = "-" * len(header)
    return "\n".join([header, rule, *rows, rule, mean])


# ----------------------------------------------------------------------------- operating points

# Face sizes (sqrt of the box area, pixels of the photo) of the per-size recall table. Under
# 10 px a face is a few blobs; 10-32 px are the small faces of crowds and group photos.
SIZE_BINS: tuple[tuple[float, float], ...] = ((0, 10), (10, 16), (16, 32), (32, 64), (64, 128), (128, math.inf))


def size_bin_name(low: float, high: float) -> str:
    return f"< {high:g} px" if low == 0 else (f">= {low:g} px" if math.isinf(high) else f"{low:g}-{high:g} px")


@dataclass
class OperatingPoint:
    """What a user sees at one score threshold: precision, recall, and recall by face size.

    Detections scoring >= min_score are matched greedily (as in VOC) at IoU >= iou.
    recall_by_size maps a size bin's name to (found, total) ground-truth boxes, where the
    size is sqrt(box area) in the units of the boxes (pixels of the photo).
    """

    min_score: float
    iou: float
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    num_gt: int
    recall_by_size: dict[str, tuple[int, int]]

    def as_dict(self) -> dict:
        return {"min_score": self.min_score, "iou": self.iou, "precision": self.precision, "recall": self.recall,
                "true_positives": self.true_positives, "false_positives": self.false_positives,
                "num_gt": self.num_gt, "recall_by_size": {k: list(v) for k, v in self.recall_by_size.items()}}


def score_curve(detections: Sequence[Mapping], ground_truths: Sequence[Mapping], num_classes: int,
                iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every score threshold, all classes pooled.

    Returns scores (K,) in decreasing order, and precision (K,), recall (K,) of the detections
    scoring >= scores[k] (ties share the values of their last member).
    """
    flat = _flatten(detections, ground_truths, num_classes)
    status = _match(flat, torch.ones(len(flat.pred_scores), dtype=torch.bool),
                    torch.tensor([iou], dtype=torch.float64), coco=False)[0]
    order = torch.sort(flat.pred_scores, descending=True, stable=True).indices
    scores, status = flat.pred_scores[order], status[order]
    tp = (status == TP).cumsum(0).double()
    fp = (status == FP).cumsum(0).double()
    num_pos = max(1, int((~flat.gt_difficult).sum()))
    # ties: a threshold keeps all detections of equal score, so each takes its group's last counts
    last = torch.searchsorted(-scores, -scores, right=True) - 1
    tp, fp = tp[last], fp[last]
    return scores.numpy(), (tp / (tp + fp).clamp(min=1)).numpy(), (tp / num_pos).numpy()


def threshold_for_precision(detections: Sequence[Mapping], ground_truths: Sequence[Mapping], num_classes: int,
                            precision: float = 0.9, iou: float = 0.5) -> float:
    """The lowest score threshold at which precision (IoU >= iou) is still >= `precision`:
    the operating point with the most recall that keeps that share of detections right.
    1.0 when no threshold reaches it."""
    scores, prec, _ = score_curve(detections, ground_truths, num_classes, iou)
    ok = np.nonzero(prec >= precision)[0]
    return float(scores[ok[-1]]) if len(ok) else 1.0


def threshold_for_best_f1(detections: Sequence[Mapping], ground_truths: Sequence[Mapping], num_classes: int,
                          iou: float = 0.5) -> float:
    """The score threshold of the best F1 = 2PR / (P + R) (IoU >= iou); 1.0 without detections."""
    scores, prec, rec = score_curve(detections, ground_truths, num_classes, iou)
    if not len(scores):
        return 1.0
    f1 = 2 * prec * rec / np.maximum(prec + rec, np.finfo(np.float64).tiny)
    return float(scores[int(np.argmax(f1))])


def operating_point(detections: Sequence[Mapping], ground_truths: Sequence[Mapping], num_classes: int,
                    min_score: float, iou: float = 0.5,
                    size_bins: Sequence[tuple[float, float]] = SIZE_BINS) -> OperatingPoint:
    """Precision, recall and recall by face size of the detections scoring >= min_score.

    Recall of a size bin is measured as COCO measures its area ranges: ground truth outside
    the bin becomes an ignore region, so a detection on it counts neither way.
    """
    flat = _flatten(detections, ground_truths, num_classes)
    keep = flat.pred_scores >= min_score
    thresholds = torch.tensor([iou], dtype=torch.float64)
    status = _match(flat, keep, thresholds, coco=False)[0][keep]
    tp, fp = int((status == TP).sum()), int((status == FP).sum())
    num_gt = int((~flat.gt_difficult).sum())
    sides = box_area(flat.gt_boxes).sqrt()
    by_size = {}
    difficult = flat.gt_difficult
    for low, high in size_bins:
        inside = (sides >= low) & (sides < high) & ~difficult
        flat.gt_difficult = difficult | ~inside
        found = int((_match(flat, keep, thresholds, coco=False)[0][keep] == TP).sum())
        by_size[size_bin_name(low, high)] = (found, int(inside.sum()))
    flat.gt_difficult = difficult
    return OperatingPoint(min_score, iou, tp / max(1, tp + fp), tp / max(1, num_gt), tp, fp, num_gt, by_size)


# ----------------------------------------------------------------------------- classification


@dataclass
class ClassificationResult:
    """Face / non-face classifier metrics at one decision threshold (AUC needs none)."""

    accuracy: float
    precision: float  # 0 when nothing is predicted positive
    recall: float  # 0 when there are no positives
    auc: float  # ROC AUC; NaN when only one class is present
    threshold: float

    def as_dict(self) -> dict[str, float]:
        """Flat metrics for CSV logging: accuracy, precision, recall, auc."""
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall, "auc": self.auc}


def roc_auc(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """Area under the ROC curve for scores (N,) and 0/1 labels (N,).

    It equals the chance that a random positive scores above a random negative, ties counting
    half. Rank form (Mann-Whitney U): with tied scores sharing their average rank (1-based),
        AUC = (sum of positive ranks - P (P + 1) / 2) / (P N)
    for P positives and N negatives. Example: scores [.9, .4, .6, .2], labels [1, 1, 0, 0]:
    ranks 4, 2, 3, 1, AUC = (6 - 3) / 4 = 0.75. NaN when P or N is 0.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    labels = torch.as_tensor(labels).reshape(-1).bool()
    num_pos = int(labels.sum())
    num_neg = len(labels) - num_pos
    if num_pos == 0 or num_neg == 0:
        return math.nan
    sorted_scores, order = torch.sort(scores)
    _, group, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # 1-based rank of each tie group's last member
    ranks = (last - (counts - 1) / 2)[group]  # average rank of the group, for every sorted score
    rank_sum = ranks[labels[order]].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def evaluate_classification(
    probs: Tensor | np.ndarray, labels: Tensor | np.ndarray, threshold: float = 0.5
) -> ClassificationResult:
    """Accuracy, precision, recall and ROC AUC of a binary classifier.

    probs: (N,) probability of the positive class (face), or (N, 2) class probabilities whose
    column 1 is used; labels: (N,) 0/1 (int, float or bool). Predicted positive: prob >= threshold.
    """
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if probs.ndim == 2 and probs.shape[1] == 2:
        probs = probs[:, 1]
    probs = probs.reshape(-1)
    labels = torch.as_tensor(labels).reshape(-1)
    if len(probs) != len(labels):
        raise DataError(f"{len(probs)} probabilities for {len(labels)} labels; expected one per sample")
    truth = labels.bool()
    predicted = probs >= threshold
    true_pos = int((predicted & truth).sum())
    return ClassificationResult(
        accuracy=float((predicted == truth).double().mean()) if len(truth) else math.nan,
        precision=true_pos / max(int(predicted.sum()), 1),
        recall=true_pos / max(int(truth.sum()), 1),
        auc=roc_auc(probs, truth),
        threshold=threshold,
    )
