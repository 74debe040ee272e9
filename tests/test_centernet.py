"""Rung 7, CenterNet: the Gaussian radius, the heatmap targets, the focal loss worked by hand,
peak decoding against a loop oracle, encode -> decode round trips, size, overfitting, config."""
import math

import numpy as np
import pytest
import torch

from facedet.boxes import box_convert, box_iou, elementwise_box_iou, gaussian_radius
from facedet.config import load_config, model_config
from facedet.data.dataset import image_to_tensor
from facedet.data.synthetic import render_scene
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models import MODELS, build_model
from facedet.models.centernet import (
    CenterNet,
    CenterNetLoss,
    CenterNetPostprocess,
    build_centernet,
    decode_peaks,
    encode_targets,
    find_peaks,
    penalty_reduced_focal_loss,
    splat_gaussians,
)
from facedet.models.detector import Detector

from conftest import n_params, overfit, target


# ----------------------------------------------------------------------------- Gaussian radius


def test_gaussian_radius_hand_cases():
    # 10 x 10 at IoU 0.7 (see the docstring): r1 = (20 - sqrt(400 - 400 * 0.3 / 1.7)) / 2 = 0.9246,
    # r2 = (20 - sqrt(400 - 400 * 0.3)) / 4 = (20 - sqrt(280)) / 4 = 0.8167,
    # r3 = (sqrt(400 + 400 * 0.3 / 0.7) - 20) / 4 = 0.9763; the smallest is r2
    r = gaussian_radius(torch.tensor([10.0]), torch.tensor([10.0]), 0.7)
    assert r.item() == pytest.approx((20 - math.sqrt(280)) / 4, rel=1e-6)
    assert r.item() == pytest.approx(0.8167, abs=1e-4)
    # the radius scales with the box: 40 x 40 -> 4 x 0.8167
    assert gaussian_radius(torch.tensor([40.0]), torch.tensor([40.0])).item() == pytest.approx(4 * 0.81670, abs=1e-3)
    # at IoU 0.5 a 10 x 10 box: r2 = (20 - sqrt(200)) / 4 = 1.4645
    assert gaussian_radius(torch.tensor([10.0]), torch.tensor([10.0]), 0.5).item() == pytest.approx(1.4645, abs=1e-4)
    # a zero-size box has radius 0
    assert gaussian_radius(torch.tensor([0.0]), torch.tensor([0.0])).item() == 0.0


@pytest.mark.parametrize("w,h", [(10, 10), (4, 20), (40, 13), (3, 3), (80, 60), (1, 50)])
@pytest.mark.parametrize("min_iou", [0.5, 0.7, 0.9])
def test_corners_moved_by_the_radius_keep_the_iou(w, h, min_iou):
    """The three ways of CornerNet's derivation, with corners moved by exactly r: each keeps
    IoU >= min_iou, and one of them is at min_iou exactly (r is the largest such radius)."""
    r = gaussian_radius(torch.tensor([float(w)]), torch.tensor([float(h)]), min_iou).item()
    box = torch.tensor([0.0, 0.0, w, h])

    def moved(r):
        return torch.stack([
            box + torch.tensor([r, r, r, r]),  # 1. slid by (r, r)
            box + torch.tensor([r, r, -r, -r]),  # 2. both corners inwards
            box + torch.tensor([-r, -r, r, r]),  # 3. both corners outwards
        ])

    ious = elementwise_box_iou(moved(r), box.expand(3, 4))
    assert (ious >= min_iou - 1e-5).all(), ious
    assert ious.min().item() == pytest.approx(min_iou, abs=1e-4)
    assert elementwise_box_iou(moved(r * 1.02), box.expand(3, 4)).min() < min_iou


# ----------------------------------------------------------------------------- targets


