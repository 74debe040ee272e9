"""Tests for facedet.region_targets: box deltas, RPN anchor labels and sampling, Fast R-CNN RoI sampling."""
from __future__ import annotations

import math

import pytest
import torch

from facedet.boxes import box_iou
from facedet.region_targets import (
    FAST_RCNN_WEIGHTS,
    MAX_LOG_SCALE,
    decode_deltas,
    encode_deltas,
    label_anchors,
    sample_balanced,
    sample_rois,
)

# ---------------------------------------------------------------- box deltas


def test_deltas_by_hand():
    region, truth = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[2.0, 0, 12, 20]])
    # centres (5, 5) -> (7, 10); sizes 10 x 10 -> 10 x 20
    assert torch.allclose(encode_deltas(truth, region), torch.tensor([[0.2, 0.5, 0.0, math.log(2)]]))
    assert torch.allclose(encode_deltas(truth, region, FAST_RCNN_WEIGHTS),
                          torch.tensor([[2.0, 5.0, 0.0, 5 * math.log(2)]]))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), FAST_RCNN_WEIGHTS])
def test_encode_decode_round_trip(weights):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    regions = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 60], dim=1)
    xy = torch.rand(50, 2, generator=g) * 100
    truth = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 60], dim=1)
    deltas = encode_deltas(truth, regions, weights)
    assert torch.allclose(decode_deltas(deltas, regions, weights), truth, atol=1e-4)
    assert torch.allclose(encode_deltas(regions, regions, weights), torch.zeros(50, 4))  # no correction


def test_decode_clamps_the_size_change_and_broadcasts_over_classes():
    region = torch.tensor([[0.0, 0, 16, 16]])
    huge = decode_deltas(torch.tensor([[0.0, 0, 50, 50]]), region)
    side = 16 * math.exp(MAX_LOG_SCALE)  # 1000 px, not e^50
    assert torch.allclose(huge, torch.tensor([[8 - side / 2, 8 - side / 2, 8 + side / 2, 8 + side / 2]]))
    per_class = torch.zeros(3, 2, 4)  # (regions, classes, 4) against (regions, 1, 4)
    assert decode_deltas(per_class, torch.tensor([[0.0, 0, 4, 4]]).expand(3, 4)[:, None]).shape == (3, 2, 4)


# ---------------------------------------------------------------- RPN anchor labels


def test_anchor_labels_worked_by_hand():
    truth = torch.tensor([[0.0, 0, 10, 10], [40, 40, 50, 60]])
    anchors = torch.tensor([
        [0.0, 0, 10, 10],    # IoU 1 with box 0: positive
        [1.0, 0, 10, 10],    # IoU 0.9: positive
        [0.0, 0, 10, 20],    # IoU 0.5: ignored (between 0.3 and 0.7)
        [20.0, 20, 30, 30],  # IoU 0: negative
        [40.0, 40, 50, 50],  # IoU 0.5 with box 1, but box 1's best anchor: positive
        [5.0, 5, 15, 15],    # IoU 25 / 175 = 0.14 with box 0: negative
    ])
    labels, matched = label_anchors(anchors, truth)
    assert labels.tolist() == [1, 1, -1, 0, 1, 0]
    assert matched[[0, 1, 2, 4]].tolist() == [0, 0, 0, 1]


def test_every_box_gets_its_best_anchors_ties_included():
    truth = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[0.0, 0, 5, 10], [5.0, 0, 10, 10], [0.0, 0, 2, 10]])  # IoU 0.5, 0.5, 0.2
    labels, _ = label_anchors(anchors, truth)
    assert labels.tolist() == [1, 1, 0]


def test_border_crossing_anchors_are_ignored_when_asked():
    truth = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[-2.0, 0, 10, 10], [0.0, 0, 9, 9], [30.0, 30, 40, 40], [95.0, 95, 105, 105]])
    labels, _ = label_anchors(anchors, truth)
    assert labels.tolist() == [1, 1, 0, 0]  # no border rule: the first anchor (IoU 0.83) is the best
    labels, _ = label_anchors(anchors, truth, image_size=(100, 100))
    # the crossing ones are ignored and can no longer be the box's best: the 9 x 9 one is (0.81 -> positive anyway)
    assert labels.tolist() == [-1, 1, 0, -1]
    labels, _ = label_anchors(anchors, truth, image_size=(100, 100), allowed_border=5)
    assert labels.tolist() == [1, 1, 0, 0]


