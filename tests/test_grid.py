"""Rung 3, the grid detector: architecture sizes, truth matrix, BCE, connected components, training.

The 400M-parameter seed models are built on the "meta" device (shapes only, no memory) for
the size checks, and GridSimpleCNNModel for real once, for one optimisation step.
"""
import gc
import math

import pytest
import torch
import torchinfo

from facedet.config import GridConfig
from facedet.errors import ConfigError
from facedet.models.detector import Detector
from facedet.models.grid import (
    GridCNNModel,
    GridLoss,
    GridPostprocess,
    GridSimpleCNNModel,
    build_grid_cnn,
    build_grid_simple,
    grid_simple_features,
    truth_matrices,
    truth_matrix,
)
from facedet.models.yolo_face import YOLOFaceTiny

from conftest import n_params, target


# --------------------------------------------------------------------------- architecture


def test_simple_model_matches_the_seed_table():
    with torch.device("meta"):
        model = GridSimpleCNNModel(griddim=7)
        out = model(torch.zeros(2, 3, 224, 224))
        summary = torchinfo.summary(model, input_size=(1, 3, 224, 224), device="meta", verbose=0)
    assert n_params(model) == 412_989_681
    assert summary.total_params == 412_989_681
    assert out.shape == (2, 7, 7)
    assert n_params(grid_simple_features()) == 9_472 + 110_784 + 442_624 + 1_180_160


@pytest.mark.parametrize(
    "cls, griddim, expected",
    [
        # conv stack + Linear 100352 -> 4096 (411,045,888) + Linear 4096 -> S*S
        (GridSimpleCNNModel, 14, 1_743_040 + 411_045_888 + 4096 * 196 + 196),  # 413,591,940
        (GridCNNModel, 7, 1_686_080 + 411_045_888 + 4096 * 49 + 49),  # 412,932,721
        (GridCNNModel, 14, 1_686_080 + 411_045_888 + 4096 * 196 + 196),
    ],
)
def test_model_sizes_and_shapes(cls, griddim, expected):
    with torch.device("meta"):
        model = cls(griddim=griddim)
        out = model(torch.zeros(1, 3, 224, 224))
    assert n_params(model) == expected
    assert out.shape == (1, griddim, griddim)


def test_image_size_must_divide_by_16():
    with torch.device("meta"), pytest.raises(ConfigError, match="multiple of 16"):
        GridSimpleCNNModel(image_size=200)


@pytest.fixture(scope="module")
def simple_model():
    torch.manual_seed(0)
    model = GridSimpleCNNModel(griddim=7)
    yield model
    del model
    gc.collect()


def test_simple_model_one_step_lowers_the_loss(simple_model):
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    targets = [target([[0.1, 0.1, 0.5, 0.6]]), target([[0.6, 0.2, 0.9, 0.5], [0.2, 0.7, 0.4, 0.9]])]
    criterion = GridLoss(griddim=7)
    optimizer = torch.optim.SGD(simple_model.parameters(), lr=1e-2)
    out = simple_model(images)
    assert out.shape == (2, 7, 7) and out.min() >= 0 and out.max() <= 1
    before = criterion(out, targets)["bce"]
    before.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        after = criterion(simple_model(images), targets)["bce"]
    assert after < before


# --------------------------------------------------------------------------- truth matrix


def test_truth_matrix_hand_made_boxes():
    # S = 4: cell centres at 0.125, 0.375, 0.625, 0.875
    block = truth_matrix(torch.tensor([[0.1, 0.1, 0.4, 0.4]]), griddim=4)
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 1
    assert torch.equal(block, expected)
    # holds no cell centre: only the cell holding the box centre (0.25 -> cell 1)
    tiny = truth_matrix(torch.tensor([[0.2, 0.2, 0.3, 0.3]]), griddim=4)
    expected = torch.zeros(4, 4)
    expected[1, 1] = 1
    assert torch.equal(tiny, expected)
    # a wide box over rows 2-3, columns 0-3, plus the tiny one: the union
    both = truth_matrix(torch.tensor([[0.2, 0.2, 0.3, 0.3], [0.0, 0.55, 1.0, 1.0]]), griddim=4)
    assert both.sum() == 1 + 8 and both[2:].sum() == 8
    # edges exactly on cell centres count as inside: the same 2 x 2 block as the first box
    edges = truth_matrix(torch.tensor([[0.125, 0.125, 0.375, 0.375]]), griddim=4)
    assert torch.equal(edges, block)
    assert truth_matrix(torch.zeros(0, 4), griddim=7).sum() == 0


