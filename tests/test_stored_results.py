"""Each shipped detector's stored numbers (facedet/weights/results/<name>.json): written by the
benchmark as the evaluator computes them, and the committed files whole and consistent."""
import numpy as np
import pytest
import torch

from facedet.checkpoint import list_detectors, load
from facedet.cli import run_cli
from facedet.config import DataConfig, EvalConfig
from facedet.data.dataset import DetectionDataset, collate_photos
from facedet.data.loaders import load_records
from facedet.data.synthetic import ensure_synthetic
from facedet.errors import DataError
from facedet.evaluation import average_precision, evaluate_detections, operating_point
from facedet.predict import predict
from facedet.tools import benchmark
from facedet.tools.stored_results import RESULTS_DIR, load_result, thin_curve, write_result

# the rungs whose chapters show their stored numbers (Viola-Jones, the grid, SSD, RetinaNet, CenterNet)
CHAPTER_RUNGS = ["viola_jones", "grid14", "ssd", "retinanet", "centernet"]
DATA_SETS = ["faces-caltech", "faces-mask"]

def test_thin_curve_keeps_the_points_that_decide_ap():
    # scores in decreasing order: TP, FP, TP, FP, FP for 4 faces
    precision, recall = np.array([1.0, 0.5, 2 / 3, 0.5, 0.4]), np.array([0.25, 0.25, 0.5, 0.5, 0.5])
    assert thin_curve(precision, recall) == ([1.0, 0.6667, 0.4], [0.25, 0.5, 0.5])
    assert thin_curve(np.array([]), np.array([])) == ([], [])
    rng = np.random.default_rng(0)
    hits = rng.random(1500) < np.linspace(0.9, 0.05, 1500)  # a long curve, true positives thinning out
    recall = np.cumsum(hits) / 1000
    precision = np.cumsum(hits) / np.arange(1, 1501)
    p, r = thin_curve(precision, recall)
    assert int(hits.sum()) <= len(r) <= int(hits.sum()) + 2 and r[-1] == round(float(recall[-1]), 4)
    assert float(average_precision(np.array(p), np.array(r))) == pytest.approx(
        float(average_precision(precision, recall)), abs=1e-4)
    p, r = thin_curve(precision, recall, max_points=11)
    assert len(r) == 11 and r == sorted(r)


def test_write_result_keeps_the_other_data_sets(tmp_path):
    write_result(tmp_path, "x", "b", {"AP50": 0.5})
    write_result(tmp_path, "x", "a", {"AP50": 0.25})
    write_result(tmp_path, "x", "b", {"AP50": 0.75})
    assert load_result("x", tmp_path) == {"a": {"AP50": 0.25}, "b": {"AP50": 0.75}}
    with pytest.raises(DataError, match=r"y\.json: no stored results for detector 'y'; stored: x"):
        load_result("y", tmp_path)


def test_benchmark_stores_what_the_evaluator_computes(tmp_path, monkeypatch):
    """On a tiny synthetic set: the stored AP50, curve ends and recall by size are the evaluator's."""
    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    data = ensure_synthetic(n_train=8, n_val=6)
    results = tmp_path / "results"
    assert run_cli(benchmark.main, ["--data", str(data), "--ladder", "shipped", "--only", "ssd", "--timing-images", "1",
                                    "--workers", "0", "--results", str(results), "--out", str(tmp_path / "b")]) == 0
    (entry,) = load_result("ssd", results).values()
    assert list(load_result("ssd", results)) == [data.name]

    records, _ = load_records(DataConfig(root=str(data), classes="face"), "val")
    detector = load("ssd", "cpu")
    loader = torch.utils.data.DataLoader(DetectionDataset(records), batch_size=3, collate_fn=collate_photos)
    detections, truths = predict(detector, loader, EvalConfig())
    result = evaluate_detections(detections, truths, ["face"], iou_thresholds=(0.5, 0.3))
    precision, recall = result.pr_curves(0.5)["face"]
    point = operating_point(detections, truths, 1, detector.min_score)
    assert entry["photos"] == len(records) and entry["faces"] == sum(len(r.boxes) for r in records)
    assert entry["AP50"] == pytest.approx(result.as_dict()["mAP50"], abs=1e-6)
    assert entry["recall"][-1] == pytest.approx(float(recall[-1]), abs=1e-4)
    assert entry["precision"][0] == pytest.approx(float(precision[0]), abs=1e-4)
    stored_point = entry["operating_point"]
    assert stored_point["min_score"] == pytest.approx(detector.min_score)
    assert stored_point["recall_by_size"] == {k: list(v) for k, v in point.recall_by_size.items()}


@pytest.mark.parametrize("name", CHAPTER_RUNGS)
def test_committed_results_are_whole_and_consistent(name):
    """Every rung a chapter shows has its stored numbers on both validation sets, and each
    stored (thinned) curve still gives the stored AP50, computed on the whole curve."""
    assert name in list_detectors()
    results = load_result(name)
    assert sorted(results) == DATA_SETS, f"{RESULTS_DIR / name}.json: expected entries {DATA_SETS}"
    for data_set, entry in results.items():
        precision, recall = np.asarray(entry["precision"]), np.asarray(entry["recall"])
        assert np.all(np.diff(recall) >= 0), data_set
        assert float(average_precision(precision, recall)) == pytest.approx(entry["AP50"], abs=1e-3), data_set
        point = entry["operating_point"]
        assert sum(total for _, total in point["recall_by_size"].values()) == entry["faces"], data_set
        assert 0 <= point["recall"] <= 1 and 0 <= point["precision"] <= 1