def test_a_single_splat_peaks_at_one_and_falls_as_a_gaussian():
    maps = splat_gaussians(torch.tensor([[3, 2]]), torch.tensor([1]), torch.tensor([0]), 1, 5, 7)
    assert maps.shape == (1, 5, 7)
    assert maps[0, 2, 3] == 1.0 and maps.max() == 1.0
    # r = 1: sigma = 0.5, side neighbours exp(-1 / (2 * 0.25)) = exp(-2), diagonals exp(-4)
    assert maps[0, 2, 4].item() == pytest.approx(math.exp(-2))
    assert maps[0, 1, 3].item() == pytest.approx(math.exp(-2))
    assert maps[0, 1, 2].item() == pytest.approx(math.exp(-4))
    assert (maps[0] > 0).sum() == 9  # cut to the 3 x 3 window
    # radius 0: a single 1
    single = splat_gaussians(torch.tensor([[0, 0]]), torch.tensor([0]), torch.tensor([0]), 1, 4, 4)
    assert single.sum() == 1.0 and single[0, 0, 0] == 1.0


def test_overlapping_splats_take_the_elementwise_max_and_maps_stay_apart():
    centres, radii = torch.tensor([[4, 4], [6, 5], [1, 1]]), torch.tensor([3, 2, 2])
    together = splat_gaussians(centres, radii, torch.tensor([0, 0, 1]), 2, 10, 10)
    alone = [splat_gaussians(centres[i:i + 1], radii[i:i + 1], torch.tensor([0]), 1, 10, 10)[0] for i in range(3)]
    assert torch.equal(together[0], torch.maximum(alone[0], alone[1]))
    assert not torch.equal(together[0], alone[0] + alone[1])  # they do overlap, and were not summed
    assert torch.equal(together[1], alone[2])  # another map (class or image): untouched by the others
    assert together[0, 4, 4] == 1.0 and together[0, 5, 6] == 1.0


def test_encode_targets_toy_box_by_hand():
    # [0.25, 0.25, 0.75, 0.5] on 8 x 8 cells is [2, 2, 6, 4]: centre (4, 3), size (4, 2);
    # gaussian_radius(4, 2) = 0.35 -> radius 0: a single 1 at row 3, column 4
    encoded = encode_targets([target([[0.25, 0.25, 0.75, 0.5]])], num_classes=1, height=8, width=8)
    assert encoded["heatmap"].shape == (1, 1, 8, 8)
    assert encoded["heatmap"][0, 0, 3, 4] == 1.0 and encoded["heatmap"].sum() == 1.0
    assert encoded["mask"][0].nonzero().tolist() == [[3, 4]]
    assert encoded["size"][0, :, 3, 4].tolist() == [4.0, 2.0]
    assert encoded["offset"][0, :, 3, 4].tolist() == [0.0, 0.0]
    # centre (4.5, 3.25) cells: cell (4, 3), offset (0.5, 0.25)
    encoded = encode_targets([target([[2.5 / 8, 2.5 / 8, 6.5 / 8, 4 / 8]])], 1, 8, 8)
    assert torch.allclose(encoded["offset"][0, :, 3, 4], torch.tensor([0.5, 0.25]))


def test_a_centre_belongs_to_the_cell_it_falls_in_not_the_nearest_corner():
    """Centre (4.75, 3.75) cells lies in cell (column 4, row 3), floor, not round: the offset
    head then learns (0.75, 0.75), always in [0, 1)."""
    encoded = encode_targets([target([[2.75 / 8, 2.75 / 8, 6.75 / 8, 4.75 / 8]])], 1, 8, 8)
    assert encoded["mask"][0].nonzero().tolist() == [[3, 4]]
    assert encoded["offset"][0, :, 3, 4].tolist() == [0.75, 0.75]


