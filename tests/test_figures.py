"""The library's teaching figures: receptive fields, priors, BCE, NMS, summaries, and the
`python -m facedet.tools.figures` command that regenerates doc_images/."""
import csv
import math

import pytest
import torch
from torch import nn

from facedet.tools.figures.receptive_field import Layer, receptive_field, trace_layers, traced_fields

from conftest import assert_png


# --------------------------------------------------------------------------- receptive field


def test_receptive_field_of_the_seed_classifier_by_hand():
    # conv 3x3 p1, conv 3x3 p1, pool 2, conv 3x3 p1, pool 2 (worked out in the module docstring)
    layers = [Layer("conv1", 3, 1, 1), Layer("conv2", 3, 1, 1), Layer("pool1", 2, 2), Layer("conv3", 3, 1, 1),
              Layer("pool2", 2, 2)]
    fields = receptive_field(layers)
    assert [(f.rf, f.jump, f.start) for f in fields] == [
        (3, 1, 0.5), (5, 1, 0.5), (6, 2, 1.0), (10, 2, 1.0), (12, 4, 2.0)]


def test_receptive_field_stride_and_dilation_by_hand():
    # 7x7 stride 2 pad 3: rf 7, jump 2, first centre 0.5 + (3 - 3) = 0.5
    # then 3x3 dilation 2 pad 2 (effective kernel 5): rf 7 + 4 * 2 = 15, start 0.5 + (2 - 2) * 2 = 0.5
    # then 3x3 stride 2 no padding: rf 15 + 2 * 2 = 19, start 0.5 + 1 * 2 = 2.5, jump 4
    fields = receptive_field([Layer("a", 7, 2, 3), Layer("b", 3, 1, 2, dilation=2), Layer("c", 3, 2, 0)])
    assert [(f.rf, f.jump, f.start) for f in fields] == [(7, 2, 0.5), (15, 2, 0.5), (19, 4, 2.5)]
    assert receptive_field([]) == []


def test_trace_records_modules_and_functional_pools_in_order():
    from facedet.models.classifier import CNNClassifier

    with torch.device("meta"):
        model = CNNClassifier(512)  # F.max_pool2d inside forward: no pooling module to find
    traced = trace_layers(model, 128)
    assert [(layer.name, layer.kind, layer.kernel, layer.stride, layer.padding, side) for layer, side in traced] == [
        ("conv1", "conv", 3, 1, 1, 128), ("conv2", "conv", 3, 1, 1, 128), ("max_pool2d", "max_pool2d", 2, 2, 0, 64),
        ("conv3", "conv", 3, 1, 1, 64), ("max_pool2d", "max_pool2d", 2, 2, 0, 32)]
    assert traced_fields(model, 128)[-1].rf == 12
    assert model.training  # tracing puts the model in eval mode and back


def test_traced_fields_of_the_yolo_stacks():
    from facedet.models.yolo_face import YOLOFaceCNN, YOLOFaceTiny

    with torch.device("meta"):
        seed, tiny = YOLOFaceCNN(), YOLOFaceTiny(32)
    # the seed's stack: 7x7/2, pool, 3x3, pool, 1x1, 3x3, 1x1, 3x3, pool -> 61 px at stride 16
    last = traced_fields(seed, 224)[-1]
    assert (last.rf, last.jump, last.size) == (61, 16, 14)
    # five 3x3 stride-2 convs and one 3x3 stride 1 (YOLOFaceTiny's docstring), then the 1x1 head
    assert [f.rf for f in traced_fields(tiny, 224)] == [3, 7, 15, 31, 63, 127, 127]


def test_trace_follows_a_given_forward_and_avg_pool():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3))
    traced = trace_layers(net, 32, forward=lambda m, x: m[1](m[0](x)))  # the last conv is not run
    assert [(layer.kind, layer.kernel, layer.stride, side) for layer, side in traced] == [
        ("conv", 3, 2, 16), ("avg_pool2d", 2, 2, 8)]


