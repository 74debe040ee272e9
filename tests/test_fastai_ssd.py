"""fast.ai-style SSD head (seed 004): 189 anchors, tanh boxes, BCE / focal loss."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from facedet.errors import ConfigError
from facedet.models.fastai_ssd import (
    FastaiSSD,
    FastaiSSDLoss,
    FastaiSSDPostprocess,
    activations_to_boxes,
    build_fastai_ssd,
    make_anchors,
)

from conftest import target


def test_anchors_hand_computed():
    anchors, cell_sizes = make_anchors()
    assert anchors.shape == (189, 4) and cell_sizes.shape == (189, 1)  # (16 + 4 + 1) * 9
    expected = {
        0: (0.125, 0.125, 0.1875, 0.1875),  # 4x4 grid, first cell, zoom 0.75, 1:1
        1: (0.125, 0.125, 0.1875, 0.09375),  # ratio 1:0.5
        2: (0.125, 0.125, 0.09375, 0.1875),  # ratio 0.5:1
        3: (0.125, 0.125, 0.25, 0.25),  # zoom 1: exactly the cell
        8: (0.125, 0.125, 0.65 / 4, 1.3 / 4),  # zoom 1.3, ratio 0.5:1
        9: (0.375, 0.125, 0.1875, 0.1875),  # next cell to the right
        36: (0.125, 0.375, 0.1875, 0.1875),  # first cell of the second row
        144: (0.25, 0.25, 0.375, 0.375),  # 2x2 grid
        180: (0.5, 0.5, 0.75, 0.75),  # 1x1 grid
        188: (0.5, 0.5, 0.65, 1.3),  # zoom 1.3 on the 1x1 grid: larger than the image
    }
    for index, value in expected.items():
        torch.testing.assert_close(anchors[index], torch.tensor(value), msg=f"anchor {index}")
    assert cell_sizes[:144].eq(0.25).all() and cell_sizes[144:180].eq(0.5).all()
    assert cell_sizes[180:].eq(1.0).all()


def test_head_shapes_default_and_custom_backbone():
    model = FastaiSSD(num_classes=3, width=8).eval()
    with torch.no_grad():
        locs, scores = model(torch.randn(2, 3, 224, 224))
    assert locs.shape == (2, 189, 4) and scores.shape == (2, 189, 3)
    # any module that yields a 7x7 map will do
    patchify = nn.Conv2d(3, 64, kernel_size=32, stride=32)  # 224 -> 7
    model = FastaiSSD(num_classes=1, backbone=patchify, backbone_channels=64).eval()
    with torch.no_grad():
        locs, scores = model(torch.randn(1, 3, 224, 224))
    assert locs.shape == (1, 189, 4) and scores.shape == (1, 189, 1)
    assert torch.allclose(model.out[0].cls.bias, torch.tensor(-3.0))


def test_activations_to_boxes_limits():
    anchors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    cell = torch.tensor([[0.25]])
    zero = activations_to_boxes(torch.zeros(1, 4), anchors, cell)
    torch.testing.assert_close(zero, torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    # tanh -> +1: centre + half a cell (0.125), size x1.5; tanh -> -1: centre - 0.125, size x0.5
    big = activations_to_boxes(torch.full((1, 4), 50.0), anchors, cell)
    torch.testing.assert_close(big, torch.tensor([[0.475, 0.325, 0.775, 0.925]]))
    small = activations_to_boxes(torch.full((1, 4), -50.0), anchors, cell)
    torch.testing.assert_close(small, torch.tensor([[0.325, 0.275, 0.425, 0.475]]))


# two anchors: the left and right halves of the image, cells half the image wide
TWO = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]])
HALF = torch.tensor([[0.5], [0.5]])


def test_loss_worked_numbers():
    targets = [target([[0.0, 0.0, 0.5, 1.0]], [0])]  # the left half: anchor 0 positive
    pred_locs = torch.zeros(1, 2, 4)
    pred_locs[0, 0, 0] = math.atanh(0.5)  # centre moves 0.5 / 2 * 0.5 = 0.125 to the right
    pred_scores = torch.zeros(1, 2, 1)
    terms = FastaiSSDLoss(TWO, HALF)((pred_locs, pred_scores), targets)
    torch.testing.assert_close(terms["loc"], torch.tensor(0.25))  # |0.125| + |0.125|
    # BCE of logit 0 is log 2, for the positive and for the background anchor; / 1 positive
    torch.testing.assert_close(terms["conf"], torch.tensor(2 * math.log(2)))
    terms = FastaiSSDLoss(TWO, HALF, loss="focal")((pred_locs, pred_scores), targets)
    # focal at p = 0.5: 0.25 * 0.25 * log 2 (positive) + 0.75 * 0.25 * log 2 (negative)
    torch.testing.assert_close(terms["conf"], torch.tensor(0.25 * math.log(2)))


def test_loss_without_objects():
    anchors, cells = make_anchors()
    terms = FastaiSSDLoss(anchors, cells)((torch.randn(1, 189, 4), torch.randn(1, 189, 2)),
                                          [target([], [])])
    assert terms["loc"].item() == 0.0 and torch.isfinite(terms["conf"])


def test_overfits_one_batch():
    torch.manual_seed(0)
    anchors, cells = make_anchors()
    model = FastaiSSD(num_classes=2, width=8, drop=0.0)
    criterion = FastaiSSDLoss(anchors, cells, loss="focal")
    images = torch.randn(2, 3, 224, 224)
    targets = [target([[0.1, 0.1, 0.5, 0.6]], [0]), target([[0.4, 0.3, 0.9, 0.8]], [1])]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        terms = criterion(model(images), targets)
        loss = terms["loc"] + terms["conf"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses  # 1.05 -> 0.24
    # still in train mode: 20 steps are too few for BatchNorm's running statistics
    with torch.no_grad():
        detections = FastaiSSDPostprocess(anchors, cells)(model(images), min_score=0.3, nms_iou=0.45, top_k=200)
    assert detections[0]["labels"][0] == 0 and detections[1]["labels"][0] == 1


def test_build_fastai_ssd():
    cfg = SimpleNamespace(num_classes=1, image_size=224, width=8, loss="focal",
                          focal_alpha=0.25, focal_gamma=2.0)
    detector = build_fastai_ssd(cfg)
    assert detector.criterion.loss == "focal"
    with pytest.raises(ConfigError, match="224"):
        build_fastai_ssd(SimpleNamespace(num_classes=1, image_size=300))
