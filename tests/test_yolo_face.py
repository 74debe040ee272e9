"""Rung 4, YOLO-face: architecture sizes, target encoding, loss values, post-processing, training.

The 400M-parameter seed model is built on the "meta" device (shapes only, no memory) for
the size checks, and for real once, for one optimisation step.
"""
import dataclasses
import gc
import math

import pytest
import torch
import torchinfo

from facedet.boxes import box_iou
from facedet.config import YOLOFaceTinyConfig
from facedet.errors import ConfigError
from facedet.models.detector import Detector
from facedet.models.yolo_face import (
    YOLOFaceCNN,
    YOLOFaceLoss,
    YOLOFaceTiny,
    YOLOPostprocess,
    build_yolo_face,
    build_yolo_face_tiny,
    cell_to_image,
    decode_boxes,
    encode_targets,
)
from facedet.models.backbone import yolo_face_features

from conftest import n_params, target


def synthetic_batch(n_images: int = 2, size: int = 224, seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """Noisy grey images with two bright "faces" (squares with two dark eyes) each."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 + 0.1 * torch.randn(n_images, 3, size, size, generator=g)
    targets = []
    for n in range(n_images):
        boxes = []
        for k in range(2):
            side = int(size * (0.2 + 0.15 * k))
            x0 = int(torch.randint(0, size // 2 - side // 2, (1,), generator=g)) + k * size // 2
            y0 = int(torch.randint(0, size - side, (1,), generator=g))
            x0 = min(x0, size - side)
            images[n, :, y0 : y0 + side, x0 : x0 + side] = torch.tensor([0.9, 0.7, 0.6])[:, None, None]
            eye = side // 6
            for ex in (x0 + side // 4, x0 + 3 * side // 4 - eye):
                images[n, :, y0 + side // 3 : y0 + side // 3 + eye, ex : ex + eye] = 0.0
            boxes.append([x0 / size, y0 / size, (x0 + side) / size, (y0 + side) / size])
        targets.append(target(boxes))
    return images, targets


# --------------------------------------------------------------------------- architecture


def test_seed_model_matches_the_seed_table():
    with torch.device("meta"):
        model = YOLOFaceCNN()
        out = model(torch.zeros(2, 3, 224, 224))
        summary = torchinfo.summary(model, input_size=(1, 3, 224, 224), device="meta", verbose=0)
    assert n_params(model) == 413_743_925
    assert summary.total_params == 413_743_925
    assert out.shape == (2, 7, 7, 5)
    assert n_params(yolo_face_features()) == 9_472 + 110_784 + 24_704 + 295_168 + 65_792 + 1_180_160


def test_seed_model_generalises_to_yolov1_layouts():
    with torch.device("meta"):
        s14 = YOLOFaceCNN(griddim=14)
        v1 = YOLOFaceCNN(griddim=7, boxes_per_cell=2, num_classes=3)
        assert s14(torch.zeros(2, 3, 224, 224)).shape == (2, 14, 14, 5)
        assert v1(torch.zeros(2, 3, 224, 224)).shape == (2, 7, 7, 2 * 5 + 3)
    trunk = 413_743_925 - 1_003_765  # everything but the last linear layer
    assert n_params(s14) == trunk + 4096 * 14 * 14 * 5 + 14 * 14 * 5
    assert n_params(v1) == trunk + 4096 * 7 * 7 * 13 + 7 * 7 * 13


def test_tiny_model_sizes():
    tiny = YOLOFaceTiny()
    assert n_params(tiny) == 1_128_229
    out = tiny.eval()(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, 7, 7, 5) and out.min() >= 0 and out.max() <= 1
    assert YOLOFaceTiny(griddim=14)(torch.rand(2, 3, 224, 224)).shape == (2, 14, 14, 5)
    assert YOLOFaceTiny(boxes_per_cell=2, num_classes=3)(torch.rand(2, 3, 224, 224)).shape == (2, 7, 7, 13)
    with pytest.raises(ConfigError, match="power of two"):
        YOLOFaceTiny(griddim=7, image_size=200)


def test_tiny_model_outputs_follow_the_centre_convention():
    """The tiny head predicts in-cell offsets; in seed mode it adds its cell's position."""
    torch.manual_seed(0)
    seed_mode = YOLOFaceTiny(width=8, boxes_per_cell=2).eval()
    v1_mode = YOLOFaceTiny(width=8, boxes_per_cell=2, cell_relative=True).eval()
    v1_mode.load_state_dict(seed_mode.state_dict())
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        image_relative, cell_relative = seed_mode(images), v1_mode(images)
    assert torch.allclose(image_relative, cell_to_image(cell_relative, boxes_per_cell=2))
    # cell row 3, column 5: both slots' centres lie inside that cell, [5/7, 6/7] x [3/7, 4/7]
    x, y = image_relative[0, 3, 5, [1, 6]], image_relative[0, 3, 5, [2, 7]]
    assert ((5 / 7 <= x) & (x <= 6 / 7)).all() and ((3 / 7 <= y) & (y <= 4 / 7)).all()
    assert torch.equal(image_relative[..., [0, 3, 4, 5, 8, 9]], cell_relative[..., [0, 3, 4, 5, 8, 9]])


@pytest.fixture(scope="module")
def seed_model():
    torch.manual_seed(0)
    model = YOLOFaceCNN()
    yield model
    del model
    gc.collect()


def test_seed_model_one_step_lowers_the_loss(seed_model):
    images, targets = synthetic_batch(2)
    criterion = YOLOFaceLoss()
    optimizer = torch.optim.SGD(seed_model.parameters(), lr=1e-3)
    seed_model.train()
    before = sum(criterion(seed_model(images), targets).values())
    before.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        after = sum(criterion(seed_model(images), targets).values())
    assert after < before
    seed_model.eval()  # BatchNorm1d needs batches of >= 2 only in training mode
    with torch.no_grad():
        out = seed_model(images[:1])
    assert out.shape == (1, 7, 7, 5) and out.min() >= 0 and out.max() <= 1


# --------------------------------------------------------------------------- encoding


def test_encode_puts_the_box_in_the_cell_holding_its_centre():
    box = [0.1, 0.1, 0.3, 0.5]  # centre (0.2, 0.3): column floor(1.4) = 1, row floor(2.1) = 2
    seed = encode_targets([target([box])], griddim=7)
    assert seed.shape == (1, 7, 7, 5)
    assert torch.allclose(seed[0, 2, 1], torch.tensor([1.0, 0.2, 0.3, 0.2, 0.4]))
    assert seed.sum() == pytest.approx(1 + 0.2 + 0.3 + 0.2 + 0.4)  # nothing anywhere else
    v1 = encode_targets([target([box])], griddim=7, cell_relative=True)
    assert torch.allclose(v1[0, 2, 1], torch.tensor([1.0, 0.4, 0.1, 0.2, 0.4]), atol=1e-6)


def test_encode_two_boxes_in_one_cell_keeps_the_larger():
    small, large = [0.40, 0.40, 0.44, 0.44], [0.30, 0.30, 0.55, 0.55]  # both centres in cell (2, 2)
    for boxes in ([small, large], [large, small]):
        enc = encode_targets([target(boxes)], griddim=7)
        assert (enc[..., 0] > 0).sum() == 1
        assert enc[0, 2, 2, 3] == pytest.approx(0.25)  # the larger box's width


def test_encode_classes_slots_and_empty_images():
    targets = [target([[0.0, 0.0, 0.2, 0.2]], [2]), target([]), target([[0.5, 0.5, 1.0, 1.0]], [0])]
    enc = encode_targets(targets, griddim=4, boxes_per_cell=2, num_classes=3)
    assert enc.shape == (3, 4, 4, 13)
    assert torch.equal(enc[0, 0, 0, :5], enc[0, 0, 0, 5:10])  # both slots hold the same box
    assert enc[0, 0, 0, 10:].tolist() == [0, 0, 1]  # one-hot class 2
    assert enc[1].abs().sum() == 0
    assert enc[2, 3, 3, 10:].tolist() == [1, 0, 0]
    assert encode_targets([target([])], griddim=7).abs().sum() == 0


def encode_oracle(targets, S):
    """Loop version of the seed-mode encoding (largest box per cell wins)."""
    out = torch.zeros(len(targets), S, S, 5)
    best_area = torch.zeros(len(targets), S, S)
    for n, t in enumerate(targets):
        for x1, y1, x2, y2 in t["boxes"].tolist():
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            i, j = min(int(cy * S), S - 1), min(int(cx * S), S - 1)
            if w * h >= best_area[n, i, j]:
                best_area[n, i, j] = w * h
                out[n, i, j] = torch.tensor([1.0, cx, cy, w, h])
    return out


def test_encode_matches_the_loop_oracle():
    g = torch.Generator().manual_seed(1)
    targets = []
    for m in (12, 0, 30):  # many boxes on a small grid: plenty of shared cells
        xy = torch.rand(m, 2, generator=g) * 0.8
        wh = torch.rand(m, 2, generator=g) * 0.2 + 0.01
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.zeros(m, dtype=torch.int64)})
    assert torch.allclose(encode_targets(targets, griddim=3), encode_oracle(targets, 3), atol=1e-6)


