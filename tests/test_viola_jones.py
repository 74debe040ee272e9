"""Rung 0: Viola-Jones. Integral images and Haar features against slow loop oracles, AdaBoost's
stump against brute force, a stage's target rates, the scan on a planted pattern, checkpoints,
a tiny end-to-end training, and refused settings."""
import math

import pytest
import torch

from facedet.boxes import box_iou
from facedet.checkpoint import load, load_detector
from facedet.config import load_config, model_config, to_dict
from facedet.errors import ConfigError
from facedet.files import atomic_save
from facedet.models import build_model
from facedet.models.haar_features import (
    FEATURE_TYPES,
    MIN_STD,
    HaarFeatures,
    feature_values,
    integral_image,
    rectangle_sums,
)
from facedet.models.viola_jones import (
    Stage,
    Stump,
    StumpSearch,
    ViolaJonesCascade,
    grey_levels,
    train_stage,
    window_support,
)

# --------------------------------------------------------------------------- integral images


def recurrence_oracle(image: list[list[int]]) -> list[list[int]]:
    """The seed's recurrence with Python ints (never overflow), zero row and column in front."""
    h, w = len(image), len(image[0])
    ii = [[0] * (w + 1) for _ in range(h + 1)]
    for i in range(1, h + 1):
        for j in range(1, w + 1):
            ii[i][j] = ii[i][j - 1] + ii[i - 1][j] - ii[i - 1][j - 1] + image[i - 1][j - 1]
    return ii


def test_integral_image_is_the_seeds_recurrence_and_gives_direct_sums():
    image = torch.randint(0, 256, (13, 17), dtype=torch.uint8)
    ii = integral_image(image)
    assert ii.shape == (14, 18) and ii.dtype == torch.int64
    assert ii.tolist() == recurrence_oracle(image.tolist())
    boxes = torch.tensor([[0, 0, 17, 13], [3, 2, 4, 3], [5, 1, 12, 9], [16, 12, 17, 13]])  # "xyxy"
    for (x0, y0, x1, y1), total in zip(boxes.tolist(), rectangle_sums(ii, boxes).tolist()):
        assert total == int(image[y0:y1, x0:x1].long().sum())


def test_seed_worked_example_21_is_14_plus_11_minus_5_plus_1():
    # any image whose integral image holds 14, 11 and 5 around a pixel of value 1
    image = torch.tensor([[5, 6], [6, 1]])  # ii: [[5, 11], [11, 18]] -> here 11 + 11 - 5 + 1 = 18
    ii = integral_image(image)
    assert int(ii[2, 2]) == int(ii[2, 1]) + int(ii[1, 2]) - int(ii[1, 1]) + 1 == 18


def test_integral_image_does_not_overflow_where_uint8_and_int32_would():
    white = torch.full((40, 40), 255, dtype=torch.uint8)
    assert int(integral_image(white)[-1, -1]) == 40 * 40 * 255  # 408,000: uint8 wraps at the 2nd pixel
    big = torch.full((6, 7), 2**30, dtype=torch.int32)  # each pixel near int32's limit
    ii = integral_image(big)
    assert int(ii[-1, -1]) == 42 * 2**30 > 2**31 - 1
    assert ii.tolist() == recurrence_oracle(big.tolist())
    photo = torch.rand(50, 60, dtype=torch.float64) * 1e12  # floats sum in float64
    assert integral_image(photo).dtype == torch.float64
    assert float(integral_image(photo)[-1, -1]) == pytest.approx(float(photo.sum()), rel=1e-12)


# --------------------------------------------------------------------------- Haar features


