"""Rung 6, RetinaNet: anchors by hand, the pyramid's shapes, matching's ignore band, the focal
loss worked by hand, the prior-probability init, decode/encode round trip, builder and config,
and overfitting a few synthetic scenes."""
import math

import pytest
import torch
import torch.nn.functional as F

from facedet.boxes import box_convert, box_iou, encode
from facedet.config import RetinaNetConfig, load_config, model_config
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models import MODELS, build_model
from facedet.models.detector import Detector
from facedet.models.retinanet import (
    BACKGROUND,
    FPN,
    IGNORE,
    VARIANCES,
    Anchors,
    RetinaNet,
    RetinaNetLoss,
    RetinaNetPostprocess,
    SmallBackbone,
    anchor_shapes,
    build_retinanet,
    decode_boxes,
    level_shape,
    match_anchors,
)
from facedet.boxes import grid_anchors
from facedet.models.losses import sigmoid_focal_loss

from conftest import n_params, scene_batch


def small_cfg(**values) -> RetinaNetConfig:
    """A tiny RetinaNet for fast tests: 128 px, width 8, 16 pyramid channels, 2-deep subnets."""
    settings = dict(num_classes=1, image_size=128, width=8, fpn_channels=16, head_depth=2)
    return model_config("retinanet", **{**settings, **values})


# ----------------------------------------------------------------------------- anchors


def test_anchor_shapes_by_hand():
    # 3 scales x 3 ratios = 9; side 32 x 2^(i/3) = 32, 40.32, 50.80; ratio r = h / w keeps the area
    shapes = anchor_shapes(32, 3, (0.5, 1.0, 2.0))
    assert shapes.shape == (9, 2)
    sides = (shapes[:, 0] * shapes[:, 1]).sqrt()
    torch.testing.assert_close(sides, torch.tensor([32.0] * 3 + [32 * 2 ** (1 / 3)] * 3 + [32 * 2 ** (2 / 3)] * 3))
    torch.testing.assert_close(shapes[:, 1] / shapes[:, 0], torch.tensor([0.5, 1.0, 2.0] * 3))
    # ratio 0.5 at side 32: w = 32 / sqrt(0.5) = 45.25, h = 32 * sqrt(0.5) = 22.63
    torch.testing.assert_close(shapes[0], torch.tensor([32 / math.sqrt(0.5), 32 * math.sqrt(0.5)]))
    torch.testing.assert_close(anchor_shapes(32, 1, (1.0, 4.0)), torch.tensor([[32.0, 32.0], [16.0, 64.0]]))


def test_level_shapes_round_up_like_the_convolutions():
    assert [level_shape(320, 320, level) for level in (3, 4, 5, 6, 7)] == [(40, 40), (20, 20), (10, 10), (5, 5), (3, 3)]
    assert level_shape(100, 37, 2) == (25, 10)  # 100 -> 50 -> 25, 37 -> 19 -> 10


def test_grid_anchors_centres_and_order_by_hand():
    # a 2 x 3 grid of stride 8 with two shapes: cells row by row, the shapes of a cell side by side
    shapes = torch.tensor([[10.0, 10.0], [20.0, 30.0]])
    anchors = grid_anchors(2, 3, 8, shapes)
    assert anchors.shape == (2 * 3 * 2, 4)
    centres = [(4, 4), (12, 4), (20, 4), (4, 12), (12, 12), (20, 12)]
    expected = torch.tensor([[cx, cy, w, h] for cx, cy in centres for w, h in ((10, 10), (20, 30))], dtype=torch.float32)
    torch.testing.assert_close(anchors, expected)


def test_anchor_counts_per_location_and_per_level():
    anchors = Anchors(3, 7, (32, 64, 128, 256, 512))
    assert anchors.per_location == 9
    assert anchors.counts(320, 320) == [40 * 40 * 9, 20 * 20 * 9, 10 * 10 * 9, 5 * 5 * 9, 3 * 3 * 9]
    made = anchors(320, 320)
    assert made.shape == (sum(anchors.counts(320, 320)), 4)
    # the first anchor: P3's first cell centred at (4, 4) px, 32 px side, ratio 0.5 (fractional of 320)
    torch.testing.assert_close(made[0], torch.tensor([4, 4, 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)]) / 320)
    # P7 starts after the first four levels; its first cell is centred at 64 px, base side 512 px
    p7 = made[sum(anchors.counts(320, 320)[:4]):]
    torch.testing.assert_close(p7[1], torch.tensor([64.0, 64.0, 512.0, 512.0]) / 320)  # the second shape: ratio 1
    # a non-square input: fractions of its own width and height
    wide = anchors(128, 256)
    torch.testing.assert_close(wide[1], torch.tensor([4 / 256, 4 / 128, 32 / 256, 32 / 128]))


