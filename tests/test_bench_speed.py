"""python -m facedet.tools.bench_speed --quick: every section runs and reports sane numbers (no timings asserted)."""
import json

from facedet.cli import run_cli
from facedet.tools import bench_speed


def test_quick_run_writes_every_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))  # the loader section's small synthetic set
    out = tmp_path / "speed.json"
    code = run_cli(bench_speed.main, ["--quick", "--models", "yolo_face_tiny", "--workers", "0", "--threads", "1",
                                      "--sections", "models", "nms", "loader", "latency", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train img/s" in printed and "facedet.boxes.nms ms" in printed and "ms / photo" in printed
    report = json.loads(out.read_text())
    assert report["command"].startswith("python -m facedet.tools.bench_speed --quick") and report["machine"]
    (model,) = report["models"]
    assert model["model"] == "yolo_face_tiny" and model["parameters"] == 1_128_229 and model["batch"] == 8
    assert model["train_img_s"] > 0 and model["infer_img_s"] > 0
    assert model["peak_rss_mb"] > 50  # a real process peak, measured in the model's own process
    assert [row["boxes"] for row in report["nms"]] == [1000, 10000]
    for row in report["nms"]:
        assert 0 < row["kept"] < row["boxes"] and row["facedet_ms"] > 0
        if "cv2_ms" in row:  # opencv installed: both must keep the same boxes
            assert row["same_kept_set"] is True
    (loader,) = report["loader"]
    assert loader["workers"] == 0 and loader["images"] > 0 and loader["img_s"] > 0
    latency = {row["model"]: row for row in report["latency"]}
    assert latency["yolo_face_tiny"]["ms"] > 0
    shipped = [row for name, row in latency.items() if name.startswith("face_ssd (shipped weights)")]
    assert len(shipped) == 3 and all(row["ms"] > 0 for row in shipped)
    assert {row["parameters"] for row in shipped} == {355_644}  # the shipped checkpoint (BatchNorm folded still counts)
    haar = "Haar cascade (OpenCV, full resolution)"
    assert haar not in latency or latency[haar]["ms"] > 0  # only when opencv imports


def test_latency_photo_is_640_by_480(tmp_path):
    from PIL import Image
    Image.new("L", (100, 50), 128).save(tmp_path / "gray.png")
    photo = bench_speed.latency_photo(str(tmp_path / "gray.png"))
    assert photo.size == (640, 480) and photo.mode == "RGB"
    assert bench_speed.latency_photo("").size == (640, 480)


def test_bad_arguments_are_one_line(capsys):
    assert run_cli(bench_speed.main, ["--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
