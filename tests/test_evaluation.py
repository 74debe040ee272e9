"""Tests for facedet.evaluation: hand-worked APs, loop oracles, and pycocotools as the COCO reference."""
from __future__ import annotations

import contextlib
import io
import math
import random

import numpy as np
import pytest
import torch

from facedet.errors import DataError
from facedet.evaluation import (
    average_precision,
    evaluate_classification,
    evaluate_detections,
    format_table,
    precision_envelope,
    roc_auc,
)
from facedet.plots import plot_pr_curves

from conftest import det, gt


A, B, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]


# ----------------------------------------------------------------------------- hand-worked cases


def test_worked_example_tp_fp_tp():
    # scores .9 TP, .8 FP, .7 TP with 2 faces: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    result = evaluate_detections([det([A, FAR, B], [0.9, 0.8, 0.7])], [gt([A, B])], ["face"])
    assert result.ap[0, 0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # 0.8333
    assert result.ap07[0, 0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)  # 0.8485
    assert result.coco_ap[0] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)  # exact boxes: same at every IoU
    precision, recall = result.pr_curves()["face"]
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 2, 1 / 2, 1])
    metrics = result.as_dict()
    assert metrics["mAP50"] == pytest.approx(0.8333333) and metrics["mAP"] == metrics["mAP50"]
    assert metrics["mAP50_07"] == pytest.approx(0.8484848)
    assert metrics["AP50/face"] == metrics["mAP50"]
    assert {"AP_coco", "AP50_coco", "AP75_coco", "recall@50FP"} <= metrics.keys()
    assert evaluate_detections([det([A, FAR, B], [0.9, 0.8, 0.7])], [gt([A, B])], ["face"],
                               use_07_metric=True).mAP == pytest.approx(0.8484848)


def test_all_point_and_11_point_differ_on_a_second_curve():
    # FP, TP, TP, FP with 4 faces: precision 0, 1/2, 2/3, 1/2 at recall 0, 1/4, 1/2, 1/2
    # envelope 2/3, 2/3, 2/3, 1/2 -> all-point AP = 1/4 * 2/3 + 1/4 * 2/3 = 1/3
    # 11-point: levels 0..0.5 (6 of them) read 2/3, levels 0.6..1 read 0 -> 6 * 2/3 / 11 = 4/11
    d = det([FAR, A, B, [80, 80, 90, 90]], [0.9, 0.8, 0.7, 0.6])
    g = gt([A, B, [100, 0, 110, 10], [0, 100, 10, 110]])
    result = evaluate_detections([d], [g], ["face"])
    assert result.ap[0, 0] == pytest.approx(1 / 3)
    assert result.ap07[0, 0] == pytest.approx(4 / 11)


def test_average_precision_on_raw_curves():
    precision, recall = torch.tensor([1.0, 0.5, 2 / 3]), torch.tensor([0.5, 0.5, 1.0])
    assert float(average_precision(precision, recall)) == pytest.approx(5 / 6)
    assert float(average_precision(precision, recall, use_07_metric=True)) == pytest.approx(28 / 33)
    assert float(average_precision(torch.zeros(0), torch.zeros(0))) == 0.0
    np.testing.assert_allclose(precision_envelope(precision), [1, 2 / 3, 2 / 3])
    batched = average_precision(torch.stack([precision, precision / 2]), torch.stack([recall, recall]))
    np.testing.assert_allclose(batched, [5 / 6, 5 / 12])


def test_iou_exactly_at_threshold_is_a_match():
    # [0,0,1,1] inside [0,0,2,1]: intersection 1, union 2 -> IoU 0.5, which counts (>=)
    result = evaluate_detections([det([[0, 0, 1, 1]], [0.9])], [gt([[0, 0, 2, 1]])], ["face"], iou_thresholds=(0.5, 0.6))
    np.testing.assert_allclose(result.ap[:, 0], [1.0, 0.0])
    assert set(result.as_dict()) >= {"mAP50", "mAP60", "mAP50_07", "mAP60_07"}