# --------------------------------------------------------------------------- priors


def _ssd_maps():
    from facedet.models.ssd import PRIOR_MAPS, PRIORS_PER_CELL

    return [(size, k) for (_, size, _, _), k in zip(PRIOR_MAPS, PRIORS_PER_CELL)]


def test_priors_at_the_centre_cell_of_conv9_2():
    from facedet.tools.figures.priors import priors_at_cell
    from facedet.models.ssd import make_priors

    cell = priors_at_cell(make_priors(), _ssd_maps(), 3, 2, 2)  # conv9_2: 5 x 5, 6 priors, s = 0.55
    s, extra = 0.55, math.sqrt(0.55 * 0.725)
    expected_wh = [(s, s), (extra, extra), (s * 2**0.5, s / 2**0.5), (s * 3**0.5, s / 3**0.5),
                   (s / 2**0.5, s * 2**0.5), (s / 3**0.5, s * 3**0.5)]
    assert torch.allclose(cell[:, :2], torch.full((6, 2), 0.5))
    assert torch.allclose(cell[:, 2:], torch.tensor(expected_wh), atol=1e-4)


def test_priors_at_cell_walks_every_prior_once_in_order():
    """Oracle: looping over maps, rows and columns and concatenating gives back all 8732 priors."""
    from facedet.tools.figures.priors import priors_at_cell
    from facedet.models.ssd import make_priors

    priors, maps = make_priors(), _ssd_maps()
    pieces = [priors_at_cell(priors, maps, m, r, c) for m, (size, _) in enumerate(maps)
              for r in range(size) for c in range(size)]
    assert torch.equal(torch.cat(pieces), priors)
    first = priors_at_cell(priors, maps, 0, 0, 0)
    assert torch.allclose(first[:, :2], torch.full((4, 2), 0.5 / 38))
    with pytest.raises(IndexError):
        priors_at_cell(priors, maps, 5, 1, 0)  # conv11_2 has one cell


def test_toy_grid_priors_follow_the_ssd_recipe():
    from facedet.tools.figures.priors import toy_grid_priors

    priors = toy_grid_priors(4, ratios=(1.0, 2.0, 0.5))
    assert priors.shape == (48, 4)
    # cell (row 1, column 2) = priors 18-20: centre (0.625, 0.375), w = s sqrt(a), h = s / sqrt(a), s = 1/4
    cell = priors[(1 * 4 + 2) * 3 : (1 * 4 + 2) * 3 + 3]
    assert torch.allclose(cell[:, :2], torch.tensor([0.625, 0.375]).expand(3, 2))
    assert torch.allclose(cell[:, 2:], torch.tensor([[0.25, 0.25], [0.25 * 2**0.5, 0.25 / 2**0.5],
                                                     [0.25 / 2**0.5, 0.25 * 2**0.5]]))


def test_toy_matching_has_a_forced_match():
    """The toy example shows both rules: object 0 matches priors with IoU >= 0.5, object 1 only its best prior."""
    from facedet.boxes import box_convert, box_iou
    from facedet.tools.figures.priors import toy_matching_example
    from facedet.models.ssd import match_priors

    priors, objects, labels = toy_matching_example()
    priors_xyxy = box_convert(priors, "cxcywh", "xyxy")
    iou = box_iou(objects, priors_xyxy)
    assert (iou[0] >= 0.5).sum() >= 2 and iou[1].max() < 0.5
    matched, _ = match_priors(objects[None], labels[None], torch.ones(1, 2, dtype=torch.bool), priors_xyxy)
    assert int((matched > 0).sum()) == int((iou[0] >= 0.5).sum()) + 1


# --------------------------------------------------------------------------- BCE, NMS, summaries