def truth_oracle(boxes, S):
    """Loop version: cell centre inside a box, or the cell holding a box centre."""
    out = torch.zeros(S, S)
    for x1, y1, x2, y2 in boxes.tolist():
        for i in range(S):
            for j in range(S):
                cx, cy = (j + 0.5) / S, (i + 0.5) / S
                if x1 <= cx <= x2 and y1 <= cy <= y2:
                    out[i, j] = 1
        out[min(int((y1 + y2) / 2 * S), S - 1), min(int((x1 + x2) / 2 * S), S - 1)] = 1
    return out


def test_truth_matrices_match_the_loop_oracle():
    g = torch.Generator().manual_seed(0)
    targets = []
    for m in (3, 0, 7):
        xy = torch.rand(m, 2, generator=g) * 0.7
        targets.append(target(torch.cat([xy, xy + torch.rand(m, 2, generator=g) * 0.3], 1).tolist()))
    for S in (7, 14):
        batch = truth_matrices(targets, griddim=S)
        assert batch.shape == (3, S, S)
        for n, t in enumerate(targets):
            assert torch.equal(batch[n], truth_oracle(t["boxes"], S))
            assert torch.equal(batch[n], truth_matrix(t["boxes"], S))


# --------------------------------------------------------------------------- loss


def test_bce_seed_example():
    t = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 2, 2)
    p = torch.tensor([0.2, 0.4, 0.1, 0.7]).view(1, 2, 2)
    assert round(GridLoss(griddim=2)(p, t)["bce"].item(), 4) == 0.4004


def test_loss_from_target_dicts():
    targets = [target([[0.0, 0.0, 0.5, 0.5]]), target([])]  # image 0: the top-left quarter of a 2 x 2 grid
    p = torch.full((2, 2, 2), 0.2)
    p[0, 0, 0] = 0.6
    bce = GridLoss(griddim=2)(p, targets)["bce"].item()
    assert bce == pytest.approx((-math.log(0.6) - 7 * math.log(0.8)) / 8, rel=1e-6)


def test_loss_refuses_another_grid_size():
    with pytest.raises(ConfigError, match="griddim=7"):
        GridLoss(griddim=7)(torch.rand(1, 14, 14), [target([])])


# --------------------------------------------------------------------------- post-processing


def grid(rows: list[str]) -> torch.Tensor:
    """A probability grid drawn as text: digit d -> d / 10, "." -> 0."""
    return torch.tensor([[0.0 if c == "." else int(c) / 10 for c in row] for row in rows])


def test_postprocess_two_separate_faces_give_two_boxes():
    probs = grid(
        [
            "99....",
            "97....",
            "......",
            "...888",
            "...8.6",
            "......",
        ]
    )
    det = GridPostprocess(griddim=6)(probs[None], min_score=0.5)[0]
    assert det["scores"].tolist() == pytest.approx([(0.9 + 0.9 + 0.9 + 0.7) / 4, (0.8 * 4 + 0.6) / 5])
    expected = torch.tensor([[0, 0, 2, 2], [3, 3, 6, 5]]) / 6  # cells -> fractions of the image
    assert torch.allclose(det["boxes"], expected)
    assert det["labels"].tolist() == [0, 0]


def test_postprocess_touching_faces_merge_into_one_box():
    """The seed's known failure: cells touching, even only at a corner (8-neighbours), make one box."""
    corner = grid(["99....", "99....", "..88..", "..88..", "......", "......"])
    side = grid(["99888.", "99888.", "......", "......", "......", "......"])
    post = GridPostprocess(griddim=6)
    dets = post(torch.stack([corner, side]), min_score=0.5)
    assert len(dets[0]["boxes"]) == 1
    assert torch.allclose(dets[0]["boxes"][0], torch.tensor([0, 0, 4, 4]) / 6)
    assert len(dets[1]["boxes"]) == 1
    assert torch.allclose(dets[1]["boxes"][0], torch.tensor([0, 0, 5, 2]) / 6)


def test_postprocess_threshold_and_top_k():
    probs = grid(["9.7.5", ".....", "8....", ".....", "....4"])[None]
    post = GridPostprocess(griddim=5)
    assert post(probs, min_score=0.5)[0]["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.5])
    assert post(probs, min_score=0.5, top_k=2)[0]["scores"].tolist() == pytest.approx([0.9, 0.8])
    empty = post(probs, min_score=0.95)[0]
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,) and empty["labels"].shape == (0,)