@pytest.mark.parametrize(
    "B, C, cell_relative", [(1, 1, False), (1, 1, True), (2, 1, False), (2, 1, True), (2, 3, True)]
)
def test_encode_then_postprocess_gives_the_boxes_back(B, C, cell_relative):
    boxes = [[0.05, 0.10, 0.25, 0.40], [0.50, 0.45, 0.95, 0.90], [0.70, 0.05, 0.80, 0.20]]
    labels = [0, 2, 1] if C > 1 else [0, 0, 0]
    targets = [target(boxes, labels), target([])]
    enc = encode_targets(targets, griddim=7, boxes_per_cell=B, num_classes=C, cell_relative=cell_relative)
    post = YOLOPostprocess(griddim=7, boxes_per_cell=B, num_classes=C, cell_relative=cell_relative)
    dets = post(enc, min_score=0.5, nms_iou=0.5, top_k=100)
    order = dets[0]["boxes"][:, 0].argsort()
    assert torch.allclose(dets[0]["boxes"][order], torch.tensor(boxes), atol=1e-6)
    assert dets[0]["labels"][order].tolist() == labels
    assert torch.allclose(dets[0]["scores"], torch.ones(3))
    assert len(dets[1]["boxes"]) == 0 and dets[1]["boxes"].shape == (0, 4)