def test_difficult_is_neither_tp_nor_fp():
    # .9 lands on a difficult face (ignored), .8 on the normal one (TP), .7 nowhere (FP)
    # if the first were a FP the AP would be 1/2; if difficult counted as a positive, recall would stop at 1/2
    d = det([B, A, FAR], [0.9, 0.8, 0.7])
    result = evaluate_detections([d], [gt([A, B], difficult=[False, True])], ["face"], max_fp=0)
    assert result.num_gt[0] == 1
    assert result.ap[0, 0] == pytest.approx(1.0) and result.ap07[0, 0] == pytest.approx(1.0)
    assert result.coco_ap[0] == pytest.approx(1.0)
    assert result.recall_at_fp[0] == pytest.approx(1.0)
    precision, recall = result.pr_curves()["face"]
    assert len(precision) == 2  # the ignored detection is not on the curve


def test_difficult_region_absorbs_several_detections():
    d = det([B, B, A], [0.9, 0.8, 0.7])
    result = evaluate_detections([d], [gt([A, B], difficult=[False, True])], ["face"])
    assert result.ap[0, 0] == pytest.approx(1.0)


def test_coco_treats_difficult_as_crowd_region():
    # a small box inside a big difficult region: IoU 0.01 (VOC: FP), but intersection/area = 1 (COCO: ignored)
    d = det([[10, 10, 20, 20], [200, 200, 210, 210]], [0.9, 0.8])
    g = gt([[0, 0, 100, 100], [200, 200, 210, 210]], difficult=[True, False])
    result = evaluate_detections([d], [g], ["face"])
    assert result.ap[0, 0] == pytest.approx(0.5)
    assert result.coco_ap[0] == pytest.approx(1.0)


def test_duplicate_detection_is_fp():
    # .9 and .8 both on A: the second is a duplicate FP, then .7 finds B -> same as TP, FP, TP
    result = evaluate_detections([det([A, A, B], [0.9, 0.8, 0.7])], [gt([A, B])], ["face"], max_fp=0)
    assert result.ap[0, 0] == pytest.approx(5 / 6)
    assert result.recall_at_fp[0] == pytest.approx(0.5)


def test_second_best_unclaimed_box_is_taken():
    # G1 = A and G2 = [2,0,12,10] overlap; the second detection's best box G1 is taken, but it
    # still clears 0.5 with G2 (IoU 85/115 = 0.74) and claims it. The VOC devkit would call it a FP.
    g = gt([A, [2, 0, 12, 10]])
    result = evaluate_detections([det([A, [0.5, 0, 10.5, 10]], [0.9, 0.8])], [g], ["face"])
    assert result.ap[0, 0] == pytest.approx(1.0)


def test_no_detections_gives_ap_zero():
    result = evaluate_detections([det([], [])], [gt([A])], ["face"])
    assert result.ap[0, 0] == 0.0 and result.ap07[0, 0] == 0.0 and result.coco_ap[0] == 0.0
    assert result.recall_at_fp[0] == 0.0 and result.mAP == 0.0


def test_image_without_ground_truth_contributes_fp():
    # the best detection is on an empty image: FP then TP -> precision 0, 1/2 at recall 0, 1
    result = evaluate_detections([det([A], [0.8]), det([A], [0.9])], [gt([A]), gt([])], ["face"])
    assert result.ap[0, 0] == pytest.approx(0.5)
    assert result.num_det[0] == 2


def test_classes_are_matched_separately():
    # a class-1 box on a class-0 face is a class-1 FP and finds no class-0 match
    d = det([A, B], [0.9, 0.8], labels=[1, 0])
    g = gt([A, B], labels=[0, 1])
    result = evaluate_detections([d], [g], ["face", "mask"])
    np.testing.assert_allclose(result.ap[0], [0.0, 0.0])
    d = det([A, B], [0.9, 0.8], labels=[0, 1])
    result = evaluate_detections([d], [g], ["face", "mask"])
    np.testing.assert_allclose(result.ap[0], [1.0, 1.0])