def test_low_min_score_ranks_components_instead_of_merging_faint_cells():
    """Evaluation asks for min_score 0.01; faint cells must not bridge two faces into one box."""
    probs = grid(["99111", "11111", "11188", "11188", "11111"])[None]  # "1" = 0.1 everywhere else
    post = GridPostprocess(griddim=5)  # components at p >= 0.5
    det = post(probs, min_score=0.01)[0]
    assert det["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert post(probs, min_score=0.85)[0]["scores"].tolist() == pytest.approx([0.9])
    assert len(GridPostprocess(griddim=5, cell_threshold=0.05)(probs, min_score=0.01)[0]["boxes"]) == 1


def test_truth_matrix_then_postprocess_recovers_cell_aligned_boxes():
    boxes = torch.tensor([[0.0, 0.0, 2 / 7, 3 / 7], [4 / 7, 4 / 7, 1.0, 6 / 7]])
    dets = GridPostprocess(griddim=7)(truth_matrix(boxes, 7)[None], min_score=0.5)[0]
    assert torch.allclose(dets["boxes"][dets["boxes"][:, 0].argsort()], boxes)


# --------------------------------------------------------------------------- training and builders


def test_grid_loss_overfits_one_batch():
    """A small fully-convolutional stand-in for the 400M-parameter model: YOLOFaceTiny's
    p channel as the cell probability."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = 0.3 + 0.1 * torch.randn(2, 3, 224, 224, generator=g)
    images[0, :, 32:128, 32:112] = 0.9
    images[1, :, 128:208, 96:200] = 0.9
    targets = [
        target([[32 / 224, 32 / 224, 112 / 224, 128 / 224]]),
        target([[96 / 224, 128 / 224, 200 / 224, 208 / 224]]),
    ]
    stand_in = YOLOFaceTiny(width=16)
    criterion = GridLoss(griddim=7)
    optimizer = torch.optim.Adam(stand_in.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = criterion(stand_in(images)[..., 0], targets)["bce"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 5, (first, loss.item())
    stand_in.eval()
    with torch.no_grad():
        dets = GridPostprocess(griddim=7)(stand_in(images)[..., 0], min_score=0.5)
    assert [len(d["boxes"]) for d in dets] == [1, 1]


def test_builders():
    cfg = GridConfig(griddim=14, image_size=224, num_classes=1)
    with torch.device("meta"):
        simple, cnn = build_grid_simple(cfg), build_grid_cnn(cfg)
        with pytest.raises(ConfigError, match="num_classes"):
            build_grid_simple(GridConfig(griddim=7, image_size=224, num_classes=3))
    assert isinstance(simple, Detector) and isinstance(simple.model, GridSimpleCNNModel)
    assert type(cnn.model) is GridCNNModel
    assert simple.criterion.griddim == 14 and cnn.postprocess.griddim == 14


def test_grid_head_ends_in_a_sigmoid_of_the_last_linear_layer():
    """The seed's head: Linear -> Sigmoid, so each cell is a probability the BCE loss can read."""
    from facedet.models.grid import GridSimpleCNNModel

    model = GridSimpleCNNModel(griddim=2, image_size=32).eval()
    seen = {}
    model.head[-2].register_forward_hook(lambda module, args, out: seen.setdefault("logits", out))
    with torch.no_grad():
        probs = model(torch.randn(2, 3, 32, 32) * 3)
    torch.testing.assert_close(probs.reshape(2, -1), torch.sigmoid(seen["logits"]).reshape(2, -1))


def test_small_grid_head_is_a_sigmoid_of_its_1x1_convolution():
    """GridSmallModel: one 1x1 conv logit per cell, then a sigmoid (the BCE loss reads probabilities).
    The head's logits are replaced by -6 .. 6, where a hard sigmoid or a clamp would differ."""
    from facedet.models.grid import GridSmallModel

    model = GridSmallModel(width=8, griddim=2, image_size=64).eval()
    logits = torch.linspace(-6, 6, 8).reshape(2, 1, 2, 2)
    model.head.register_forward_hook(lambda module, args, out: logits)
    with torch.no_grad():
        probs = model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(probs, torch.sigmoid(logits).squeeze(1))