def test_same_centre_cell_collides_largest_box_wins_and_classes_get_their_maps():
    small, large = [0.40, 0.40, 0.60, 0.60], [0.30, 0.30, 0.70, 0.70]  # same centre (0.5, 0.5)
    other = [0.05, 0.05, 0.25, 0.25]
    encoded = encode_targets([target([small, large, other], [0, 0, 1]), target([])], num_classes=2,
                             height=10, width=10)
    assert encoded["mask"][0].sum() == 2 and encoded["mask"][1].sum() == 0  # 3 boxes, 2 centre cells
    assert encoded["size"][0, :, 5, 5].tolist() == pytest.approx([4.0, 4.0])  # the large one
    assert encoded["heatmap"][0, 0].eq(1).sum() == 1 and encoded["heatmap"][0, 1].eq(1).sum() == 1
    assert encoded["heatmap"][0, 1, 1, 1] == 1.0 and encoded["heatmap"][0, 0, 1, 1] == 0.0
    assert encoded["heatmap"][1].sum() == 0
    empty = encode_targets([], 1, 4, 4)
    assert empty["heatmap"].shape == (0, 1, 4, 4)


# ----------------------------------------------------------------------------- loss


def test_focal_loss_worked_example():
    """Three cells, one centre. Targets Y = (1, 0.5, 0); logits (ln 3, 0, -ln 3), so
    p = (0.75, 0.5, 0.25). With alpha = 2, beta = 4:
        centre    (1 - 0.75)^2 log 0.75              = 0.0625 x -0.287682 = -0.0179801
        Y = 0.5   (1 - 0.5)^4 0.5^2 log(1 - 0.5)     = 0.015625 x -0.693147 = -0.0108304
        Y = 0     (1 - 0)^4 0.25^2 log(1 - 0.25)     = 0.0625 x -0.287682 = -0.0179801
    loss = -(sum) / 1 centre = 0.0467906."""
    logits = torch.tensor([math.log(3), 0.0, -math.log(3)]).view(1, 1, 1, 3)
    heat = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    loss = penalty_reduced_focal_loss(logits, heat, alpha=2, beta=4)
    assert loss.item() == pytest.approx(0.0467906, abs=1e-6)
    # twice the cells and two centres: same loss per centre
    two = penalty_reduced_focal_loss(logits.repeat(2, 1, 1, 1), heat.repeat(2, 1, 1, 1))
    assert two.item() == pytest.approx(0.0467906, abs=1e-6)
    # no centre at all: divided by 1, the negatives alone
    none = penalty_reduced_focal_loss(logits[..., 1:], heat[..., 1:])
    assert none.item() == pytest.approx(0.0108304 + 0.0179801, abs=1e-6)
    # confident logits stay finite (log-sigmoid, no log(0))
    assert torch.isfinite(penalty_reduced_focal_loss(torch.tensor([[[[-100.0, 100.0]]]]), torch.tensor([[[[1.0, 0.0]]]])))


def test_loss_terms_at_centres_only_and_on_empty_images():
    criterion = CenterNetLoss(num_classes=1)
    heat = torch.zeros(2, 1, 8, 8, requires_grad=True)
    size = torch.zeros(2, 2, 8, 8, requires_grad=True)
    offset = torch.zeros(2, 2, 8, 8, requires_grad=True)
    # one box [2.5, 2.5, 6.5, 4] cells: size (4, 1.5), offset (0.5, 0.25) against zeros:
    # size = 0.1 x (4 + 1.5) / 2 = 0.275, offset = (0.5 + 0.25) / 2 = 0.375
    terms = criterion((heat, size, offset), [target([[2.5 / 8, 2.5 / 8, 6.5 / 8, 4 / 8]]), target([])])
    assert terms["size"].item() == pytest.approx(0.275)
    assert terms["offset"].item() == pytest.approx(0.375)
    sum(terms.values()).backward()
    assert size.grad.abs().sum() > 0 and size.grad[0, :, 3, 4].abs().sum() > 0
    assert size.grad.abs().sum() == size.grad[0, :, 3, 4].abs().sum()  # no gradient anywhere else
    empty = criterion((heat, size, offset), [target([]), target([])])
    assert empty["size"].item() == 0.0 and empty["offset"].item() == 0.0
    assert torch.isfinite(empty["heatmap"]) and empty["heatmap"] > 0