def test_bce_worked_example_of_the_seed():
    from facedet.tools.figures.bce import SEED_PREDICTIONS, SEED_TRUTH, bce_terms
    from facedet.models.grid import GridLoss

    terms = bce_terms(SEED_TRUTH, SEED_PREDICTIONS)
    assert torch.allclose(terms["loss"], torch.tensor([0.2231, 0.9163, 0.1054, 0.3567], dtype=torch.float64),
                          atol=1e-4)
    assert terms["term1"][0] == 0 and terms["term2"][1] == 0  # 0 * log(...) is exactly 0
    assert round(terms["loss"].mean().item(), 4) == 0.4004
    grid = GridLoss(2)(torch.tensor(SEED_PREDICTIONS).view(1, 2, 2), torch.tensor(SEED_TRUTH).view(1, 2, 2))
    assert grid["bce"].item() == pytest.approx(0.4004, abs=1e-4)


def test_toy_candidates_surround_their_faces():
    from facedet.boxes import box_iou
    from facedet.tools.figures.detections import toy_candidates

    faces = torch.tensor([[20.0, 30.0, 80.0, 100.0], [150.0, 40.0, 200.0, 110.0]])
    boxes, scores = toy_candidates(faces, per_face=5, spurious=2)
    assert boxes.shape == (12, 4) and scores.shape == (12,)
    best = box_iou(boxes[:10], faces).max(dim=1)
    assert (best.values > 0.4).all()
    assert torch.equal(best.indices, torch.tensor([0] * 5 + [1] * 5))
    assert (scores[10:] < scores[:10].min()).all()  # the strays score lowest


def test_nms_before_after_on_a_detector():
    from PIL import Image

    from facedet.config import model_config
    from facedet.tools.figures.detections import nms_before_after
    from facedet.models import build_model

    torch.manual_seed(0)
    cfg = model_config("yolo_face_tiny", image_size=32, griddim=4, width=4, num_classes=1)
    detector = build_model(cfg)
    image = Image.new("RGB", (48, 40), (120, 90, 60))
    before, after = nms_before_after(detector, image, min_score=0.0, nms_iou=0.3)
    assert len(before["boxes"]) == 16  # every cell's box: min_score 0 and NMS that removes nothing
    assert 1 <= len(after["boxes"]) <= len(before["boxes"])
    assert (before["boxes"][:, 2] <= 48 + 1e-4).all()  # pixels of the 48 x 40 photo
    assert all((b == before["boxes"]).all(dim=1).any() for b in after["boxes"])  # after is a subset


def test_seed_summaries_have_the_seed_parameter_counts():
    from facedet.tools.figures.summaries import seed_summary

    for name, total in (("classifier", "67,203,137"), ("grid_simple", "412,989,681"), ("yolo_face", "413,743,925"),
                        ("face_ssd", "355,644")):
        assert f"Total params: {total}" in seed_summary(name)


# --------------------------------------------------------------------------- focal loss (rung 6)