def test_class_without_ground_truth_is_nan_and_left_out_of_means():
    d = det([A, B], [0.9, 0.8], labels=[0, 1])
    result = evaluate_detections([d], [gt([A])], ["face", "other"])
    assert result.ap[0, 0] == 1.0 and math.isnan(result.ap[0, 1]) and math.isnan(result.coco_ap[1])
    assert result.mAP == 1.0 and result.as_dict()["AP_coco"] == 1.0
    assert "other" not in result.pr_curves()
    table = format_table(result)
    assert "face" in table and "other" in table and "mean" in table


def test_coco_keeps_100_detections_per_image_and_class():
    # 100 FPs score above the only TP: COCO drops the TP (AP 0), VOC keeps it (precision 1/101)
    boxes = [[200 + 2 * i, 0, 201 + 2 * i, 1] for i in range(100)] + [A]
    scores = [0.5 + i / 1000 for i in range(100)] + [0.1]
    result = evaluate_detections([det(boxes, scores)], [gt([A])], ["face"], max_fp=100)
    assert result.ap[0, 0] == pytest.approx(1 / 101)
    assert result.coco_ap[0] == 0.0
    assert result.recall_at_fp[0] == 1.0
    assert evaluate_detections([det(boxes, scores)], [gt([A])], ["face"], max_fp=99).recall_at_fp[0] == 0.0


def test_bad_inputs_raise_data_error():
    with pytest.raises(DataError, match="2 detection dicts for 1"):
        evaluate_detections([det([A], [1.0])] * 2, [gt([A])], ["face"])
    with pytest.raises(DataError, match="labels"):
        evaluate_detections([det([A], [1.0], labels=[3])], [gt([A])], ["face"])
    with pytest.raises(DataError, match="scores"):
        evaluate_detections([{"boxes": [A], "labels": [0]}], [gt([A])], ["face"])


def test_empty_evaluation():
    result = evaluate_detections([], [], ["face"])
    assert math.isnan(result.mAP) and result.num_gt[0] == 0


# ----------------------------------------------------------------------------- random data vs oracles