# ----------------------------------------------------------------------------- decoding


def slow_decode(heat, size, offset, k):
    """The loop oracle: a cell is a peak when no neighbour of its 3 x 3 window is larger."""
    n, c, h, w = heat.shape
    results = []
    for i in range(n):
        peaks = []
        for cls in range(c):
            for y in range(h):
                for x in range(w):
                    value = heat[i, cls, y, x].item()
                    neighbours = [heat[i, cls, y + dy, x + dx].item() for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                                  if 0 <= y + dy < h and 0 <= x + dx < w]
                    if value >= max(neighbours):
                        bw, bh = max(size[i, 0, y, x].item(), 0.0), max(size[i, 1, y, x].item(), 0.0)
                        cx, cy = x + offset[i, 0, y, x].item(), y + offset[i, 1, y, x].item()
                        box = [(cx - bw / 2) / w, (cy - bh / 2) / h, (cx + bw / 2) / w, (cy + bh / 2) / h]
                        peaks.append((value, cls, box))
        peaks.sort(key=lambda p: -p[0])
        results.append(peaks[:k])
    return results


@pytest.mark.parametrize("k", [5, 40])
def test_decoding_matches_the_loop_oracle(k):
    torch.manual_seed(0)
    heat = torch.rand(2, 2, 7, 9)
    size = torch.rand(2, 2, 7, 9) * 6 - 1  # some negative sizes: clamped to 0
    offset = torch.rand(2, 2, 7, 9)
    boxes, scores, labels = decode_peaks(heat, size, offset, k)
    expected = slow_decode(heat, size, offset, k)
    for i in range(2):
        assert len(expected[i]) <= k
        m = len(expected[i])
        assert scores[i, :m].tolist() == pytest.approx([p[0] for p in expected[i]])
        assert labels[i, :m].tolist() == [p[1] for p in expected[i]]
        assert torch.allclose(boxes[i, :m], torch.tensor([p[2] for p in expected[i]]), atol=1e-6)
        assert (scores[i, m:] == 0).all()  # fewer peaks than k: the rest are zero-score cells
    assert find_peaks(heat).count_nonzero() == sum(len(slow_decode(heat, size, offset, 10**6)[i]) for i in range(2))


def test_encode_then_decode_recovers_the_boxes():
    boxes = [[0.10, 0.10, 0.30, 0.35], [0.40, 0.70, 0.52, 0.81], [0.55, 0.20, 0.95, 0.70]]
    encoded = encode_targets([target(boxes, [0, 0, 1])], num_classes=2, height=20, width=24)
    found, scores, labels = decode_peaks(encoded["heatmap"], encoded["size"], encoded["offset"], k=3)
    assert scores[0].tolist() == [1.0, 1.0, 1.0]
    order = found[0, :, 0].argsort()  # by x1, as listed
    assert torch.allclose(found[0, order], torch.tensor(boxes), atol=1e-6)
    assert labels[0, order].tolist() == [0, 0, 1]
    # through the post-processor: the heatmap as logits, no NMS needed to get exactly 3 boxes
    logits = torch.logit(encoded["heatmap"], eps=1e-6)
    dets = CenterNetPostprocess(peaks=100)((logits, encoded["size"], encoded["offset"]), min_score=0.5, nms_iou=0.45,
                                          top_k=100)
    assert len(dets[0]["boxes"]) == 3
    assert box_iou(dets[0]["boxes"], torch.tensor(boxes)).max(dim=1).values.min() > 0.999


# ----------------------------------------------------------------------------- model, builder, config


def test_parameter_count_and_output_shapes():
    assert n_params(CenterNet()) == 236_197  # width 32, one class: "a few hundred k"
    assert n_params(CenterNet(width=16)) == 63_445
    model = CenterNet(width=8, num_classes=3).eval()
    with torch.no_grad():
        heat, size, offset = model(torch.randn(2, 3, 96, 160))
    assert heat.shape == (2, 3, 24, 40) and size.shape == offset.shape == (2, 2, 24, 40)
    # every cell starts near the 0.1 prior
    assert torch.sigmoid(heat).mean().item() == pytest.approx(0.1, abs=0.05)


