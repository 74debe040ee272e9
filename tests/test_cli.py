"""End to end through the command-line entry points, on the embedded synthetic data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facedet import evaluate, infer, train
from facedet.checkpoint import load_checkpoint
from facedet.cli import run_cli

TINY = ["data.synthetic_train=24", "data.synthetic_val=8", "data.num_workers=0", "train.batch_size=8",
        "train.device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short quick-start run shared by the tests below."""
    out = tmp_path_factory.mktemp("runs")
    os.environ.setdefault("FACEDET_CACHE", str(tmp_path_factory.mktemp("cache")))
    code = run_cli(train.main, ["--config", "quickstart.yaml", f"out_dir={out}", "name=q", "train.epochs=2", *TINY, "model.width=8"])
    assert code == 0
    return out / "q"


def test_train_writes_run_directory(trained):
    for name in ("config.yaml", "metrics.csv", "training_chart.png", "last.pt", "best.pt"):
        assert (trained / name).exists(), name
    state = load_checkpoint(trained / "best.pt")
    assert state["config"]["model"]["name"] == "yolo_face_tiny" and state["class_names"] == ["face"]
    assert "mAP50" in state["metrics"]


def test_infer_writes_json_and_annotated_images(trained, tmp_path):
    from facedet.data.synthetic import make_demo_image

    image = tmp_path / "imgs" / "demo.jpg"
    make_demo_image(image, seed=3)
    (tmp_path / "imgs" / "broken.jpg").write_text("not an image")
    out = tmp_path / "det.json"
    code = run_cli(infer.main, [str(tmp_path / "imgs"), "--checkpoint", str(trained / "best.pt"),
                                "--json", str(out), "--save-dir", str(tmp_path / "ann"), "--min-score", "0.0"])
    assert code == 1  # one file could not be read; the others were still processed
    results = json.loads(out.read_text())
    assert list(results) == [str(image)]
    for box in results[str(image)]:
        assert len(box) == 7 and isinstance(box[6], str) and box[0] <= box[2] and box[1] <= box[3] and 0 <= box[4] <= 1
    assert (tmp_path / "ann" / "demo_det.jpg").exists()


def test_evaluate_prints_table(trained, tmp_path, capsys):
    code = run_cli(evaluate.main, ["--checkpoint", str(trained / "best.pt"), "--out", str(tmp_path)])
    assert code == 0
    assert "face" in capsys.readouterr().out
    assert (tmp_path / "pr_curve.png").exists() and "mAP50" in json.loads((tmp_path / "metrics.json").read_text())


