"""Each shipped detector's stored numbers (facedet/weights/results/<name>.json): written by the
benchmark as the evaluator computes them, and the committed files whole and consistent."""
import numpy as np
import pytest
import torch

from facedet.checkpoint import load
from facedet.cli import run_cli
from facedet.config import DataConfig, EvalConfig
from facedet.data.dataset import DetectionDataset, collate_photos
from facedet.data.loaders import load_records
from facedet.data.synthetic import ensure_synthetic
from facedet.errors import DataError
from facedet.evaluation import evaluate_detections, operating_point
from facedet.predict import predict
from facedet.tools import benchmark
from facedet.tools.stored_results import load_result, thin_curve, write_result

def test_thin_curve_keeps_short_curves_and_both_ends_of_long_ones():
    precision, recall = np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])
    assert thin_curve(precision, recall) == ([1.0, 0.5, 0.6667], [0.5, 0.5, 1.0])
    precision, recall = np.linspace(1, 0.2, 1001), np.linspace(0.001, 0.9, 1001)
    p, r = thin_curve(precision, recall, max_points=11)
    assert len(p) == len(r) == 11
    assert (p[0], r[0], p[-1], r[-1]) == (1.0, 0.001, 0.2, 0.9)
    assert r == sorted(r)


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