def feature_oracle(window: torch.Tensor, rects: list, weights: list) -> float:
    """Slow loops: pixel sums of each rectangle, the window's mean and standard deviation."""
    pixels = window.double().tolist()
    n = len(pixels) * len(pixels[0])
    mean = sum(map(sum, pixels)) / n
    std = max(math.sqrt(max(sum(v * v for row in pixels for v in row) / n - mean * mean, 0)), MIN_STD)
    value = 0.0
    for (x0, y0, x1, y1), w in zip(rects, weights):
        if w == 0:
            continue
        total = sum(pixels[y][x] for y in range(y0, y1) for x in range(x0, x1))
        value += w * (total - mean * (x1 - x0) * (y1 - y0))
    return value / std


def test_feature_counts_of_the_five_types():
    full = HaarFeatures.enumerate(24, stride=1)
    assert len(full) == 162_336  # the usual count for these five types on 24 x 24
    assert len(HaarFeatures.enumerate(24, stride=2)) == 12_372
    assert len(HaarFeatures.enumerate(24, stride=3)) == 2_920
    assert torch.bincount(full.kinds).tolist() == [43_200, 43_200, 27_600, 27_600, 20_736]
    assert (full.rects[..., 2:] <= 24).all() and (full.rects[..., :2] >= 0).all()


@pytest.mark.parametrize("kind", list(FEATURE_TYPES))
def test_every_feature_type_against_a_slow_loop_oracle(kind):
    torch.manual_seed(0)
    features = HaarFeatures.enumerate(24, stride=1)
    index = (features.kinds == list(FEATURE_TYPES).index(kind)).nonzero().flatten()
    pick = index[torch.randperm(len(index))[:25]]
    chosen = features.subset(pick)
    windows = torch.randint(0, 256, (3, 24, 24))
    windows[2] = 100  # a flat window: std floored at MIN_STD
    values = feature_values(windows, chosen)
    for n in range(len(windows)):
        for f in range(len(chosen)):
            expected = feature_oracle(windows[n], chosen.rects[f].tolist(), chosen.weights[f].tolist())
            assert values[n, f].item() == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_a_two_rectangle_feature_by_hand():
    # left half 200, right half 0: mean 100, std 100; [+ -] over the whole window: (200*288 - 0) / 100
    window = torch.zeros(24, 24)
    window[:, :12] = 200
    feature = HaarFeatures(torch.tensor([[[0, 0, 12, 24], [12, 0, 24, 24], [0, 0, 0, 0], [0, 0, 0, 0]]]),
                           torch.tensor([[1.0, -1.0, 0, 0]]), torch.tensor([0]))
    assert feature_values(window[None], feature).item() == pytest.approx(576.0)
    assert feature_values(window.flip(-1)[None], feature).item() == pytest.approx(-576.0)
    # variance normalisation: the same pattern, darker and flatter, has the same value
    assert feature_values((window * 0.25 + 30)[None], feature).item() == pytest.approx(576.0)


# --------------------------------------------------------------------------- AdaBoost


def brute_force_stump(values: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> float:
    """The lowest weighted error over every feature, every threshold between distinct values
    (and beyond both ends) and both polarities, by trying them all."""
    best = math.inf
    for f in range(values.shape[1]):
        distinct = sorted(set(values[:, f].tolist()))
        cuts = [distinct[0] - 1] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])] + [distinct[-1] + 1]
        for t in cuts:
            for p in (1, -1):
                says_face = p * values[:, f] > p * t
                best = min(best, float(weights[says_face != labels].sum()))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_adaboost_picks_the_stump_brute_force_picks(seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 6, (30, 7), generator=g).float()  # few distinct values: many ties
    labels = torch.rand(30, generator=g) < 0.4
    values[labels, 3] += 2.0  # one feature is informative
    weights = torch.rand(30, generator=g)
    weights /= weights.sum()
    stump = StumpSearch(values, labels, chunk=3).best(weights)
    achieved = float(weights[stump.predict(values[:, stump.feature]) != labels].sum())
    assert achieved == pytest.approx(stump.error, abs=1e-6)
    assert stump.error == pytest.approx(brute_force_stump(values, labels, weights), abs=1e-6)