def random_dataset(seed: int, num_images: int = 20, num_classes: int = 3, with_difficult: bool = True):
    """Pixel boxes: ground truth, jittered copies (some duplicated, some mislabelled) and clutter."""
    rng = random.Random(seed)
    detections, truths = [], []
    for i in range(num_images):
        g_boxes, g_labels, g_diff = [], [], []
        for _ in range(rng.randint(0, 6)):
            x, y = rng.uniform(0, 80), rng.uniform(0, 80)
            g_boxes.append([x, y, x + rng.uniform(5, 40), y + rng.uniform(5, 40)])
            g_labels.append(rng.randrange(num_classes))
            g_diff.append(with_difficult and rng.random() < 0.15)
        d_boxes, d_labels = [], []
        for box, label in zip(g_boxes, g_labels):
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                w, h = box[2] - box[0], box[3] - box[1]
                jitter = [rng.gauss(0, 0.12) * s for s in (w, h, w, h)]
                d_boxes.append([c + j for c, j in zip(box, jitter)])
                d_labels.append(label if rng.random() < 0.85 else rng.randrange(num_classes))
        for _ in range(rng.randint(0, 5) if i != 3 else 130):  # image 3 exceeds COCO's 100 per class
            x, y = rng.uniform(0, 90), rng.uniform(0, 90)
            d_boxes.append([x, y, x + rng.uniform(3, 30), y + rng.uniform(3, 30)])
            d_labels.append(rng.randrange(num_classes) if i != 3 else 0)
        scores = [rng.random() for _ in d_boxes]
        detections.append(det(d_boxes, scores, d_labels))
        truths.append(gt(g_boxes, g_labels, g_diff))
    if num_images > 3:  # give image 3 real faces scored below its clutter, so the 100 cut changes recall
        truths[3] = gt([[5, 5, 30, 30], [40, 40, 70, 70]], [0, 0], [False, False])
        extra = det([[5, 5, 30, 30], [40, 41, 70, 70]], [-1.0, -2.0], [0, 0])
        detections[3] = {k: torch.cat([detections[3][k], extra[k]]) for k in extra}
    return detections, truths


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def voc_oracle(detections, truths, num_classes, threshold, max_fp):
    """Slow readable VOC evaluation: one class at a time, one detection at a time."""
    aps, aps07, recalls = [], [], []
    for c in range(num_classes):
        found = [(float(s), i, d["boxes"][k].tolist())
                 for i, d in enumerate(detections) for k, s in enumerate(d["scores"]) if int(d["labels"][k]) == c]
        found.sort(key=lambda item: -item[0])
        boxes = [[(t["boxes"][k].tolist(), bool(t["difficult"][k])) for k in range(len(t["boxes"])) if int(t["labels"][k]) == c]
                 for t in truths]
        claimed = [[False] * len(b) for b in boxes]
        num_pos = sum(not diff for b in boxes for _, diff in b)
        hits = []  # 1 TP, 0 FP; ignored detections are simply dropped
        for _, i, box in found:
            best, best_iou = None, -1.0
            for j, (g, diff) in enumerate(boxes[i]):
                o = iou(box, g)
                if o >= threshold and (diff or not claimed[i][j]) and o > best_iou:
                    best, best_iou = j, o
            if best is None:
                hits.append(0)
            elif not boxes[i][best][1]:
                claimed[i][best] = True
                hits.append(1)
        if num_pos == 0:
            aps.append(math.nan), aps07.append(math.nan), recalls.append(math.nan)
            continue
        tp = np.cumsum(hits, dtype=float)
        fp = np.cumsum([1 - h for h in hits], dtype=float)
        recall = tp / num_pos
        precision = tp / np.maximum(tp + fp, 1)
        # all-point: pad, make precision non-increasing from the right, sum rectangles where recall moves
        r = np.concatenate([[0.0], recall, [1.0]])
        p = np.concatenate([[0.0], precision, [0.0]])
        for k in range(len(p) - 2, -1, -1):
            p[k] = max(p[k], p[k + 1])
        aps.append(sum((r[k + 1] - r[k]) * p[k + 1] for k in range(len(r) - 1) if r[k + 1] != r[k]))
        ap07 = 0.0
        for level in np.arange(0.0, 1.1, 0.1):
            above = precision[recall >= level]
            ap07 += (above.max() if len(above) else 0.0) / 11
        aps07.append(ap07)
        within = tp[fp <= max_fp]
        recalls.append(within.max() / num_pos if len(within) else 0.0)
    return np.array(aps), np.array(aps07), np.array(recalls)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_matches_loop_oracle(seed):
    detections, truths = random_dataset(seed)
    result = evaluate_detections(detections, truths, ["a", "b", "c"], iou_thresholds=(0.5, 0.75), max_fp=5)
    for t, threshold in enumerate((0.5, 0.75)):
        ap, ap07, recall = voc_oracle(detections, truths, 3, threshold, max_fp=5)
        np.testing.assert_allclose(result.ap[t], ap, atol=1e-12)
        np.testing.assert_allclose(result.ap07[t], ap07, atol=1e-12)
        if t == 0:
            np.testing.assert_allclose(result.recall_at_fp, recall, atol=1e-12)


def test_image_order_does_not_matter():
    detections, truths = random_dataset(4)
    perm = list(range(len(truths)))
    random.Random(0).shuffle(perm)
    a = evaluate_detections(detections, truths, ["a", "b", "c"]).as_dict()
    b = evaluate_detections([detections[i] for i in perm], [truths[i] for i in perm], ["a", "b", "c"]).as_dict()
    assert a.keys() == b.keys()
    np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-12)


