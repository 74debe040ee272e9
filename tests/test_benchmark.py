"""The ladder benchmark: every detector scored on the same photos, one table and one PR PNG."""
import json

import pytest
import torch

from facedet import train
from facedet.cli import run_cli
from facedet.data.synthetic import ensure_synthetic
from facedet.evaluation import evaluate_detections
from facedet.tools import benchmark

TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.num_workers=0", "train.batch_size=8",
        "train.device=cpu", "train.epochs=1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEDET_CACHE", str(cache))
    runs = tmp_path_factory.mktemp("runs")
    assert run_cli(train.main, ["--config", "quickstart.yaml", f"out_dir={runs}", "name=yolo_face", *TINY, "model.width=8"]) == 0
    data = ensure_synthetic(n_train=16, n_val=8)
    yield runs, data
    mp.undo()


def test_table_json_and_curves(setup, tmp_path, capsys):
    runs, data = setup
    out = tmp_path / "bench"
    code = run_cli(benchmark.main, ["--data", str(data), "--runs", str(runs), "--only", "yolo_face", "default",
                                    "--no-haar", "--timing-images", "2", "--workers", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "benchmark.json").read_text())
    assert report["images"] == 8
    labels = [row["label"] for row in report["rows"]]
    assert labels == ["4 YOLO-face", benchmark.DEFAULT_LABEL]  # ladder order, the shipped detector last
    yolo = report["rows"][0]
    assert yolo["params"] > 0 and yolo["ms_per_image"] > 0 and yolo["train_time_s"] > 0
    for row in report["rows"]:
        for key in ("AP50", "AP30", "AP_coco", "recall_at_50fp"):
            assert 0.0 <= row[key] <= 1.0, (row["label"], key)
        assert row["AP30"] >= row["AP50"]  # a looser match can only find more true positives
    table = (out / "benchmark.md").read_text()
    assert "| 4 YOLO-face |" in table and (out / "pr_curves.png").stat().st_size > 1000
    # the operating-point table: each detector's min score, precision, recall, recall by face size
    for row in report["rows"]:
        point = row["operating_point"]
        assert 0.0 <= point["precision"] <= 1.0 and 0.0 <= point["recall"] <= 1.0
        found = sum(f for f, _ in point["recall_by_size"].values())
        total = sum(n for _, n in point["recall_by_size"].values())
        assert total == point["num_gt"] and found <= point["true_positives"]
    assert "recall 16-32 px" in table and f"| {benchmark.DEFAULT_LABEL} |" in table.split("operating point")[1]
    assert "4 YOLO-face" in capsys.readouterr().out


def test_scores_agree_with_the_evaluator(setup, tmp_path):
    """The benchmark's AP for a checkpoint is the evaluator's on the same detections."""
    runs, data = setup
    from facedet.checkpoint import load
    from facedet.config import DataConfig, EvalConfig
    from facedet.data.dataset import DetectionDataset, collate_photos
    from facedet.data.loaders import load_records
    from facedet.predict import predict

    records, _ = load_records(DataConfig(root=str(data), classes="face"), "val")
    row, _ = benchmark.benchmark_checkpoint("x", runs / "yolo_face" / "best.pt", records, torch.device("cpu"),
                                            EvalConfig(), [], timing_images=1, batch_size=4, num_workers=0)
    detector = load(runs / "yolo_face" / "best.pt", "cpu")
    loader = torch.utils.data.DataLoader(DetectionDataset(records), batch_size=3, collate_fn=collate_photos)
    detections, truths = predict(detector, loader, EvalConfig())
    expected = evaluate_detections(detections, truths, ["face"], iou_thresholds=(0.5, 0.3)).as_dict()
    assert row.AP50 == pytest.approx(expected["mAP50"], abs=1e-6)
    assert row.AP30 == pytest.approx(expected["mAP30"], abs=1e-6)


def test_haar_cascade_row(setup, tmp_path):
    pytest.importorskip("cv2")
    from facedet.tools.opencv_haar import HaarCascade

    try:
        HaarCascade()
    except Exception as err:  # OpenCV 5 ships no cascade files
        pytest.skip(str(err))
    runs, data = setup
    out = tmp_path / "bench"
    assert run_cli(benchmark.main, ["--data", str(data), "--runs", str(runs), "--only", "haar",
                                    "--out", str(out)]) == 0
    (row,) = json.loads((out / "benchmark.json").read_text())["rows"]
    assert row["label"] == benchmark.HAAR_LABEL and row["params"] is None and row["ms_per_image"] > 0


def test_bad_arguments_are_one_line(setup, tmp_path, capsys):
    runs, data = setup
    assert run_cli(benchmark.main, ["--data", str(data), "--checkpoint", "nopath"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert run_cli(benchmark.main, ["--data", str(data), "--checkpoint", f"x={tmp_path / 'none.pt'}"]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert run_cli(benchmark.main, ["--data", str(data), "--runs", str(tmp_path), "--only", "grid7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing to benchmark" in err and "\n" not in err


def test_sliding_window_row_on_fewer_photos(setup, tmp_path):
    """A classifier checkpoint is benchmarked as rung 2, on the first --window-max-images photos."""
    runs, data = setup
    small = ["model.image_size=64", "model.embedding_dim=32", f"data.cache_dir={tmp_path / 'crops'}"]
    assert run_cli(train.main, ["--config", "classifier.yaml", f"out_dir={runs}", "name=classifier",
                                *TINY, *small]) == 0
    out = tmp_path / "bench"
    code = run_cli(benchmark.main, ["--data", str(data), "--runs", str(runs), "--only", "classifier", "yolo_face",
                                    "--window-max-images", "2", "--timing-images", "1", "--workers", "0",
                                    "--out", str(out), "model.window_sizes=[96, 160]", "model.window_image_side=256"])
    assert code == 0
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [(r["label"], r["images"]) for r in rows] == [("2 sliding window", 2), ("4 YOLO-face", 8)]


def test_same_backbone_table(setup, tmp_path):
    """--ladder same: the same-backbone rungs (runs/same_<rung>/best.pt) get their own table with
    the images each was trained on, their own PR figure and the validation curves."""
    runs, data = setup
    assert run_cli(train.main, ["--config", "same_yolo.yaml", f"out_dir={runs}", "name=same_yolo", *TINY,
                                "train.max_iters=2", "model.width=8", "model.image_size=64"]) == 0
    out = tmp_path / "bench"
    assert run_cli(benchmark.main, ["--data", str(data), "--runs", str(runs), "--ladder", "same", "--timing-images", "1",
                                    "--workers", "0", "--out", str(out)]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    (row,) = report["rows"]
    assert row["label"] == "4 YOLO-face" and row["ladder"] == "same"
    assert row["images_seen"] == 2 * 8  # max_iters x batch_size
    assert any("same_grid7" in line for line in report["skipped"])
    table = (out / "benchmark.md").read_text()
    assert table.startswith("**same backbone") and "seed-size" not in table
    assert "| images seen |" in table and "| 16 |" in table
    assert (out / "pr_curves_same_backbone.png").stat().st_size > 0
    assert (out / "validation_curves.png").stat().st_size > 0 and not (out / "pr_curves.png").exists()
    assert benchmark.validation_history(runs / "same_yolo" / "best.pt")[-1][0] == 16