def test_a_stage_meets_its_target_rates_on_its_training_data():
    g = torch.Generator().manual_seed(1)
    faces, others = torch.randn(300, 20, generator=g), torch.randn(600, 20, generator=g)
    faces[:, :5] += 1.0  # five weakly informative features: no single stump suffices
    values = torch.cat([faces, others])
    labels = torch.cat([torch.ones(300, dtype=torch.bool), torch.zeros(600, dtype=torch.bool)])
    rounds = []
    stage = train_stage(StumpSearch(values, labels), detection_rate=0.98, false_positive_rate=0.3,
                        max_stumps=50, on_round=lambda n, d, f: rounds.append((n, d, f)))
    passed = stage.accepts(values)
    assert passed[labels].float().mean() >= 0.98
    assert passed[~labels].float().mean() <= 0.3
    assert 1 < len(stage.stumps) < 50 and len(rounds) == len(stage.stumps)
    assert rounds[-1][1:] == pytest.approx((stage.detection_rate, stage.false_positive_rate))


# --------------------------------------------------------------------------- the scan


BAR = [[[0, 0, 8, 24], [8, 0, 16, 24], [16, 0, 24, 24], [0, 0, 0, 0]]]  # three_horizontal over the window


def one_stump_cascade(threshold: float, **options) -> ViolaJonesCascade:
    """A hand-made cascade: one stage of one stump, "a dark vertical bar between two bright ones"."""
    features = HaarFeatures(torch.tensor(BAR), torch.tensor([[1.0, -1.0, 1.0, 0]]), torch.tensor([2]))
    cascade = ViolaJonesCascade(**options)
    cascade.add_stage(Stage([Stump(0, threshold, 1, 0.1)], [2.0], 1.0, 1.0, 0.0), features)
    return cascade


def bars(side: int) -> torch.Tensor:
    """The pattern the stump looks for: (side, side) grey, bright | dark | bright thirds."""
    pattern = torch.full((side, side), 230)
    pattern[:, side // 3: 2 * side // 3] = 20
    return pattern


def test_the_scan_finds_a_planted_pattern_at_its_scale_and_place():
    torch.manual_seed(0)
    grey = (128 + 10 * torch.randn(160, 200)).round().clamp(0, 255).long()
    x, y, side = 63, 30, 48  # a 48-px pattern: the level of scale 2 (24 * 1.25^3 = 46.9 is the one before)

    def cross(n: int) -> torch.Tensor:  # a dark middle column and a dark middle row: bounded both ways
        return (bars(n) + bars(n).T) // 2

    grey[y:y + side, x:x + side] = cross(side)
    columns = HaarFeatures(torch.tensor(BAR), torch.tensor([[1.0, -1.0, 1.0, 0]]), torch.tensor([2]))
    rows = HaarFeatures(torch.tensor(BAR)[..., [1, 0, 3, 2]], torch.tensor([[1.0, -1.0, 1.0, 0]]), torch.tensor([3]))
    cascade = one_stump_cascade(threshold=0.9 * feature_values(cross(24)[None], columns).item(),
                                min_window=24, scan_step=1.0)
    cascade.add_stage(Stage([Stump(0, 0.9 * feature_values(cross(24)[None], rows).item(), 1, 0.1)], [1.0], 1.0,
                            1.0, 0.0), rows)
    windows, scores = cascade.scan(grey)
    assert len(windows) >= 1 and (scores > 0.5).all()
    planted = torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32)
    assert box_iou(windows, planted).min() > 0.85  # only windows hugging the pattern pass
    counts = []
    cascade.scan(grey, stage_counts=counts)
    assert counts[2] == len(windows) and counts[0] > 1000 * counts[2]  # the cascade rejects nearly all
    assert counts[0] > counts[1] > counts[2]  # each stage rejects some
    # through the Detector: a photo in [0, 1], boxes in its pixels after NMS
    detector = build_model(model_config("viola_jones", min_window=24, scan_step=1.0))
    detector.model = cascade
    photo = (grey.float() / 255).expand(3, -1, -1)
    found = detector(photo, min_score=0.1)  # few windows agree on a pattern this exact: low support
    assert len(found) == 1 and box_iou(found.boxes, planted).item() > 0.85