def test_decode_cell_relative_offsets():
    out = torch.zeros(1, 2, 2, 5)
    out[0, 1, 0] = torch.tensor([1.0, 0.5, 0.5, 0.2, 0.4])  # cell row 1, col 0, centre of the cell
    boxes = decode_boxes(out, cell_relative=True)[0, 1, 0, 0]
    assert torch.allclose(boxes, torch.tensor([0.25 - 0.1, 0.75 - 0.2, 0.25 + 0.1, 0.75 + 0.2]))


def test_postprocess_threshold_nms_and_top_k():
    out = torch.zeros(1, 2, 2, 5)
    out[0, 0, 0] = torch.tensor([0.9, 0.30, 0.30, 0.2, 0.2])
    out[0, 0, 1] = torch.tensor([0.8, 0.31, 0.30, 0.2, 0.2])  # near-duplicate of the first
    out[0, 1, 1] = torch.tensor([0.6, 0.75, 0.75, 0.2, 0.2])
    out[0, 1, 0] = torch.tensor([0.4, 0.25, 0.75, 0.2, 0.2])  # below min_score
    post = YOLOPostprocess(griddim=2)
    dets = post(out, min_score=0.5, nms_iou=0.5, top_k=100)[0]
    assert dets["scores"].tolist() == pytest.approx([0.9, 0.6])
    assert dets["labels"].tolist() == [0, 0]
    assert len(post(out, min_score=0.5, nms_iou=0.5, top_k=1)[0]["scores"]) == 1
    assert len(post(out, min_score=0.3, nms_iou=0.99, top_k=100)[0]["scores"]) == 4


# --------------------------------------------------------------------------- loss


def test_loss_worked_example():
    """2 x 2 grid, one face in cell (0, 0); everything by hand."""
    truth = torch.zeros(1, 2, 2, 5)
    truth[0, 0, 0] = torch.tensor([1.0, 0.25, 0.25, 0.5, 0.5])
    pred = torch.full((1, 2, 2, 5), 0.5)
    pred[0, 0, 0] = torch.tensor([0.8, 0.35, 0.25, 0.5, 0.3])
    pred[0, 0, 1, 0], pred[0, 1, 0, 0], pred[0, 1, 1, 0] = 0.2, 0.1, 0.5
    terms = YOLOFaceLoss(lambda_coord=5.0, lambda_noobj=0.5, griddim=2)(pred, truth)
    assert set(terms) == {"coord", "obj", "noobj"}
    assert terms["coord"].item() == pytest.approx(5 * (0.1**2 + 0.2**2) / 4)  # 0.0625
    assert terms["obj"].item() == pytest.approx(-math.log(0.8))  # 0.2231
    noobj = 0.5 * (-math.log(0.8) - math.log(0.9) - math.log(0.5)) / 3  # 0.1703
    assert terms["noobj"].item() == pytest.approx(noobj, rel=1e-5)


