"""Faster R-CNN (facedet.models.faster_rcnn) and the shared second stage (facedet.models.roi_head):
anchors and RPN labels worked by hand, proposals, the multi-task loss, shapes, bad input, the
builder and configs, and an overfit of a few synthetic scenes."""
from __future__ import annotations

import math

import pytest
import torch

from facedet.boxes import box_iou
from facedet.config import load_config, model_config
from facedet.errors import ConfigError
from facedet.models import MODELS, build_model
from facedet.models.detector import Detector
from facedet.models.faster_rcnn import (
    FasterRCNN,
    build_faster_rcnn,
    propose,
    rpn_anchor_shapes,
    rpn_anchors,
)
from facedet.models.losses import fast_rcnn_loss
from facedet.models.roi_head import assign_levels, decode_roi_detections
from facedet.region_targets import label_anchors, sample_balanced

from conftest import n_params, overfit, scene_batch, target

# a network small enough for a loaded 2-core CPU
TINY = {"num_classes": 1, "width": 8, "channels": 16, "hidden": 32, "image_size": 64}


def tiny(**changes) -> Detector:
    torch.manual_seed(0)
    return build_model(model_config("faster_rcnn", **{**TINY, **changes}))


# ----------------------------------------------------------------------------- anchors and RPN labels


def test_anchor_shapes_are_split_over_the_maps_finest_first():
    (one,) = rpn_anchor_shapes([16, 32], [1.0], 1)
    torch.testing.assert_close(one, torch.tensor([[16.0, 16.0], [32.0, 32.0]]))
    per_map = rpn_anchor_shapes([10, 20, 40, 80, 160, 320], [1.0, 4.0], 3)
    assert [len(s) for s in per_map] == [4, 4, 4]
    # h / w = 4 keeps the area: 20 x 20 -> 10 x 40
    torch.testing.assert_close(per_map[0][3], torch.tensor([10.0, 40.0]))
    torch.testing.assert_close(per_map[2][0], torch.tensor([160.0, 160.0]))


def test_rpn_anchors_follow_the_cells_row_by_row_then_the_shapes():
    feature = torch.zeros(1, 1, 2, 3)  # a stride-16 map of a 32 x 48 input
    anchors, counts = rpn_anchors([feature], [16], [torch.tensor([[16.0, 16.0], [32.0, 32.0]])])
    assert counts == [12]
    # cell (0, 1) is centred at (24, 8): its 16-px anchor, then its 32-px one
    torch.testing.assert_close(anchors[2:4], torch.tensor([[16.0, 0, 32, 16], [8.0, -8, 40, 24]]))
    # cell (1, 0) follows the whole first row
    torch.testing.assert_close(anchors[6], torch.tensor([0.0, 16, 16, 32]))


def test_rpn_labels_and_sample_on_a_worked_example():
    """A 64 x 64 input, one 16-px anchor per stride-16 cell (16 anchors), one face (20, 16, 36, 32).

    The anchor of cell (1, 1), (16, 16, 32, 32), overlaps it by 12 x 16 = 192 px: IoU = 192 /
    (256 + 256 - 192) = 0.6 < 0.7, but it is the face's best anchor, so it is positive. Cell (1, 2),
    (32, 16, 48, 32), overlaps by 4 x 16 = 64: IoU = 64 / 448 = 0.143 < 0.3, negative, as every other.
    The sample of 256 at up to 1:1 takes the one positive and all 15 negatives."""
    anchors, _ = rpn_anchors([torch.zeros(1, 1, 4, 4)], [16], [torch.tensor([[16.0, 16.0]])])
    face = torch.tensor([[20.0, 16, 36, 32]])
    iou = box_iou(anchors, face)[:, 0]
    assert iou[5].item() == pytest.approx(0.6) and iou[6].item() == pytest.approx(64 / 448)
    labels, matched = label_anchors(anchors, face, 0.7, 0.3)
    assert labels.tolist() == [0] * 5 + [1] + [0] * 10 and matched[5] == 0
    positive, negative = sample_balanced(labels, 256, 0.5, torch.Generator().manual_seed(0))
    assert positive.tolist() == [5] and sorted(negative.tolist()) == [i for i in range(16) if i != 5]
    # with 8 slots at up to 1:1 and one positive, the other 7 are negatives drawn at random
    positive, negative = sample_balanced(labels, 8, 0.5, torch.Generator().manual_seed(0))
    assert len(positive) == 1 and len(negative) == 7