def test_windows_that_overlap_support_each_other():
    lone = torch.tensor([[100.0, 100, 124, 124]])
    cluster = torch.tensor([[0.0, 0, 24, 24], [1, 0, 25, 24], [0, 1, 24, 25], [1, 1, 25, 25]])
    boxes = torch.cat([lone, cluster])
    scores = torch.full((5,), 0.75)
    rescored = window_support(boxes, scores)
    assert rescored[0].item() == pytest.approx(0.75 * (1 - math.exp(-0.25)))  # only itself
    assert rescored[1].item() == pytest.approx(0.75 * (1 - math.exp(-1.0)))  # four windows of margin 0.25
    assert (rescored[1:] > rescored[0]).all() and (rescored < scores).all()


def test_scan_scales_the_features_not_the_image():
    cascade = one_stump_cascade(threshold=0.0, scale_factor=1.25)
    assert cascade.scales(100, 200)[:3] == pytest.approx([1.0, 1.25, 1.5625])
    assert round(24 * cascade.scales(100, 200)[-1]) <= 100 < round(24 * cascade.scales(100, 200)[-1] * 1.25)
    corner_y, corner_x, corner_w = cascade.scaled_stumps(2.0)
    assert corner_y.max() == 48 and corner_x.max() == 48  # the 24-px feature now spans 48 px
    assert corner_w.abs().max().item() == pytest.approx(0.25)  # each rectangle's sum / 4 (area x 4)


@pytest.mark.parametrize("min_window", [24, 26, 34, 42, 50])
def test_scaled_features_never_reach_outside_their_window(min_window):
    """Window sides and feature rectangles are rounded by one rule: at 26 px the second level is
    26 * 1.25 = 32.5 px, which round() makes 32 (halves go to even) and floor(x + 0.5) 33."""
    cascade = one_stump_cascade(threshold=0.0, min_window=min_window)
    for scale in cascade.scales(400, 400):
        side, *_ = cascade.grid(400, 400, scale)
        corner_y, corner_x, _ = cascade.scaled_stumps(scale)
        assert corner_x.max() == side and corner_y.max() == side, f"scale {scale}: side {side}"


def test_a_photo_one_window_wide_scans_at_every_min_window():
    for min_window in (26, 34, 42):
        cascade = one_stump_cascade(threshold=0.0, min_window=min_window)
        largest = cascade.grid(400, 400, cascade.scales(400, 400)[1])[0]  # the side of the second level
        grey = bars(largest)
        windows, _ = cascade.scan(grey)  # raised RuntimeError when a feature read past the photo
        assert (windows[:, 2:] <= largest).all()


def test_grey_levels_of_uint8_and_float_photos_agree():
    rgb = torch.randint(0, 256, (3, 5, 6), dtype=torch.uint8)
    assert torch.equal(grey_levels(rgb), grey_levels(rgb.float() / 255))
    assert grey_levels(torch.full((3, 2, 2), 255, dtype=torch.uint8)).max() == 255


# --------------------------------------------------------------------------- checkpoints and training