def test_small_faces_get_anchors_in_the_face_config():
    """retinanet_face.yaml's 10 px base side: a 10-16 px face centred on a P3 cell overlaps one
    anchor by IoU >= 0.5 (the paper's 32 px base would leave a 12 px face at IoU 0.14)."""
    m = load_config("retinanet_face.yaml").model
    anchors = Anchors(m.min_level, m.max_level, tuple(m.anchor_sizes), m.scales_per_octave, tuple(m.anchor_ratios))
    made = box_convert(anchors(320, 320), "cxcywh", "xyxy")
    for side in (10, 12, 14, 16, 24, 40, 70, 120, 200, 280):
        c = 164.0  # a P3 cell centre (and close to every coarser level's)
        face = torch.tensor([[c - side / 2, c - side / 2 * 1.15, c + side / 2, c + side / 2 * 1.15]]) / 320
        assert box_iou(face, made).max() >= 0.5, side
    paper = box_convert(Anchors(3, 7, (32, 64, 128, 256, 512))(320, 320), "cxcywh", "xyxy")
    face = torch.tensor([[158.0, 158.0, 170.0, 170.0]]) / 320
    assert box_iou(face, paper).max() < 0.2


# ----------------------------------------------------------------------------- model


def test_fpn_output_shapes_per_level():
    features = [torch.randn(2, 16, 40, 40), torch.randn(2, 32, 20, 20), torch.randn(2, 64, 10, 10)]
    fpn = FPN((16, 32, 64), channels=24, min_level=3, max_level=7)
    assert [tuple(p.shape) for p in fpn(features)] == [(2, 24, 40, 40), (2, 24, 20, 20), (2, 24, 10, 10),
                                                        (2, 24, 5, 5), (2, 24, 3, 3)]
    five = FPN((16, 32, 64), channels=24, min_level=3, max_level=5, separable=True)
    assert [tuple(p.shape) for p in five(features)] == [(2, 24, 40, 40), (2, 24, 20, 20), (2, 24, 10, 10)]
    four_to_six = FPN((16, 32, 64), channels=8, min_level=4, max_level=6)
    assert [p.shape[-1] for p in four_to_six(features)] == [20, 10, 5]
    assert "3" not in four_to_six.lateral  # no P3: no lateral conv for C3


def test_top_down_path_carries_deep_features_into_p3():
    """With the top-down path, P3 changes when only C5 changes; without it, it does not."""
    c3, c4, c5 = torch.randn(1, 16, 16, 16), torch.randn(1, 32, 8, 8), torch.randn(1, 64, 4, 4)
    for top_down in (True, False):
        torch.manual_seed(0)
        fpn = FPN((16, 32, 64), 8, 3, 5, top_down=top_down)
        p3 = fpn([c3, c4, c5])[0]
        p3_other = fpn([c3, c4, torch.randn(1, 64, 4, 4)])[0]
        assert torch.allclose(p3, p3_other) is not top_down


def test_model_outputs_match_the_anchors_for_odd_sizes():
    detector = build_retinanet(small_cfg(num_classes=3))
    model = detector.model.eval()
    for h, w in ((128, 128), (96, 160), (100, 75)):  # 100 x 75: not a multiple of anything
        with torch.no_grad():
            levels = model.pyramid(torch.randn(1, 3, h, w))
            pred_locs, pred_logits = model(torch.randn(1, 3, h, w))
        assert [tuple(p.shape[-2:]) for p in levels] == [level_shape(h, w, level) for level in range(3, 8)]
        p = sum(detector.postprocess.anchors.counts(h, w))
        assert pred_locs.shape == (1, p, 4) and pred_logits.shape == (1, p, 3)


