"""Operating points: precision and recall at one threshold, recall by face size, calibration."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facedet import calibrate
from facedet.checkpoint import load, load_checkpoint
from facedet.files import atomic_save
from facedet.cli import run_cli
from facedet.config import load_config, to_dict
from facedet.data.synthetic import ensure_synthetic
from facedet.evaluation import (SIZE_BINS, operating_point, score_curve, size_bin_name, threshold_for_best_f1,
                                threshold_for_precision)
from facedet.models import build_model

from conftest import det, gt


# one photo: faces of 10, 40 and 200 px; detections TP (0.9), FP (0.8), TP (0.6), TP (0.2)
FACES = gt([[0, 0, 10, 10], [100, 100, 140, 140], [300, 300, 500, 500]])
FOUND = det([[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 140, 140], [300, 300, 500, 500]], [0.9, 0.8, 0.6, 0.2])


def test_score_curve_by_hand():
    scores, precision, recall = score_curve([FOUND], [FACES], 1)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.6, 0.2])
    assert precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3, 3 / 4])
    assert recall.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1])


def test_tied_scores_share_the_counts_of_the_whole_tie():
    found = det([[0, 0, 10, 10], [50, 50, 60, 60]], [0.5, 0.5])  # a TP and a FP, tied
    scores, precision, recall = score_curve([found], [gt([[0, 0, 10, 10]])], 1)
    assert precision.tolist() == [0.5, 0.5] and recall.tolist() == [1.0, 1.0]


def test_threshold_for_precision_is_the_lowest_that_keeps_it():
    assert threshold_for_precision([FOUND], [FACES], 1, precision=0.7) == pytest.approx(0.2)  # 3/4 at 0.2
    assert threshold_for_precision([FOUND], [FACES], 1, precision=0.9) == pytest.approx(0.9)
    assert threshold_for_precision([det([[50, 50, 60, 60]], [0.8])], [FACES], 1, precision=0.5) == 1.0  # never


def test_operating_point_and_recall_by_size_by_hand():
    point = operating_point([FOUND], [FACES], 1, min_score=0.5)
    assert (point.true_positives, point.false_positives, point.num_gt) == (2, 1, 3)
    assert point.precision == pytest.approx(2 / 3) and point.recall == pytest.approx(2 / 3)
    by_size = point.recall_by_size
    assert list(by_size) == [size_bin_name(*b) for b in SIZE_BINS]
    assert by_size["10-16 px"] == (1, 1) and by_size["32-64 px"] == (1, 1) and by_size[">= 128 px"] == (0, 1)
    assert by_size["< 10 px"] == (0, 0)
    assert by_size["16-32 px"] == (0, 0)
    # a detection scoring exactly min_score is kept (0.2 as the float32 the detector returns)
    exactly = float(FOUND["scores"][-1])
    assert operating_point([FOUND], [FACES], 1, min_score=exactly).recall == pytest.approx(1.0)


def test_recall_by_size_ignores_other_sizes_and_difficult_faces():
    faces = gt([[0, 0, 10, 10], [0, 0, 12, 12]], difficult=[False, True])
    found = det([[0, 0, 12, 12]], [0.9])  # lands on the difficult face: neither TP nor FP
    point = operating_point([found], [faces], 1, min_score=0.5)
    assert point.num_gt == 1 and point.false_positives == 0
    assert point.recall_by_size["10-16 px"] == (0, 1)


def test_size_bin_names():
    assert size_bin_name(0, 10) == "< 10 px" and size_bin_name(16, 32) == "16-32 px"
    assert size_bin_name(128, math.inf) == ">= 128 px"


def test_calibrate_stores_an_operating_point_that_load_uses(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    data = ensure_synthetic(n_train=4, n_val=6)
    cfg = load_config("face_default.yaml", ["model.width=8"])
    torch.manual_seed(0)
    path = tmp_path / "face.pt"
    atomic_save({"model": build_model(cfg.model).model.state_dict(), "config": to_dict(cfg),
                 "class_names": ["face"]}, path)
    assert load(path, "cpu").min_score == 0.5 and not load(path, "cpu").calibration
    out = tmp_path / "calibrated.pt"
    assert run_cli(calibrate.main, ["--checkpoint", str(path), "--data", str(data), "--data", str(data),
                                    "--out", str(out), "--workers", "0", "--precision", "0.5", "--rule", "precision"]) == 0
    point = load_checkpoint(out)["operating_point"]
    assert set(point["per_set"]) == {data.name}  # the same folder twice is one set
    assert 0.0 <= point["min_score"] <= 1.0 and "precision >= 0.5" in point["rule"]
    detector = load(out, "cpu")
    assert detector.min_score == point["min_score"] and detector.calibration["rule"] == point["rule"]
    assert point["per_set"][data.name]["images"] == 6
    # --max-images: the first N photos of each set (the sliding window scans seconds per photo)
    assert run_cli(calibrate.main, ["--checkpoint", str(path), "--data", str(data), "--out", str(out),
                                    "--workers", "0", "--max-images", "2"]) == 0
    assert load_checkpoint(out)["operating_point"]["per_set"][data.name]["images"] == 2


def test_calibrate_keeps_two_sets_that_share_a_folder_name(tmp_path, monkeypatch):
    """a/val and b/val are two sets: each keeps its rows and its say in the rules, labelled by the
    shortest ends of their paths that tell them apart."""
    # best F1 alone: a at 0.2, b at 0.7; together at 0.6, so each set has its say in the threshold
    b_photo = det([[0, 0, 10, 10], [50, 50, 60, 60], [200, 200, 210, 210]], [0.7, 0.3, 0.3])
    found = {"a": ([FOUND, FOUND], [FACES, FACES]), "b": ([b_photo] * 3, [FACES] * 3)}
    monkeypatch.setattr(calibrate, "validation_detections",
                        lambda detector, root, *args: found[Path(root).parent.name])
    detector = SimpleNamespace(class_names=["face"], max_size=640)
    point = calibrate.calibrate(detector, [str(tmp_path / "a" / "val"), str(tmp_path / "b" / "val") + "/"])
    assert {name: row["images"] for name, row in point["per_set"].items()} == {"a/val": 2, "b/val": 3}
    assert "a/val and b/val" in point["rule"]
    both = threshold_for_best_f1(found["a"][0] + found["b"][0], found["a"][1] + found["b"][1], 1)
    assert point["min_score"] == pytest.approx(both)
    assert both not in (threshold_for_best_f1(*found["a"], 1), threshold_for_best_f1(*found["b"], 1))
    assert calibrate.set_labels(["x/faces", "y/faces", "z/other"]) == ["x/faces", "y/faces", "other"]


def test_calibrate_refuses_a_bad_precision(tmp_path, capsys):
    assert run_cli(calibrate.main, ["--checkpoint", str(tmp_path / "x.pt"), "--data", "d", "--precision", "2"]) == 2
    assert "--precision 2" in capsys.readouterr().err


def test_threshold_for_best_f1_by_hand():
    from facedet.evaluation import threshold_for_best_f1

    # F1 at 0.9: 2(1)(1/3)/(4/3) = 0.5; at 0.8: 0.4; at 0.6: 2/3; at 0.2: 2(3/4)(1)/(7/4) = 0.857
    assert threshold_for_best_f1([FOUND], [FACES], 1) == pytest.approx(0.2)
    assert threshold_for_best_f1([det([], [])], [FACES], 1) == 1.0


def test_calibrate_rules_are_checked():
    with pytest.raises(facedet_errors().ConfigError, match="--rule 'best'"):
        calibrate.calibrate(None, [], rule="best")


def facedet_errors():
    import facedet.errors

    return facedet.errors


def test_calibrate_precision_rule_keeps_the_precision_on_every_set(tmp_path, monkeypatch):
    """--rule precision: the threshold is the HIGHEST of the per-set thresholds, so that every set
    keeps the precision (the lowest would keep it on one set only)."""
    easy = ([FOUND], [FACES])  # precision >= 0.7 from 0.2 (3/4)
    hard = ([det([[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 140, 140]], [0.9, 0.8, 0.6])], [FACES])  # from 0.9
    found = {"easy": easy, "hard": hard}
    monkeypatch.setattr(calibrate, "validation_detections", lambda detector, root, *args: found[Path(root).name])
    detector = SimpleNamespace(class_names=["face"], max_size=640)
    point = calibrate.calibrate(detector, [str(tmp_path / "easy"), str(tmp_path / "hard")], precision=0.7,
                                rule="precision")
    thresholds = {name: row["threshold_for_precision_0.7"] for name, row in point["per_set"].items()}
    assert thresholds == pytest.approx({"easy": 0.2, "hard": 0.9})
    assert point["min_score"] == pytest.approx(0.9)
    assert all(row["precision"] >= 0.7 for row in point["per_set"].values())