def test_builder_gives_a_scalable_detector_that_runs_on_any_photo_size():
    assert MODELS["centernet"] is build_centernet
    detector = build_model(model_config("centernet", num_classes=1, image_size=128, width=8))
    assert isinstance(detector, Detector) and detector.input_policy == "scalable" and detector.size_multiple == 32
    assert isinstance(detector.criterion, CenterNetLoss) and isinstance(detector.postprocess, CenterNetPostprocess)
    found = detector.detect_tensors([torch.rand(3, 100, 150)], min_score=0.0, top_k=7)
    assert found[0]["boxes"].shape == (7, 4)
    assert (found[0]["boxes"][:, 2] <= 150).all() and (found[0]["boxes"][:, 3] <= 100).all()


def test_config_refuses_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'model.fpn'.*model 'centernet' uses"):
        load_config("centernet_face.yaml", ["model.fpn=true"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: centernet\n  griddim: 7\n")
    with pytest.raises(ConfigError, match="unknown key 'model.griddim'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_model(model_config("centernet", image_size=300))
    with pytest.raises(ConfigError, match="min_iou"):
        build_model(model_config("centernet", min_iou=1.0))
    cfg = load_config("centernet_face.yaml")
    assert cfg.model.name == "centernet" and cfg.model.peaks == 100 and cfg.data.augment == "face"


# ----------------------------------------------------------------------------- overfitting


def test_overfits_a_few_synthetic_scenes():
    """Adam on three synthetic scenes: the loss falls by more than half, and afterwards every
    face is found (IoU >= 0.5 with a detection scoring >= 0.3), once: one peak per face, without any NMS."""
    torch.manual_seed(0)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    images, targets = [], []
    for seed in (1, 2, 3):
        image, boxes = render_scene(np.random.default_rng(seed), size=128, min_faces=1, max_faces=3)
        images.append((image_to_tensor(image) - mean) / std)
        targets.append(target((boxes / 128).tolist()))
    images = torch.stack(images)
    detector = build_model(model_config("centernet", num_classes=1, image_size=128, width=16))
    losses = overfit(detector, images, targets, steps=120, lr=5e-3)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    detector.model.eval()
    with torch.no_grad():
        detections = detector.postprocess(detector.model(images), min_score=0.3, nms_iou=detector.nms_iou,
                                            top_k=detector.top_k)
    for det, t in zip(detections, targets):
        assert len(det["boxes"]) == len(t["boxes"]), (t["boxes"], det)  # no duplicates to suppress
        assert (box_iou(t["boxes"], det["boxes"]).max(dim=1).values >= 0.5).all(), (t["boxes"], det)


def test_the_gaussian_radius_is_floored_to_whole_cells():
    """A 20 x 20-cell box: gaussian_radius = (40 - sqrt(1120)) / 4 = 1.633 cells, floored to 1, so
    its peak covers the 3 x 3 cells around the centre (rounding would make it 5 x 5)."""
    assert gaussian_radius(torch.tensor(20.0), torch.tensor(20.0), 0.7).item() == pytest.approx(1.6334, abs=1e-4)
    box = [22.5 / 64, 22.5 / 64, 42.5 / 64, 42.5 / 64]  # centre (32.5, 32.5) cells: cell (32, 32)
    heat = encode_targets([target([box])], num_classes=1, height=64, width=64)["heatmap"][0, 0]
    assert (heat > 0).nonzero().tolist() == [[r, c] for r in (31, 32, 33) for c in (31, 32, 33)]
    assert heat[32, 32] == 1.0 and heat[31, 32] == pytest.approx(math.exp(-2))  # sigma = (2 r + 1) / 6 = 0.5