def test_prior_bias_gives_initial_probability_0_01():
    torch.manual_seed(0)
    model = build_retinanet(small_cfg(num_classes=2)).model.eval()
    bias = model.cls_subnet.out.bias
    torch.testing.assert_close(bias, torch.full_like(bias, -math.log(99)))  # -log((1 - 0.01) / 0.01)
    with torch.no_grad():
        _, logits = model(torch.randn(2, 3, 128, 128))
    probs = logits.sigmoid()
    assert probs.mean().item() == pytest.approx(0.01, abs=0.002)  # weights std 0.01: every score ~ the prior
    assert probs.max().item() < 0.05
    assert build_retinanet(small_cfg(prior_prob=0.2)).model.cls_subnet.out.bias[0].item() == pytest.approx(
        -math.log(0.8 / 0.2))


def test_parameter_counts():
    # the default CPU model: small backbone (width 32), 64-channel FPN P3-P7, 9 anchors, one class
    detector = build_model(model_config("retinanet", num_classes=1))
    assert n_params(detector.model) == 295_277
    assert n_params(detector.model.backbone) == 163_840
    assert n_params(SmallBackbone(32)) == 163_840
    # the face config: 3 anchors per location instead of 9, so both output convs (3x3, 64 inputs) shrink
    face = build_model(load_config("retinanet_face.yaml").model)
    # cls out: 64*9*(9-3)*1 + (9-3) = 3,462; box out: 64*9*(36-12) + 24 = 13,848 fewer
    assert n_params(face.model) == 295_277 - 3_462 - 13_848
    # the paper's plain 3x3 convs, no GroupNorm: subnet = 4 x (64*64*9 + 64) + output conv
    paper = build_model(model_config("retinanet", num_classes=1, separable=False, head_norm=False))
    tower = 4 * (64 * 64 * 9 + 64)
    assert n_params(paper.model.box_subnet) == tower + 64 * 36 * 9 + 36
    assert n_params(paper.model.cls_subnet) == tower + 64 * 9 * 9 + 9


def test_resnet_backbone_when_torchvision_imports():
    pytest.importorskip("torchvision")
    detector = build_model(model_config("retinanet", num_classes=2, backbone="resnet18", image_size=128))
    with torch.no_grad():
        pred_locs, pred_logits = detector.model.eval()(torch.randn(1, 3, 128, 128))
    assert pred_logits.shape == (1, sum(detector.postprocess.anchors.counts(128, 128)), 2)


# ----------------------------------------------------------------------------- matching


def test_matching_thresholds_and_the_ignore_band():
    """Anchors built to overlap one face by known IoUs: 1.0 and 0.5 are positive (>= fg_iou 0.5),
    0.45 and 0.4 are ignored (0.4 is not < bg_iou 0.4), 0.3 is negative."""
    face = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # same height, shifted right by d: IoU = (10 - d) / (10 + d)  ->  d = 10 (1 - u) / (1 + u)
    ious = [1.0, 0.5, 0.45, 0.4, 0.3]
    anchors = torch.stack([face[0] + torch.tensor([d, 0, d, 0]) for d in (10 * (1 - u) / (1 + u) for u in ious)])
    torch.testing.assert_close(box_iou(face, anchors)[0], torch.tensor(ious))
    labels, matched = match_anchors(face[None], torch.tensor([[2]]), torch.ones(1, 1, dtype=torch.bool), anchors,
                                    fg_iou=0.5, bg_iou=0.4, low_quality_matches=False)
    assert labels[0].tolist() == [2, 2, IGNORE, IGNORE, BACKGROUND]
    assert torch.equal(matched[0, 0], face[0])
    # configurable: a band from 0.35 to 0.45
    labels, _ = match_anchors(face[None], torch.tensor([[0]]), torch.ones(1, 1, dtype=torch.bool), anchors,
                              fg_iou=0.45, bg_iou=0.35, low_quality_matches=False)
    assert labels[0].tolist() == [0, 0, 0, IGNORE, BACKGROUND]
    # no band (bg_iou = fg_iou): nothing is ignored
    labels, _ = match_anchors(face[None], torch.tensor([[0]]), torch.ones(1, 1, dtype=torch.bool), anchors,
                              fg_iou=0.42, bg_iou=0.42, low_quality_matches=False)
    assert labels[0].tolist() == [0, 0, 0, BACKGROUND, BACKGROUND]