def test_a_checkpoint_round_trip_gives_the_same_cascade_and_detections(tmp_path):
    cfg = load_config("viola_jones.yaml", ["model.min_window=24", "model.scan_step=1.0"])
    cascade = one_stump_cascade(threshold=500.0, scan_step=1.0)  # the scan settings come from the config
    cascade.add_stage(Stage([Stump(0, -1e9, 1, 0.2), Stump(0, 1e9, -1, 0.3)], [1.0, 0.5], 1.0, 1.0, 0.0),
                      HaarFeatures.enumerate(24, stride=12))
    cascade.box_aspect.fill_(1.25)
    path = tmp_path / "best.pt"
    atomic_save({"model": cascade.state_dict(), "config": to_dict(cfg), "class_names": ["face"]}, path)
    loaded = load_detector(path)
    for name, buffer in cascade.named_buffers():
        assert torch.equal(buffer, getattr(loaded.model, name)), name
    assert loaded.model.stage_sizes == [1, 2] and loaded.num_parameters == 4 * 3 + 2
    grey = torch.full((80, 90), 128)
    grey[20:44, 30:54] = bars(24)
    assert torch.equal(cascade.scan(grey)[0], loaded.model.scan(grey)[0])
    assert len(load(path, "cpu")(grey.float().div(255).expand(3, -1, -1)))  # facedet.load works too


def test_tiny_end_to_end_training(tmp_path, monkeypatch):
    from facedet.train import main

    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    main(["--config", "viola_jones.yaml", "data.synthetic_train=40", "data.synthetic_val=4", "model.stages=3",
          "model.max_stumps_per_stage=6", "model.feature_stride=6", "model.max_faces=100",
          "model.negatives_per_photo=20", "model.scan_step=3", "name=vj"])
    state = torch.load(tmp_path / "runs/vj/best.pt", weights_only=True)
    assert state["config"]["model"]["name"] == "viola_jones" and state["epoch"] == 3
    assert [row["stage"] for row in state["history"]] == [1, 2, 3]
    assert all(row["detection_rate"] >= 0.995 for row in state["history"])
    detector = load(tmp_path / "runs/vj/best.pt", "cpu")
    assert detector.model.num_stages == 3 and 3 <= len(detector.model.thresholds) <= 18
    found = detector(torch.rand(3, 64, 80))
    assert found.boxes.shape[1] == 4 and ((found.scores >= 0.5) & (found.scores <= 1)).all()
    assert "mAP50" in state["metrics"]


@pytest.mark.parametrize("override, key", [
    ("model.detection_rate=1.5", "model.detection_rate"),
    ("model.false_positive_rate=0", "model.false_positive_rate"),
    ("model.scale_factor=1.0", "model.scale_factor"),
    ("model.feature_stride=0", "model.feature_stride"),
    ("model.scan_step=-1", "model.scan_step"),
    ("model.min_window=12", "model.min_window"),
    ("model.stages=0", "model.stages"),
    ("model.max_faces=-3", "model.max_faces"),
    ("model.detection_rte=0.9", "detection_rte"),
])
def test_bad_settings_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config("viola_jones.yaml", [override])


def test_real_data_without_face_free_photos_is_refused(tmp_path):
    from facedet.boosting import nonface_photos

    cfg = load_config("viola_jones.yaml", [f"data.root={tmp_path}"])
    with pytest.raises(ConfigError, match="data.nonfaces"):
        nonface_photos(cfg)
    cfg = load_config("viola_jones.yaml", [f"data.root={tmp_path}", f"data.nonfaces={tmp_path}"])
    with pytest.raises(ConfigError, match="no images"):
        nonface_photos(cfg)


def test_the_cascade_is_not_trained_by_the_gradient_trainer():
    detector = build_model(model_config("viola_jones"))
    assert list(detector.model.parameters()) == [] and detector.input_policy == "whole"
    with pytest.raises(Exception, match="boosting"):
        detector.criterion(None, None)


def test_the_scan_step_grows_with_the_window():
    """Windows every pixels(1.5 x scale) px (Viola & Jones' Delta = 1.5 at 24 px): a step of 2 px
    for 24-px windows, 3 for 48 and 6 for 96; rounded as the window side is (halves up)."""
    cascade = one_stump_cascade(threshold=0.0)
    assert [cascade.grid(400, 400, scale)[:2] for scale in (1.0, 2.0, 4.0)] == [(24, 2), (48, 3), (96, 6)]
    windows = cascade.windows(400, 400, 4.0)
    assert windows[1].tolist() == [6, 0, 102, 96]  # the second window of the first row