# ----------------------------------------------------------------------------- proposals


def test_proposals_keep_the_best_per_map_then_nms_then_the_top_n():
    anchors = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [30.0, 30, 40, 40], [50.0, 50, 60, 60]])
    objectness = torch.tensor([3.0, 2.0, 1.0, 4.0])  # logit(object) - logit(background)
    logits = torch.stack([torch.zeros(4), objectness], dim=-1)[None]  # (1, 4, 2)
    deltas = torch.zeros(1, 4, 4)  # the anchors themselves
    # all four pass the top-4; anchor 1 overlaps anchor 0 by IoU 0.82 > 0.7 and goes
    boxes, scores = propose(logits, deltas, anchors, [4], (64, 64), pre_nms_top_n=4, nms_iou=0.7, post_nms_top_n=3)
    torch.testing.assert_close(boxes[0], anchors[[3, 0, 2]])
    torch.testing.assert_close(scores[0], torch.tensor([4.0, 3.0, 1.0]))
    # a top-2 before NMS keeps anchors 3 and 0 only: R = min(post_nms_top_n, candidates) = 2
    boxes, scores = propose(logits, deltas, anchors, [4], (64, 64), pre_nms_top_n=2, nms_iou=0.7, post_nms_top_n=3)
    assert scores[0].tolist() == [4.0, 3.0]
    # a top-3 (anchors 3, 0, 1) loses anchor 1 to NMS: the third slot is padding (-inf)
    boxes, scores = propose(logits, deltas, anchors, [4], (64, 64), pre_nms_top_n=3, nms_iou=0.7, post_nms_top_n=3)
    assert scores[0].tolist() == [4.0, 3.0, -math.inf]
    # boxes are clipped to the input: at 50 x 50 anchor 3 shrinks to nothing and is dropped
    boxes, scores = propose(logits, deltas, anchors, [4], (50, 50), pre_nms_top_n=4, nms_iou=0.7, post_nms_top_n=3)
    assert scores[0].tolist() == [3.0, 1.0, -math.inf]


# ----------------------------------------------------------------------------- the second stage


def test_fast_rcnn_loss_by_hand():
    """Two RoIs, C = 1: equal logits cost ln 2 each; the foreground RoI's deltas miss by 0.5 in dx
    and 2 in dw: Smooth L1 (beta 1) = 0.5 x 0.5^2 + (2 - 0.5) = 1.625, divided by the 2 RoIs."""
    logits = torch.zeros(2, 2, requires_grad=True)
    deltas = torch.zeros(2, 1, 4, requires_grad=True)
    targets = torch.tensor([[0.5, 0.0, 2.0, 0.0], [9.0, 9.0, 9.0, 9.0]])  # the background's is ignored
    cls, box = fast_rcnn_loss(logits, deltas, torch.tensor([1, 0]), targets)
    assert cls.item() == pytest.approx(math.log(2)) and box.item() == pytest.approx(1.625 / 2)
    cls, box = fast_rcnn_loss(logits[:0], deltas[:0], torch.zeros(0, dtype=torch.int64), targets[:0])
    assert cls.item() == 0 and box.item() == 0
    (cls + box).backward()  # no RoI still gives a graph to run backward through


def test_rois_go_to_the_pyramid_level_of_their_size():
    # FPN eq. 1: 224 px -> level 4; 112 -> 3; 448 -> 5; 20 px -> 0.5 clamped to 3; 2000 px clamped to 5
    rois = torch.tensor([[0.0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 20, 20], [0, 0, 2000, 2000]])
    assert assign_levels(rois, [3, 4, 5]).tolist() == [1, 0, 2, 0, 2]