def test_an_anchor_at_exactly_the_foreground_iou_is_positive():
    """IoU >= fg_iou is positive, IoU < bg_iou negative: anchors inside a 10 x 10 face covering
    half of it (IoU 0.5 exactly, in float32 too) and 0.4 of it sit exactly on the two thresholds."""
    face = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([[0.0, 0.0, 5.0, 10.0], [0.0, 0.0, 4.0, 10.0], [0.0, 0.0, 3.0, 10.0]])
    assert box_iou(face, anchors)[0].tolist() == [0.5, pytest.approx(0.4), pytest.approx(0.3)]
    labels, _ = match_anchors(face[None], torch.tensor([[1]]), torch.ones(1, 1, dtype=torch.bool), anchors,
                              fg_iou=0.5, bg_iou=0.4, low_quality_matches=False)
    assert labels[0].tolist() == [1, IGNORE, BACKGROUND]


def test_low_quality_match_and_padding():
    """A face overlapping its best anchor by only 0.2 still claims it; a padded row claims nothing;
    each anchor takes the class of the face it overlaps most."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]])
    small = torch.tensor([8.0, 0, 10, 10])  # IoU 20 / 100 = 0.2 with anchor 0
    exact = torch.tensor([20.0, 0, 30, 10])
    gt = torch.stack([small, exact, torch.zeros(4)])[None]  # third row: padding
    valid = torch.tensor([[True, True, False]])
    labels, matched = match_anchors(gt, torch.tensor([[1, 2, 0]]), valid, anchors, low_quality_matches=False)
    assert labels[0].tolist() == [BACKGROUND, 2, BACKGROUND]
    labels, matched = match_anchors(gt, torch.tensor([[1, 2, 0]]), valid, anchors, low_quality_matches=True)
    assert labels[0].tolist() == [1, 2, BACKGROUND]
    assert torch.equal(matched[0, 0], small)
    # an empty image: every anchor is background
    labels, _ = match_anchors(torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.long),
                              torch.zeros(1, 1, dtype=torch.bool), anchors)
    assert (labels == BACKGROUND).all()


def test_matching_agrees_with_a_loop_oracle():
    g = torch.Generator().manual_seed(3)
    anchors = box_convert(Anchors(3, 4, (16, 32))(64, 64), "cxcywh", "xyxy")
    centres = torch.rand(2, 4, 2, generator=g)
    sizes = 0.1 + 0.4 * torch.rand(2, 4, 2, generator=g)
    gt = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)
    gt_labels = torch.randint(0, 3, (2, 4), generator=g)
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    labels, _ = match_anchors(gt, gt_labels, valid, anchors, 0.5, 0.4, low_quality_matches=False)
    for b in range(2):
        for p in range(len(anchors)):
            best, label = -1.0, BACKGROUND
            for m in range(4):
                if valid[b, m]:
                    iou = box_iou(gt[b, m][None], anchors[p][None]).item()
                    if iou > best:
                        best, label = iou, gt_labels[b, m].item()
            expected = label if best >= 0.5 else (BACKGROUND if best < 0.4 else IGNORE)
            assert labels[b, p].item() == expected


# ----------------------------------------------------------------------------- focal loss


def test_focal_loss_worked_example_by_hand():
    """gamma = 2, alpha = 0.25, one class (the numbers of RetinaNetLoss's docstring):
        positive, p = 0.9: p_t = 0.9, CE = -ln 0.9 = 0.105361, FL = 0.25 * 0.1^2 * 0.105361 = 0.000263
        negative, p = 0.9: p_t = 0.1, CE = -ln 0.1 = 2.302585, FL = 0.75 * 0.9^2 * 2.302585 = 1.398820
        negative, p = 0.1: p_t = 0.9, CE = 0.105361,            FL = 0.75 * 0.1^2 * 0.105361 = 0.000790
        positive, p = 0.5: p_t = 0.5, CE = ln 2 = 0.693147,    FL = 0.25 * 0.5^2 * 0.693147 = 0.043322
    """
    p = torch.tensor([0.9, 0.9, 0.1, 0.5])
    logits = torch.log(p / (1 - p))
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    torch.testing.assert_close(loss, torch.tensor([0.000263403, 1.398820, 0.000790209, 0.0433217]), rtol=1e-5, atol=1e-8)
    # the notes' example: an easy example (p_t = 0.9) loses 100x against CE with gamma = 2 (before alpha)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    unweighted = sigmoid_focal_loss(logits, targets, alpha=None, gamma=2.0)
    assert (ce[0] / unweighted[0]).item() == pytest.approx(100.0, rel=1e-4)


def test_focal_loss_reduces_to_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, generator=g) * 3
    targets = (torch.rand(50, 3, generator=g) < 0.3).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0), bce)
    # alpha = 0.5 weighs both classes by 1/2: half of BCE
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=0.5, gamma=0.0), 0.5 * bce)
    # gamma > 0 never increases the loss, and well-classified examples lose the most
    focal = sigmoid_focal_loss(logits, targets, alpha=None, gamma=2.0)
    assert (focal <= bce + 1e-7).all()


def test_criterion_by_hand_on_three_anchors():
    """Three anchors, one face matching anchor 0 exactly (IoU 1), anchor 1 in the ignore band
    (IoU 0.45), anchor 2 far away (background). Logits all 0 (p = 0.5), offsets all 0:
        cls = [0.25 * 0.5^2 * ln 2  (positive)  +  0  (ignored)  +  0.75 * 0.5^2 * ln 2  (negative)] / 1
            = 0.25 ln 2 = 0.173287
        box = Smooth L1 of anchor 0's zero offsets against its exact target (0): 0
    """
    face = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    d = 0.2 * (1 - 0.45) / 1.45  # shift giving IoU 0.45
    anchors_xyxy = torch.tensor([[0.0, 0.0, 0.2, 0.2], [d, 0.0, 0.2 + d, 0.2], [0.7, 0.7, 0.9, 0.9]])
    criterion = RetinaNetLoss(box_convert(anchors_xyxy, "xyxy", "cxcywh"))
    target = {"boxes": face, "labels": torch.tensor([0])}
    terms = criterion((torch.zeros(1, 3, 4), torch.zeros(1, 3, 1)), [target])
    assert terms["cls"].item() == pytest.approx(0.25 * math.log(2), rel=1e-5)
    assert terms["box"].item() == pytest.approx(0.0, abs=1e-6)
    # offset 1 on anchor 0's x: Smooth L1(1) = 0.5 (beta 1), / N_pos 1
    locs = torch.zeros(1, 3, 4)
    locs[0, 0, 0] = 1.0
    assert criterion((locs, torch.zeros(1, 3, 1)), [target])["box"].item() == pytest.approx(0.5)
    # GIoU: the exact box costs 0
    giou = RetinaNetLoss(box_convert(anchors_xyxy, "xyxy", "cxcywh"), box_loss="giou")
    assert giou((torch.zeros(1, 3, 4), torch.zeros(1, 3, 1)), [target])["box"].item() == pytest.approx(0.0, abs=1e-6)


def test_loss_on_empty_images_is_finite_and_backpropagates():
    detector = build_retinanet(small_cfg())
    outputs = detector.model(torch.randn(2, 3, 128, 128))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    terms = detector.criterion(outputs, [empty, empty])
    assert terms["box"].item() == 0.0 and torch.isfinite(terms["cls"])
    (terms["box"] + terms["cls"]).backward()


def test_loss_refuses_outputs_of_another_size():
    detector = build_retinanet(small_cfg())
    outputs = detector.model(torch.randn(1, 3, 96, 96))
    with pytest.raises(ConfigError, match="anchors"):
        detector.criterion(outputs, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])


# ----------------------------------------------------------------------------- decoding


def test_decode_inverts_encode_on_the_anchors():
    anchors = Anchors(3, 5, (16, 32, 64))(64, 96)  # (P, 4) "cxcywh"
    g = torch.Generator().manual_seed(1)
    centres = torch.rand(len(anchors), 2, generator=g)
    sizes = 0.05 + 0.5 * torch.rand(len(anchors), 2, generator=g)
    boxes = torch.cat([centres, sizes], dim=-1)  # "cxcywh"
    offsets = encode(boxes, anchors, VARIANCES)
    torch.testing.assert_close(decode_boxes(offsets, anchors), box_convert(boxes, "cxcywh", "xyxy"))
    # absurd size offsets are bounded: no inf
    assert torch.isfinite(decode_boxes(torch.full((1, 4), 1e4), anchors[:1])).all()


def test_postprocess_finds_planted_boxes_per_level_and_class():
    """Plant two confident detections (different levels and classes) and one duplicate that
    NMS must remove; everything else scores ~0."""
    anchors = Anchors(3, 4, (16, 32), scales_per_octave=1, ratios=(1.0,))
    post = RetinaNetPostprocess(anchors, 64, pre_nms_top_k=5)
    made = anchors(64, 64)  # P3: 8 x 8 = 64 anchors, P4: 16
    assert anchors.counts(64, 64) == [64, 16]
    locs = torch.zeros(1, 80, 4)
    logits = torch.full((1, 80, 2), -10.0)
    logits[0, 9, 0] = 3.0  # P3 cell (1, 1), class 0
    logits[0, 10, 0] = 2.0  # its neighbour: 16 px boxes 8 px apart overlap by IoU 1/3 > 0.3: suppressed
    logits[0, 64 + 5, 1] = 1.0  # P4 cell (1, 1), class 1
    found = post((locs, logits), min_score=0.5, nms_iou=0.3, top_k=10)[0]
    assert found["labels"].tolist() == [0, 1]
    torch.testing.assert_close(found["scores"], torch.tensor([3.0, 1.0]).sigmoid())
    torch.testing.assert_close(found["boxes"], box_convert(made[[9, 69]], "cxcywh", "xyxy"))
    # at nms_iou 0.5 the neighbour (IoU 1/3) survives; top_k cuts
    assert len(post((locs, logits), min_score=0.5, nms_iou=0.5, top_k=10)[0]["scores"]) == 3
    assert len(post((locs, logits), min_score=0.5, nms_iou=0.5, top_k=2)[0]["scores"]) == 2
    # an input size whose anchors do not fit the outputs is refused with a clear message
    with pytest.raises(ConfigError, match="input_hw"):
        post((locs, logits), min_score=0.5, nms_iou=0.5, top_k=10, input_hw=(128, 128))


def test_postprocess_pre_nms_top_k_is_per_level():
    """With pre_nms_top_k = 1, each level gives one candidate: the best of P3 and the best of P4,
    even though P3 holds the two best scores overall."""
    anchors = Anchors(3, 4, (16, 32), scales_per_octave=1, ratios=(1.0,))
    post = RetinaNetPostprocess(anchors, 64, pre_nms_top_k=1)
    logits = torch.full((1, 80, 1), -10.0)
    logits[0, 0, 0], logits[0, 63, 0], logits[0, 70, 0] = 5.0, 4.0, 1.0
    found = post((torch.zeros(1, 80, 4), logits), min_score=0.1, nms_iou=0.5, top_k=100)[0]
    torch.testing.assert_close(found["scores"], torch.tensor([5.0, 1.0]).sigmoid())


# ----------------------------------------------------------------------------- builder and config


def test_builder_via_models_and_detector():
    assert MODELS["retinanet"] is build_retinanet
    detector = build_model(small_cfg())
    assert isinstance(detector, Detector)
    assert isinstance(detector.criterion, RetinaNetLoss) and isinstance(detector.postprocess, RetinaNetPostprocess)
    assert isinstance(detector.model, RetinaNet)
    assert detector.input_policy == "scalable" and detector.size_multiple == 32 and detector.image_size == 128
    assert detector.mean == IMAGENET_MEAN and detector.std == IMAGENET_STD
    # a photo of any size goes through the one inference path
    found = detector(torch.rand(3, 90, 150), min_score=0.0, top_k=7)
    assert found.boxes.shape == (7, 4)


def test_config_refuses_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key 'model.anchor_size'.*did you mean 'anchor_sizes'"):
        model_config("retinanet", anchor_size=[16])
    with pytest.raises(ConfigError, match="unknown key 'model.fpn'"):  # face_ssd's key, not RetinaNet's
        load_config("retinanet_face.yaml", ["model.fpn=false"])
    with pytest.raises(ConfigError, match="model.box_loss"):
        load_config("retinanet_face.yaml", ["model.box_loss=l2"])
    with pytest.raises(ConfigError, match="anchor_sizes"):
        build_model(small_cfg(anchor_sizes=[16.0, 32.0]))  # 2 sides for 5 levels
    with pytest.raises(ConfigError, match="bg_iou"):
        build_model(small_cfg(fg_iou=0.3, bg_iou=0.4))
    with pytest.raises(ConfigError, match="image_size"):
        build_model(small_cfg(image_size=100))
    with pytest.raises(ConfigError, match="torchvision|resnet"):
        try:
            import torchvision  # noqa: F401
        except ImportError:
            build_model(small_cfg(backbone="resnet18"))
        else:
            build_model(small_cfg(backbone="resnet18", pretrained="/no/such/file.pth"))


def test_shipped_configs_build():
    face = load_config("retinanet_face.yaml")
    bccd = load_config("retinanet_bccd.yaml", ["model.num_classes=3"])
    assert face.model.anchor_ratios == [1.2] and face.data.augment == "face"
    assert build_model(face.model).postprocess.anchors.per_location == 3
    assert build_model(bccd.model).postprocess.anchors.per_location == 9


# ----------------------------------------------------------------------------- overfitting


@pytest.mark.parametrize("box_loss", ["smooth_l1", "giou"])
def test_overfits_a_few_synthetic_scenes(box_loss):
    """Adam on three synthetic scenes: the loss falls by more than half, and afterwards every
    face is found (IoU >= 0.5 with a detection scoring >= 0.3)."""
    torch.manual_seed(0)
    images, targets = scene_batch(128, seeds=(1, 2, 3))
    cfg = small_cfg(width=16, fpn_channels=32, anchor_sizes=[12.0, 24.0, 48.0, 96.0, 192.0], anchor_ratios=[1.0],
                    box_loss=box_loss)
    detector = build_model(cfg)
    optimizer = torch.optim.Adam(detector.model.parameters(), lr=3e-3)
    losses = []
    detector.model.train()
    for _ in range(80):
        terms = detector.criterion(detector.model(images), targets)
        loss = terms["cls"] + terms["box"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    detector.model.eval()
    with torch.no_grad():
        detections = detector.postprocess(detector.model(images), min_score=0.3, nms_iou=detector.nms_iou, top_k=20)
    for det, target in zip(detections, targets):
        assert len(det["boxes"]) > 0
        assert (box_iou(target["boxes"], det["boxes"]).max(dim=1).values >= 0.5).all()


# ----------------------------------------------------------------------------- the library's tools, unchanged


def test_trains_saves_loads_and_detects_through_the_common_tools(tmp_path, monkeypatch):
    """python -m facedet.train on retinanet_face.yaml (tiny), then the checkpoint rebuilds its
    RetinaNet, detects in a photo of another size, and the evaluator scores it."""
    from facedet import evaluate, train
    from facedet.checkpoint import load
    from facedet.cli import run_cli

    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    tiny = ["data.synthetic_train=16", "data.synthetic_val=4", "data.num_workers=0", "train.batch_size=8",
            "train.device=cpu", "train.epochs=1", "model.image_size=128", "model.width=8", "model.fpn_channels=16",
            "model.head_depth=1", "data.augment=flip"]
    assert run_cli(train.main, ["--config", "retinanet_face.yaml", f"out_dir={tmp_path / 'runs'}", "name=r", *tiny]) == 0
    checkpoint = tmp_path / "runs" / "r" / "best.pt"
    detector = load(checkpoint, "cpu")
    assert isinstance(detector.postprocess, RetinaNetPostprocess) and detector.class_names == ["face"]
    found = detector(torch.rand(3, 100, 170), min_score=0.0, top_k=5)
    assert found.boxes.shape == (5, 4) and (found.boxes[:, 2:] <= torch.tensor([170.0, 100.0]) + 1e-3).all()
    assert run_cli(evaluate.main, ["--checkpoint", str(checkpoint), "--device", "cpu"]) == 0


def test_p7_is_computed_from_p6_after_a_relu():
    """P7 = 3x3/2 conv(ReLU(P6)) (Lin et al. 2017, section 4): P6 itself keeps its negative values."""
    torch.manual_seed(0)
    features = [torch.randn(1, 16, 16, 16), torch.randn(1, 32, 8, 8), torch.randn(1, 64, 4, 4)]
    fpn = FPN((16, 32, 64), channels=8, min_level=3, max_level=7)
    with torch.no_grad():
        *_, p6, p7 = fpn(features)
        assert (p6 < 0).any()
        torch.testing.assert_close(p7, fpn.p7(F.relu(p6)))
        assert not torch.allclose(p7, fpn.p7(p6))