def test_loss_shares_by_hand():
    """One image, 1 positive and 9 negatives, every score p = 0.01 (the prior init):
        positive: CE = -ln 0.01 = 4.6052;  focal = 0.25 * 0.99^2 * 4.6052 = 1.1284
        negative: CE = -ln 0.99 = 0.010050 (easy: p < 0.1); focal = 0.75 * 0.01^2 * 0.010050 = 7.54e-7
        CE, every anchor: negatives 9 * 0.010050 = 0.09045 of 4.6956 -> 1.93 %
        CE + 3:1 mining:  3 negatives, 0.03015 of 4.6353 -> 0.65 %
        focal:            9 * 7.54e-7 of 1.1284 -> 6.0e-6
    An ignored anchor counts nowhere."""
    from facedet.tools.figures.focal import loss_shares
    from facedet.models.retinanet import BACKGROUND, IGNORE

    labels = torch.tensor([[0] + [BACKGROUND] * 9 + [IGNORE]])
    logits = torch.full((1, 11, 1), math.log(0.01 / 0.99))
    shares = loss_shares(logits, labels)
    ce, mined, focal = shares.values()
    assert ce["easy negatives"] == pytest.approx(9 * 0.0100503 / (4.6051702 + 9 * 0.0100503), rel=1e-4)
    assert mined["easy negatives"] == pytest.approx(3 * 0.0100503 / (4.6051702 + 3 * 0.0100503), rel=1e-4)
    assert focal["easy negatives"] == pytest.approx(9 * 0.75e-4 * 0.0100503 / (0.25 * 0.99 ** 2 * 4.6051702), rel=1e-3)
    assert (ce["anchors"], mined["anchors"], focal["anchors"]) == (10, 4, 10)
    assert ce["hard negatives"] == 0.0 and focal["total"] == pytest.approx(0.25 * 0.99 ** 2 * 4.6051702 + 9 * 7.54e-7,
                                                                           rel=1e-3)
    for row in shares.values():
        assert sum(row[k] for k in ("positives", "hard negatives", "easy negatives")) == pytest.approx(1.0)
    # a negative scored 0.5 is hard, and mining picks it before the easy ones
    logits[0, 5, 0] = 0.0
    _, mined, _ = loss_shares(logits, labels).values()
    assert mined["hard negatives"] == pytest.approx(math.log(2) / (4.6051702 + math.log(2) + 2 * 0.0100503), rel=1e-4)


def test_cumulative_negative_loss_and_figures(tmp_path):
    from facedet.tools.figures.focal import cumulative_negative_loss, plot_cumulative_loss, plot_focal_loss_curves

    probs = torch.tensor([0.01, 0.01, 0.01, 0.9])  # three easy negatives and one hard one
    ce = cumulative_negative_loss(probs, gamma=0.0)
    # CE: each easy one -ln 0.99 = 0.01005, the hard one -ln 0.1 = 2.3026: the first three hold 1.3 %
    assert ce[2].item() == pytest.approx(3 * 0.0100503 / (3 * 0.0100503 + 2.3025851), rel=1e-4)
    assert ce[-1].item() == pytest.approx(1.0)
    assert cumulative_negative_loss(probs, gamma=2.0)[2].item() < 1e-5
    assert_png(plot_focal_loss_curves(tmp_path / "curves.png", dpi=40))
    assert_png(plot_cumulative_loss(torch.rand(100), tmp_path / "cumulative.png", dpi=40))


def test_p3_field_with_and_without_the_top_down_path(tmp_path):
    """Without the top-down path a P3 cell of the small backbone sees 71 x 71 px, by hand:
    stem 3x3/2 (3, jump 2), dw 3x3/2 (7, jump 4), dw 3x3 (15), stage3 dw 3x3/2 (23, jump 8),
    dw 3x3 (39), dw 3x3 (55), lateral 1x1 (55), smoothing dw 3x3 (71). With it, C5's field
    reaches the P3 cell: nearly the whole 256 px input."""
    from facedet.config import model_config
    from facedet.tools.figures.pyramid import cell_field, field_extent, plot_cell_fields
    from facedet.models import build_model

    fields = {}
    for top_down in (False, True):
        torch.manual_seed(0)
        cfg = model_config("retinanet", num_classes=1, width=8, fpn_channels=8, head_depth=0, top_down=top_down)
        fields[top_down] = cell_field(build_model(cfg).model, 256)
    assert field_extent(fields[False]) == (71, 71)
    assert min(field_extent(fields[True])) > 200
    assert field_extent(torch.zeros(4, 4, dtype=torch.bool)) == (0, 0)
    assert_png(plot_cell_fields({"without": fields[False], "with": fields[True]}, tmp_path / "fields.png", dpi=40))


# --------------------------------------------------------------------------- the command