def test_decode_roi_detections_by_hand():
    """Two regions, two classes; zero deltas keep each region's box. Region 0 is class 1 (p = 0.8);
    region 1 overlaps it (IoU 0.95) and each of its class boxes loses to region 0's box of the same
    class (class 1: 0.6 < 0.8; class 0: a 0.1 tie, the earlier region wins). The padding row scores nothing."""
    regions = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]])
    probs = torch.tensor([[[0.1, 0.1, 0.8], [0.3, 0.1, 0.6], [0.0, 0.0, 1.0]]])
    found = decode_roi_detections(regions, torch.tensor([[True, True, False]]), probs.clamp(min=1e-9).log(),
                                  torch.zeros(1, 3, 2, 4), min_score=0.05, nms_iou=0.5, top_k=10)[0]
    assert found["labels"].tolist() == [1, 0]
    torch.testing.assert_close(found["scores"], torch.tensor([0.8, 0.1]))
    torch.testing.assert_close(found["boxes"], regions[0, [0, 0]])


# ----------------------------------------------------------------------------- model, shapes, bad input


@pytest.mark.parametrize("changes", [{}, {"fpn": True, "anchor_sizes": [16, 32, 64]}, {"roi_op": "pool"}])
def test_output_shapes_in_training_and_in_eval(changes):
    detector = tiny(**changes)
    images = torch.randn(2, 3, 64, 96)
    detector.model.train()
    maps, logits, deltas, proposals, scores = detector.model(images)
    k = len(detector.model.anchor_shapes[0])
    cells = sum(m.shape[-2] * m.shape[-1] for m in maps)
    assert logits.shape == (2, cells * k, 2) and deltas.shape == (2, cells * k, 4)
    assert proposals.shape[:2] == scores.shape and proposals.shape[0] == 2 and scores.shape[1] <= 300
    detector.model.eval()
    with torch.no_grad():
        proposals, scores, class_logits, box_deltas = detector.model(images)
    r = scores.shape[1]
    assert class_logits.shape == (2, r, 2) and box_deltas.shape == (2, r, 1, 4)
    found = detector.postprocess((proposals, scores, class_logits, box_deltas), min_score=0.0, nms_iou=0.5, top_k=7,
                                 input_hw=(64, 96))
    assert len(found) == 2 and all(len(f["boxes"]) <= 7 and f["boxes"].min() >= 0 and f["boxes"].max() <= 1
                                   for f in found)


def test_photos_without_faces_and_degenerate_boxes_give_finite_losses():
    detector = tiny()
    detector.model.train()
    images = torch.randn(2, 3, 64, 64)
    outputs = detector.model(images)
    empty = detector.criterion(outputs, [target([]), target([])])
    assert all(torch.isfinite(v) for v in empty.values()) and empty["rpn_box"] == 0 and empty["box"] == 0
    torch.manual_seed(1)
    with_face = detector.criterion(outputs, [target([[0.2, 0.2, 0.6, 0.6]]), target([])])
    # a zero-width box teaches nothing: the loss is the one without it (same random samples)
    torch.manual_seed(1)
    with_flat = detector.criterion(outputs, [target([[0.2, 0.2, 0.6, 0.6], [0.3, 0.3, 0.3, 0.5]]), target([])])
    assert all(torch.isfinite(v) for v in with_flat.values())
    assert {k: v.item() for k, v in with_flat.items()} == {k: v.item() for k, v in with_face.items()}
    assert with_face["rpn_box"] > 0


def test_the_loss_refuses_eval_outputs_and_a_wrong_number_of_targets():
    detector = tiny()
    detector.model.eval()
    with torch.no_grad():
        outputs = detector.model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ConfigError, match="model.train()"):
        detector.criterion(outputs, [target([])])
    detector.model.train()
    with pytest.raises(ConfigError, match="1 photos but 2 targets"):
        detector.criterion(detector.model(torch.randn(1, 3, 64, 64)), [target([]), target([])])