def pycocotools_stats(detections, truths, num_classes):
    """AP@[.5:.95], AP50, AP75 and per-class AP@[.5:.95] from pycocotools, difficult -> iscrowd."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        x1, y1, x2, y2 = box
        return [x1, y1, x2 - x1, y2 - y1]

    images, annotations, results = [], [], []
    for i, (d, t) in enumerate(zip(detections, truths)):
        images.append({"id": i + 1, "width": 100, "height": 100})
        for box, label, difficult in zip(t["boxes"].tolist(), t["labels"].tolist(), t["difficult"].tolist()):
            x, y, w, h = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(difficult)})
        for box, score, label in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            results.append({"image_id": i + 1, "category_id": label + 1, "bbox": xywh(box), "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K), area "all", maxDets 100
    per_class = np.array([precision[:, :, k].mean() if (precision[:, :, k] > -1).all() else math.nan
                          for k in range(num_classes)])
    return evaluator.stats[:3], per_class


@pytest.mark.parametrize("seed", range(12))
def test_coco_matches_pycocotools(seed):
    """Same detections, same ground truth: facedet's COCO AP is pycocotools' to 1e-9."""
    detections, truths = random_dataset(seed)
    (ap, ap50, ap75), per_class = pycocotools_stats(detections, truths, 3)
    result = evaluate_detections(detections, truths, ["a", "b", "c"]).as_dict()
    assert result["AP_coco"] == pytest.approx(ap, abs=1e-9)
    assert result["AP50_coco"] == pytest.approx(ap50, abs=1e-9)
    assert result["AP75_coco"] == pytest.approx(ap75, abs=1e-9)
    np.testing.assert_allclose(evaluate_detections(detections, truths, ["a", "b", "c"]).coco_ap, per_class, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- classification


def test_classification_worked_example():
    # predictions 1, 0, 1, 0 against labels 1, 1, 0, 0; AUC: 3 of 4 (positive, negative) pairs ordered right
    result = evaluate_classification(torch.tensor([0.9, 0.4, 0.6, 0.2]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert (result.accuracy, result.precision, result.recall) == (0.5, 0.5, 0.5)
    assert result.auc == pytest.approx(0.75)
    assert result.as_dict() == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "auc": 0.75}
    two_columns = torch.tensor([[0.1, 0.9], [0.6, 0.4], [0.4, 0.6], [0.8, 0.2]])
    assert evaluate_classification(two_columns, [1, 1, 0, 0]) == result


def test_classification_edge_cases():
    result = evaluate_classification([0.1, 0.2], [0, 0])
    assert result.accuracy == 1.0 and result.precision == 0.0 and result.recall == 0.0 and math.isnan(result.auc)
    with pytest.raises(DataError):
        evaluate_classification([0.1, 0.2], [0])


def test_roc_auc_matches_pairwise_oracle_with_ties():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 6, (200,), generator=gen) / 5.0  # 6 distinct values: many ties
        labels = torch.rand(200, generator=gen) < 0.4
        pos, neg = scores[labels].tolist(), scores[~labels].tolist()
        oracle = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))
        assert roc_auc(scores, labels) == pytest.approx(oracle, abs=1e-12)
    assert roc_auc([0.5, 0.5, 0.5], [1, 0, 1]) == 0.5


# ----------------------------------------------------------------------------- plot


def test_plot_pr_curves_writes_png(tmp_path):
    result = evaluate_detections([det([A, FAR, B], [0.9, 0.8, 0.7])], [gt([A, B])], ["face"])
    curves = result.pr_curves() | {"empty": (np.zeros(0), np.zeros(0))}
    path = plot_pr_curves(curves, tmp_path / "sub" / "pr.png", title="toy")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# ----------------------------------------------------------------------------- the VOC devkit's rule


def test_devkit_rule_looks_only_at_the_best_overlapping_box():
    """Faces A and B; detection 1 claims A; detection 2 overlaps A most (IoU 0.78) and B by 0.57.
    Greedy: detection 2 takes the unclaimed B (TP). Devkit: its best box A is claimed (FP)."""
    a, b = [0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0]
    d2 = [1.25, 0.0, 11.25, 10.0]  # IoU with A 8.75/11.25 = 0.78, with B 7.25/12.75 = 0.57
    truths = [{"boxes": torch.tensor([a, b]), "labels": torch.tensor([0, 0])}]
    found = [det([a, d2], [0.9, 0.8])]
    greedy = evaluate_detections(found, truths, ["face"])
    devkit = evaluate_detections(found, truths, ["face"], voc_rule="devkit")
    assert greedy.ap[0, 0] == pytest.approx(1.0)  # TP, TP
    assert devkit.ap[0, 0] == pytest.approx(0.5)  # TP, FP: recall stops at 1/2


def test_devkit_rule_needs_iou_strictly_above_the_threshold():
    truth = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([0])}]
    half = [det([[0.0, 0.0, 10.0, 5.0]], [0.9])]  # IoU exactly 0.5
    assert evaluate_detections(half, truth, ["face"]).ap[0, 0] == pytest.approx(1.0)  # greedy: >=
    assert evaluate_detections(half, truth, ["face"], voc_rule="devkit").ap[0, 0] == pytest.approx(0.0)


def test_devkit_rule_ignores_a_detection_whose_best_box_is_difficult():
    truths = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]]), "labels": torch.tensor([0, 0]),
               "difficult": torch.tensor([True, False])}]
    found = [det([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]], [0.9, 0.8])]
    result = evaluate_detections(found, truths, ["face"], voc_rule="devkit")
    assert result.ap[0, 0] == pytest.approx(1.0)  # the first is IGNORED (its best box is difficult), the second TP
    with pytest.raises(DataError, match="voc_rule"):
        evaluate_detections(found, truths, ["face"], voc_rule="pascal")


def _devkit_ap_oracle(detections, truths, cls, threshold):
    """VOCevaldet.m transcribed as loops: all-point AP of one class."""
    dets = sorted(((float(s), i, b) for i, d in enumerate(detections)
                   for b, s, l in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()) if l == cls),
                  key=lambda x: -x[0])
    gts = [[(b, bool(f)) for b, l, f in zip(t["boxes"].tolist(), t["labels"].tolist(), t["difficult"].tolist()) if l == cls]
           for t in truths]
    npos = sum(not f for g in gts for _, f in g)
    used = [[False] * len(g) for g in gts]
    tp, fp = [], []
    for _, i, b in dets:
        best, jmax = -1.0, -1
        for j, (g, _) in enumerate(gts[i]):
            iw, ih = min(b[2], g[2]) - max(b[0], g[0]), min(b[3], g[3]) - max(b[1], g[1])
            if iw > 0 and ih > 0:
                inter = iw * ih
                ov = inter / ((b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter)
                if ov > best:
                    best, jmax = ov, j
        if best > threshold:
            if gts[i][jmax][1]:
                continue  # difficult: neither
            if not used[i][jmax]:
                used[i][jmax] = True
                tp.append(1); fp.append(0)
            else:
                tp.append(0); fp.append(1)
        else:
            tp.append(0); fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / max(npos, 1), tp / np.maximum(tp + fp, 1e-12)
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.concatenate([[0], prec, [0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


@pytest.mark.parametrize("seed", range(6))
def test_devkit_rule_matches_a_loop_transcription_of_the_devkit(seed):
    g = torch.Generator().manual_seed(seed)
    detections, truths = [], []
    for _ in range(5):
        n, k = int(torch.randint(1, 6, (), generator=g)), int(torch.randint(0, 12, (), generator=g))
        centres = torch.rand(n, 2, generator=g) * 60
        gt_boxes = torch.cat([centres, centres + 8 + torch.rand(n, 2, generator=g) * 20], 1)
        pick = torch.randint(0, n, (k,), generator=g)
        jitter = (torch.rand(k, 4, generator=g) - 0.5) * 10
        truths.append({"boxes": gt_boxes, "labels": torch.randint(0, 2, (n,), generator=g),
                       "difficult": torch.rand(n, generator=g) < 0.2})
        detections.append({"boxes": gt_boxes[pick] + jitter, "scores": torch.rand(k, generator=g),
                           "labels": torch.randint(0, 2, (k,), generator=g)})
    result = evaluate_detections(detections, truths, ["a", "b"], iou_thresholds=(0.5, 0.3), voc_rule="devkit")
    for t, threshold in enumerate((0.5, 0.3)):
        for c in range(2):
            if not math.isnan(result.ap[t, c]):
                assert result.ap[t, c] == pytest.approx(_devkit_ap_oracle(detections, truths, c, threshold), abs=1e-9)