def test_command_draws_the_library_figures_and_skips_missing_runs(tmp_path, capsys):
    from facedet.tools.figures.all import RUNS, main

    out = tmp_path / "doc_images"
    assert main(["--out", str(out), "--runs", str(tmp_path / "no_runs"), "--dpi", "40"]) == 0
    printed = capsys.readouterr().out
    expected = ["bce_worked_example.png", "nms_before_after.png", "prior_matching.png", "priors_conv9_2_centre.png",
                "priors_toy_grid.png", "receptive_field_cell.png", "receptive_field_growth.png",
                "truth_matrix_synthetic.png", "touching_failure.png", "summary_classifier.png",
                "focal_loss_curves.png", "focal_loss_shares_init.png", "fpn_cell_field.png",
                "summary_grid_simple.png", "summary_yolo_face.png", "summary_ssd300.png",
                "receptive_field_yolo_face.png", "centernet_targets.png"]
    for name in expected:
        assert_png(out / name)
    assert "Total params: 413,743,925" in (out / "summary_yolo_face.txt").read_text()
    assert "61" in (out / "receptive_field.txt").read_text()
    assert f"skipped ({len(RUNS)})" in printed
    for run in RUNS:
        assert f"{run}: no " in printed


def tiny_yolo_face_run(runs):
    """runs/yolo_face/best.pt (a tiny untrained yolo_face_tiny) and its two-epoch metrics.csv."""
    from facedet.config import Config, to_dict
    from facedet.files import atomic_save
    from facedet.models import build_model

    cfg = Config()
    cfg.model.name, cfg.model.image_size, cfg.model.griddim, cfg.model.width = "yolo_face_tiny", 32, 4, 4
    cfg.model.num_classes = 1
    cfg.data.synthetic_train, cfg.data.synthetic_val, cfg.data.num_workers = 4, 4, 0
    cfg.train.batch_size = 4
    torch.manual_seed(0)
    run = runs / "yolo_face"  # named as train_ladder.sh names it; the config says which model
    atomic_save({"model": build_model(cfg.model).model.state_dict(), "config": to_dict(cfg),
                 "class_names": ["face"]}, run / "best.pt")
    with (run / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, ["epoch", "loss", "mAP"])
        writer.writeheader()
        writer.writerows([{"epoch": 1, "loss": 2.0, "mAP": 0.1}, {"epoch": 2, "loss": 1.0, "mAP": 0.3}])
    return run


def test_run_figures_draw_what_a_run_directory_holds(tmp_path, monkeypatch):
    """A tiny yolo_face checkpoint and a metrics.csv -> its NMS figure, PR curve and training chart."""
    from facedet.tools.figures.all import run_figures

    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    tiny_yolo_face_run(tmp_path / "runs")
    out = tmp_path / "figs"
    written, skipped = run_figures(tmp_path / "runs", out, count=1, device="cpu", dpi=40)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["pr_yolo_face.png", "training_chart_yolo_face.png", "yolo_face_nms_synthetic_0.png"]
    for name in names:
        assert_png(out / name)
    assert len(written) == 3 and "mAP50=" in " ".join(written)
    assert not any(line.startswith("yolo_face") for line in skipped)
    assert any(line.startswith("classifier: no") for line in skipped)


def test_only_draws_the_chosen_sections_and_notes_only_their_missing_runs(tmp_path, capsys):
    """--only nms: the NMS figure of yolo_face, no PR curve, no chart, no library figure; only
    ssd300_bccd (the other run of the section) is noted missing."""
    from facedet.tools.figures.all import main

    run = tiny_yolo_face_run(tmp_path / "runs")
    mine = tmp_path / "mine.pt"
    (run / "best.pt").rename(mine)  # read through --checkpoint instead of runs/yolo_face/best.pt
    out = tmp_path / "figs"
    assert main(["--only", "nms", "--runs", str(tmp_path / "runs"), "--checkpoint", f"yolo_face={mine}",
                 "--count", "1", "--out", str(out), "--dpi", "40", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["yolo_face_nms_synthetic_0.png"]
    printed = capsys.readouterr().out
    assert "skipped (1):\n  ssd300_bccd: no " in printed