def test_builder_refuses_bad_settings_naming_the_key():
    with pytest.raises(ConfigError, match="model.image_size=100"):
        build_model(model_config("faster_rcnn", image_size=100))
    with pytest.raises(ConfigError, match=r"model.anchor_sizes=\[16.0, 32.0\].*multiple of 3"):
        build_model(model_config("faster_rcnn", fpn=True, anchor_sizes=[16, 32]))
    with pytest.raises(ConfigError, match="model.rpn_negative_iou=0.8"):
        build_model(model_config("faster_rcnn", rpn_negative_iou=0.8))
    with pytest.raises(ConfigError, match="model.roi_background_iou=0.5"):
        build_model(model_config("faster_rcnn", roi_background_iou=0.5))
    with pytest.raises(ConfigError, match="'model.roi_op' is 'mean'"):
        load_config("faster_rcnn_face.yaml", ["model.roi_op=mean"])
    with pytest.raises(ConfigError, match="unknown key 'model.peaks'"):
        load_config("faster_rcnn_face.yaml", ["model.peaks=3"])


# ----------------------------------------------------------------------------- builder and configs


def test_configs_build_and_the_same_backbone_row_shares_retinanets_schedule():
    assert MODELS["faster_rcnn"] is build_faster_rcnn
    same, retina = load_config("same_faster_rcnn.yaml"), load_config("same_retinanet.yaml")
    assert same.train == retina.train and same.data == retina.data and same.eval == retina.eval
    assert same.model.width == 32 and same.model.image_size == retina.model.image_size
    detector = build_model(same.model)
    assert isinstance(detector.model, FasterRCNN) and detector.input_policy == "scalable"
    # SmallBackbone 163,840 + the top-down path, projections, RPN and RoI head
    print(f"same_faster_rcnn: {n_params(detector.model):,} parameters")
    assert n_params(detector.model.backbone) == 163_840
    # the RoI head by hand: fc6 64*7*7 -> 128 (401,536), fc7 128 -> 128 (16,512), 2 classes (258), 4 deltas (516)
    assert n_params(detector.model.roi_head) == 401_536 + 16_512 + 258 + 516 == 418_822
    assert n_params(detector.model) == 714_136
    face = load_config("faster_rcnn_face.yaml")
    assert face.model.fpn and len(build_model(face.model).model.anchor_shapes) == 3
    bccd = load_config("faster_rcnn_bccd.yaml")
    bccd.model.num_classes = 3
    model = build_model(bccd.model).model
    assert len(model.anchor_shapes) == 1 and len(model.anchor_shapes[0]) == 9  # the paper's k = 9
    assert model.roi_head.cls.out_features == 4 and model.roi_head.box.out_features == 12


# ----------------------------------------------------------------------------- overfitting


def test_overfits_a_few_synthetic_scenes():
    """Adam on three synthetic scenes: the loss falls by more than half, then every face is found
    (IoU >= 0.5 with a detection scoring >= 0.3)."""
    torch.manual_seed(0)  # the proposals the head learns from are sampled: fix them
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # and the sums' order: with 2 threads the 80 steps take another path
    try:
        _overfit_three_scenes()
    finally:
        torch.set_num_threads(threads)


def _overfit_three_scenes():
    detector = tiny(image_size=96, channels=32, hidden=64, anchor_sizes=[16, 32, 64])
    images, targets = scene_batch(96, (1, 2, 3))
    losses = overfit(detector, images, targets, steps=80, lr=5e-3)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    detector.model.eval()
    with torch.no_grad():
        found = detector.postprocess(detector.model(images), min_score=0.3, nms_iou=0.5, top_k=10, input_hw=(96, 96))
    for f, t in zip(found, targets):
        assert len(f["boxes"]), "no detection"
        assert (box_iou(t["boxes"].float(), f["boxes"]).max(dim=1).values >= 0.5).all(), (t["boxes"], f["boxes"])