def test_user_errors_are_one_line(tmp_path, capsys):
    assert run_cli(train.main, ["--config", "quickstart.yaml", "train.epoch=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "train.epoch" in err and "\n" not in err
    assert run_cli(infer.main, [str(tmp_path / "missing.jpg"), "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "x.pt" in capsys.readouterr().err
    assert run_cli(train.main, ["--config", "quickstart.yaml", f"data.root={tmp_path / 'nothing'}"]) == 2
    assert "nothing" in capsys.readouterr().err


def _yolo_set(root: Path, label_text: str) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (64, 48), (120, 90, 60)).save(root / "images" / split / "a.jpg")
        (root / "labels" / split / "a.txt").write_text(label_text)
    return root


def test_train_on_bad_data_names_file_and_line(tmp_path, capsys):
    root = _yolo_set(tmp_path / "set", "0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2\n")
    code = run_cli(train.main, ["--config", "quickstart.yaml", f"data.root={root}", f"out_dir={tmp_path}", *TINY, "model.width=8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "a.txt:2" in err and "class cx cy w h" in err


def test_train_refuses_class_count_mismatch(tmp_path, capsys):
    root = _yolo_set(tmp_path / "set", "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    code = run_cli(train.main, ["--config", "grid7.yaml", f"data.root={root}", "data.classes=", f"out_dir={tmp_path}", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "num_classes" in err and "data.classes=face" in err


def test_print_config_shows_resolved_values(capsys):
    import yaml

    assert run_cli(train.main, ["--config", "yolo_face.yaml", "train.epochs=2", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["epochs"] == 2 and shown["model"]["name"] == "yolo_face"
    assert shown["eval"]["nms_iou"] == 0.45  # defaults are listed too


def test_several_roots_are_concatenated(tmp_path):
    from facedet.config import DataConfig
    from facedet.data.loaders import load_records
    from facedet.errors import ConfigError

    one = _yolo_set(tmp_path / "one", "0 0.5 0.5 0.2 0.2\n")
    two = _yolo_set(tmp_path / "two", "0 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n")
    records, names = load_records(DataConfig(root=f"{one}, {two}", classes="face"), "train")
    assert [len(r.boxes) for r in records] == [1, 2] and names == ["face"]
    (two / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat]\n")
    with pytest.raises(ConfigError, match="data.classes"):
        load_records(DataConfig(root=f"{one},{two}"), "val")


def test_classifier_trains_then_detects_through_a_sliding_window(tmp_path, capsys):
    """Rung 1 trains on crops cut from the synthetic set; evaluate/infer scan it as rung 2."""
    small = ["model.image_size=64", "model.embedding_dim=32", f"data.cache_dir={tmp_path / 'crops'}",
             "model.window_sizes=[96, 160]", "model.window_image_side=256"]  # stored, used by infer
    code = run_cli(train.main, ["--config", "classifier.yaml", f"out_dir={tmp_path}", "name=clf",
                                "train.epochs=1", *TINY, *small])
    assert code == 0
    state = load_checkpoint(tmp_path / "clf" / "best.pt")
    assert {"accuracy", "auc"} <= set(state["metrics"])
    code = run_cli(evaluate.main, ["--checkpoint", str(tmp_path / "clf" / "best.pt"), "--out", str(tmp_path),
                                   "eval.max_images=2", "model.window_sizes=[96, 160]", "model.window_image_side=256"])
    assert code == 0 and "face" in capsys.readouterr().out
    from facedet.data.synthetic import make_demo_image

    make_demo_image(tmp_path / "demo.jpg", seed=1)
    out = tmp_path / "det.json"
    assert run_cli(infer.main, [str(tmp_path / "demo.jpg"), "--checkpoint", str(tmp_path / "clf" / "best.pt"),
                                "--json", str(out), "--no-save", "--min-score", "0.0"]) == 0
    assert all(box[5] == 0 for box in json.loads(out.read_text())[str(tmp_path / "demo.jpg")])


def test_evaluate_refuses_an_override_that_changes_the_architecture(trained, capsys):
    code = run_cli(evaluate.main, ["--checkpoint", str(trained / "best.pt"), "model.width=16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "do not fit" in err and "yolo_face_tiny" in err and "\n" not in err


def test_data_warnings_are_one_line_and_infer_makes_no_empty_folder(tmp_path, trained):
    root = _yolo_set(tmp_path / "set", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.0 0.2\n")  # the second box has no width
    env = {**os.environ, "FACEDET_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "facedet.train", "--config", "quickstart.yaml", f"data.root={root}",
           f"out_dir={tmp_path}", "train.epochs=1", *TINY, "model.width=8"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1000:]
    lines = [line for line in proc.stderr.splitlines() if "zero-area" in line]
    assert lines and all(line.startswith("warning: ") for line in lines), proc.stderr[-1000:]
    assert "warnings.warn" not in proc.stderr  # no source line under the message
    (tmp_path / "bad.jpg").write_text("not an image")
    code = run_cli(infer.main, [str(tmp_path / "bad.jpg"), "--checkpoint", str(trained / "best.pt"),
                                "--save-dir", str(tmp_path / "ann")])
    assert code == 1 and not (tmp_path / "ann").exists()


def test_infer_says_which_checkpoint_and_threshold_it_uses(tmp_path, capsys):
    from facedet.checkpoint import SHIPPED_CHECKPOINT, load
    from facedet.data.synthetic import make_demo_image

    make_demo_image(tmp_path / "demo.jpg", seed=1)
    assert run_cli(infer.main, [str(tmp_path / "demo.jpg"), "--no-save", "--device", "cpu"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    shipped = load(None, "cpu")
    assert str(SHIPPED_CHECKPOINT) in first and f"min score {shipped.min_score:g}" in first and "calibrated" in first
    assert run_cli(infer.main, [str(tmp_path / "demo.jpg"), "--no-save", "--min-score", "0.7", "--device", "cpu"]) == 0
    assert "min score 0.7 (from --min-score)" in capsys.readouterr().out


def test_infer_twice_on_a_folder_skips_its_own_annotated_images(tmp_path, capsys):
    from facedet.data.synthetic import make_demo_image

    make_demo_image(tmp_path / "a.jpg", seed=1)
    args = [str(tmp_path), "--save-dir", str(tmp_path / "detections"), "--device", "cpu"]
    assert run_cli(infer.main, args) == 0
    assert run_cli(infer.main, args) == 0
    assert sorted(p.name for p in (tmp_path / "detections").iterdir()) == ["a_det.jpg"]
    assert "a_det" not in capsys.readouterr().out.replace("a_det.jpg", "")


def test_infer_json_to_standard_output_and_through_symlinks(tmp_path, capsys):
    from facedet.data.synthetic import make_demo_image

    make_demo_image(tmp_path / "a.jpg", seed=2)
    assert run_cli(infer.main, [str(tmp_path / "a.jpg"), "--no-save", "--json", "-", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)) == [str(tmp_path / "a.jpg")]  # stdout holds the JSON only
    assert "checkpoint" in captured.err and "detections" in captured.err
    target = tmp_path / "real.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    assert run_cli(infer.main, [str(tmp_path / "a.jpg"), "--no-save", "--json", str(tmp_path / "link.json")]) == 0
    assert (tmp_path / "link.json").is_symlink()  # written through, not replaced
    assert list(json.loads(target.read_text())) == [str(tmp_path / "a.jpg")]


def test_infer_size_and_scales_are_checked(tmp_path, capsys):
    from facedet.data.synthetic import make_demo_image

    make_demo_image(tmp_path / "a.jpg", seed=2)
    for bad in (["--size", "big"], ["--size", "8"], ["--scales", "0.5,x"], ["--scales", "0,1"]):
        with pytest.raises(SystemExit):
            infer.parse_args([str(tmp_path / "a.jpg"), *bad])
        assert bad[1] in capsys.readouterr().err
    assert run_cli(infer.main, [str(tmp_path / "a.jpg"), "--no-save", "--size", "native", "--scales", "0.5,1,2",
                                "--json", str(tmp_path / "o.json")]) == 0
    assert str(tmp_path / "a.jpg") in json.loads((tmp_path / "o.json").read_text())