def test_loss_from_target_dicts_equals_loss_from_encoded_targets():
    targets = [target([[0.1, 0.1, 0.3, 0.5], [0.6, 0.6, 0.9, 0.8]]), target([])]
    pred = torch.rand(2, 7, 7, 5, generator=torch.Generator().manual_seed(0))
    loss = YOLOFaceLoss(griddim=7)
    a, b = loss(pred, targets), loss(pred, encode_targets(targets, griddim=7))
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_loss_with_two_slots_makes_the_best_overlap_responsible():
    """One cell, target box centred (0.5, 0.5), 0.4 x 0.4. Slot 0 halves the height (IoU 0.5),
    slot 1 shifts the centre by 0.1 (IoU 0.12 / 0.20 = 0.6): slot 1 is responsible, although
    its p is lower, and slot 0 is penalised as an empty slot."""
    truth = torch.tensor([1.0, 0.5, 0.5, 0.4, 0.4] * 2).view(1, 1, 1, 10)
    pred = torch.tensor([0.6, 0.5, 0.5, 0.4, 0.2, 0.3, 0.6, 0.5, 0.4, 0.4]).view(1, 1, 1, 10)
    terms = YOLOFaceLoss(griddim=1, boxes_per_cell=2)(pred, truth)
    assert terms["coord"].item() == pytest.approx(5 * 0.1**2 / 4)
    assert terms["obj"].item() == pytest.approx(-math.log(0.3), rel=1e-5)
    assert terms["noobj"].item() == pytest.approx(0.5 * -math.log(0.4), rel=1e-5)


def test_loss_class_term():
    truth = encode_targets([target([[0.2, 0.2, 0.6, 0.6]], [2])], griddim=1, num_classes=3)
    pred = truth.clone()
    pred[0, 0, 0, 5:] = torch.tensor([0.2, 0.1, 0.6])
    terms = YOLOFaceLoss(griddim=1, num_classes=3)(pred, truth)
    assert terms["cls"].item() == pytest.approx((-math.log(0.8) - math.log(0.9) - math.log(0.6)) / 3, rel=1e-5)
    assert terms["coord"].item() == 0


def test_loss_refuses_outputs_of_another_layout():
    with pytest.raises(ConfigError, match="griddim=7"):
        YOLOFaceLoss(griddim=7)(torch.rand(1, 14, 14, 5), [target([])])
    with pytest.raises(ConfigError, match="boxes_per_cell=2"):
        YOLOFaceLoss(griddim=7, boxes_per_cell=2)(torch.rand(1, 7, 7, 5), [target([])])


def test_loss_on_an_image_without_faces():
    pred = torch.rand(1, 7, 7, 5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    terms = YOLOFaceLoss(griddim=7)(pred, [target([])])
    assert terms["coord"].item() == 0.0 and terms["obj"].item() == 0.0
    assert torch.isfinite(terms["noobj"]) and terms["noobj"] > 0
    sum(terms.values()).backward()
    assert torch.isfinite(pred.grad).all()


# --------------------------------------------------------------------------- training and builders


@pytest.mark.parametrize("cell_relative", [False, True])
def test_tiny_model_overfits_one_batch(cell_relative):
    torch.manual_seed(0)
    images, targets = synthetic_batch(2)
    model = YOLOFaceTiny(width=16, cell_relative=cell_relative)
    criterion = YOLOFaceLoss(cell_relative=cell_relative)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        loss = sum(criterion(model(images), targets).values())
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 5, (first, loss.item())
    model.eval()
    with torch.no_grad():
        dets = YOLOPostprocess(cell_relative=cell_relative)(model(images), min_score=0.5, nms_iou=0.5, top_k=100)
    assert [len(d["boxes"]) for d in dets] == [2, 2]
    for det, t in zip(dets, targets):  # each face found by a box overlapping it well
        assert box_iou(t["boxes"], det["boxes"]).amax(dim=1).min() > 0.5


def test_builders_read_the_config():
    cfg = YOLOFaceTinyConfig(
        griddim=7, boxes_per_cell=2, num_classes=1, cell_relative=True,
        lambda_coord=5.0, lambda_noobj=0.5, image_size=224, width=8,
    )
    tiny = build_yolo_face_tiny(cfg)
    assert isinstance(tiny, Detector) and isinstance(tiny.model, YOLOFaceTiny)
    assert tiny.model(torch.rand(2, 3, 224, 224)).shape == (2, 7, 7, 10)
    assert tiny.criterion.boxes_per_cell == 2 and tiny.postprocess.cell_relative and tiny.model.cell_relative
    with torch.device("meta"):
        seed = build_yolo_face(dataclasses.replace(cfg, boxes_per_cell=1, cell_relative=False))
    assert isinstance(seed.model, YOLOFaceCNN) and not seed.criterion.cell_relative