def test_no_ground_truth_makes_every_usable_anchor_negative():
    anchors = torch.tensor([[0.0, 0, 10, 10], [-5.0, 0, 5, 5]])
    labels, matched = label_anchors(anchors, torch.zeros(0, 4), image_size=(20, 20))
    assert labels.tolist() == [0, -1] and matched.tolist() == [0, 0]


# ---------------------------------------------------------------- sampling


def test_sampling_counts():
    labels = torch.tensor([1] * 200 + [0] * 1000 + [-1] * 50)
    pos, neg = sample_balanced(labels, 256, 0.5, torch.Generator().manual_seed(0))
    assert len(pos) == 128 and len(neg) == 128  # capped at 1:1
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 128 and len(set(neg.tolist())) == 128  # no repeats
    few = torch.tensor([1] * 10 + [0] * 1000)
    pos, neg = sample_balanced(few, 256, 0.5, torch.Generator().manual_seed(0))
    assert len(pos) == 10 and len(neg) == 246  # negatives fill the rest
    short = torch.tensor([1] * 3 + [0] * 5 + [-1] * 9)
    pos, neg = sample_balanced(short, 256, 0.5)
    assert sorted(pos.tolist()) == [0, 1, 2] and sorted(neg.tolist()) == [3, 4, 5, 6, 7]


def test_sampling_is_deterministic_for_a_generator():
    labels = torch.tensor([1, 0] * 500)
    a = sample_balanced(labels, 64, 0.25, torch.Generator().manual_seed(7))
    b = sample_balanced(labels, 64, 0.25, torch.Generator().manual_seed(7))
    c = sample_balanced(labels, 64, 0.25, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_fast_rcnn_roi_sample():
    g = torch.Generator().manual_seed(1)
    truth = torch.tensor([[20.0, 20, 60, 60], [100, 100, 140, 150]])
    classes = torch.tensor([0, 2])
    xy = torch.rand(400, 2, generator=g) * 150
    proposals = torch.cat([xy, xy + 10 + torch.rand(400, 2, generator=g) * 50], dim=1)
    rois, labels, targets = sample_rois(proposals, truth, classes, 64, 0.25, generator=g)
    best = box_iou(rois, truth).max(dim=1).values
    foreground = labels > 0
    assert len(rois) == 64 and int(foreground.sum()) == 16  # 25 % of 64
    assert (best[foreground] >= 0.5).all()
    assert ((best[~foreground] >= 0.1) & (best[~foreground] < 0.5)).all()
    assert set(labels[foreground].tolist()) <= {1, 3}  # class + 1; 0 is background
    matched = box_iou(rois[foreground], truth).argmax(dim=1)
    assert torch.equal(targets[foreground], truth[matched]) and torch.equal(labels[foreground], classes[matched] + 1)


def test_roi_sample_edge_cases():
    truth = torch.tensor([[0.0, 0, 10, 10]])
    # no proposals at all: the ground truth itself is the one foreground RoI, no background exists
    rois, labels, targets = sample_rois(torch.zeros(0, 4), truth, torch.tensor([0]))
    assert rois.tolist() == [[0, 0, 10, 10]] and labels.tolist() == [1] and torch.equal(targets, truth)
    # without add_boxes and without proposals: an empty sample
    rois, labels, targets = sample_rois(torch.zeros(0, 4), truth, torch.tensor([0]), add_boxes=False)
    assert rois.shape == (0, 4) and labels.shape == (0,) and targets.shape == (0, 4)
    # no ground truth: nothing reaches IoU 0.1, so there is neither foreground nor background
    rois, labels, _ = sample_rois(torch.tensor([[0.0, 0, 5, 5]]), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert len(rois) == 0
    rois, labels, _ = sample_rois(torch.tensor([[0.0, 0, 5, 5]]), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                  background_iou=(0.0, 0.5))
    assert rois.tolist() == [[0, 0, 5, 5]] and labels.tolist() == [0]
