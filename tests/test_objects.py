"""Your own objects (issue 29): one config for any labelled folder, and what a run says about the data.

Every set here is a handful of tiny PIL images with LabelImg-style VOC XML written by the test.
"""
import re
from pathlib import Path

import pytest
from PIL import Image

import facedet

from facedet.config import load_config
from facedet.data import loaders
from facedet.data.loaders import describe_data


def labelled_folder(root: Path, splits: dict[str, list[list[str]]]) -> Path:
    """<split>/IMG_k.jpg beside <split>/IMG_k.xml; splits maps a split to one list of box class names per image."""
    k = 0
    for split, images in splits.items():
        for names in images:
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), (120, 90, 60)).save(root / split / f"IMG_{k}.jpg")
            body = "".join(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{2 + 8 * j}</xmin>"
                           f"<ymin>3</ymin><xmax>{9 + 8 * j}</xmax><ymax>20</ymax></bndbox></object>"
                           for j, name in enumerate(names))
            (root / split / f"IMG_{k}.xml").write_text(
                f"<annotation><filename>IMG_{k}.jpg</filename><size><width>64</width><height>48</height>"
                f"<depth>3</depth></size>{body}</annotation>")
            k += 1
    return root


@pytest.fixture(autouse=True)
def fresh_loader_caches():
    loaders._read.cache_clear()
    loaders._held_out.cache_clear()
    yield


def test_objects_config_takes_classes_and_their_number_from_the_data():
    cfg = load_config("objects.yaml", ["data.root=/anywhere"])
    assert cfg.name == "objects" and cfg.model.name == "retinanet" and cfg.model.backbone == "small"
    assert cfg.model.num_classes == 0 and cfg.data.classes == ""
    assert cfg.data.augment == "ssd"  # no grayscale, no face-shaped crops


def test_the_run_names_classes_boxes_per_class_and_what_it_holds_out(tmp_path):
    root = labelled_folder(tmp_path / "mine", {"train": [["cat"], ["cat", "dog"], ["dog", "dog", "bird"]] * 4})
    cfg = load_config("objects.yaml", [f"data.root={root}"])
    line = describe_data(cfg)
    train, names = loaders.load_records(cfg.data, "train")
    assert names == ["bird", "cat", "dog"]
    counts = {name: sum(int((r.labels == i).sum()) for r in train) for i, name in enumerate(names)}
    assert line.startswith("3 classes (from the data): ")
    assert f"bird {counts['bird']}, cat {counts['cat']}, dog {counts['dog']} boxes in {len(train)} train images" in line
    assert line.endswith("validation: 1 images (held out from training, data.val_fraction=0.1)")  # round(0.1 * 12)


def test_a_folder_with_a_val_split_is_named_as_such(tmp_path):
    root = labelled_folder(tmp_path / "mine", {"train": [["cat"], ["dog"]], "valid": [["dog"]]})
    line = describe_data(load_config("objects.yaml", [f"data.root={root}"]))
    assert line == "2 classes (from the data): cat 1, dog 1 boxes in 2 train images; validation: 1 images (split 'val')"
    face = describe_data(load_config("objects.yaml", [f"data.root={root}", "data.classes=face"]))
    assert face.startswith("1 class (data.classes=face: every box is a face): face 2 boxes")


# --------------------------------------------------------------------------- model.init: a head start


def objects_model(num_classes: int = 3):
    from facedet.models import build_model

    cfg = load_config("objects.yaml", [f"model.num_classes={num_classes}"])
    return cfg, build_model(cfg.model).model


def test_init_from_a_shipped_detector_loads_what_fits_and_says_what_stayed_new():
    import torch

    from facedet.checkpoint import SHIPPED_WEIGHTS
    from facedet.init_weights import init_model

    cfg, model = objects_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    line = init_model(model, "retinanet", cfg.model)
    shipped = torch.load(SHIPPED_WEIGHTS / "retinanet.pt", weights_only=True)["model"]
    after = model.state_dict()
    new = ["cls_subnet.out.weight", "cls_subnet.out.bias", "box_subnet.out.weight", "box_subnet.out.bias"]
    for name, tensor in after.items():
        if name in new:  # 9 anchors x 3 classes here, 3 anchors x 1 class in the face RetinaNet
            assert shipped[name].shape != tensor.shape and torch.equal(tensor, before[name])
        else:
            assert torch.equal(tensor, shipped[name]), name
    assert line.startswith(f"model.init=retinanet ({SHIPPED_WEIGHTS / 'retinanet.pt'}): loaded {len(after) - 4} "
                           f"of {len(after)} tensors (backbone 126/126, fpn 21/21, cls_subnet 20/22, box_subnet 20/22)")
    assert line.endswith("new: " + ", ".join(new))


def test_init_from_a_checkpoint_path(tmp_path):
    import torch

    from facedet.config import to_dict
    from facedet.init_weights import init_model

    cfg, donor = objects_model(num_classes=2)
    torch.save({"model": donor.state_dict(), "config": to_dict(cfg)}, tmp_path / "mine.pt")
    _, model = objects_model(num_classes=2)
    line = init_model(model, str(tmp_path / "mine.pt"), cfg.model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), donor.state_dict().values()))
    assert line.endswith("new: none")


def test_init_that_fits_nothing_names_the_shipped_detectors_that_would():
    from facedet.errors import ConfigError
    from facedet.init_weights import init_model

    cfg, model = objects_model()
    with pytest.raises(ConfigError, match=r"model.init='face_default': none of its \d+ tensors fits this retinanet "
                       r".*shipped detectors that fit: ") as err:
        init_model(model, "face_default", cfg.model)
    named = str(err.value).split("shipped detectors that fit: ")[1].split(", ")
    # the small-backbone rungs share RetinaNet's base; face_default (another width) does not
    assert "retinanet" in named and "centernet" in named and "face_default" not in named
    assert set(named) <= set(facedet.list_detectors())
    with pytest.raises(ConfigError, match="model.init='nope': nope: neither a checkpoint file nor a shipped detector"):
        init_model(model, "nope", cfg.model)


def test_imagenet_init_without_torchvision_is_a_clear_error(monkeypatch):
    import sys

    from facedet.errors import ConfigError
    from facedet.init_weights import init_model

    cfg, model = objects_model()
    with pytest.raises(ConfigError, match="ImageNet weights exist only for model.name=retinanet with "
                       "model.backbone=resnet18 or resnet50 .*backbone small.*model.init=retinanet"):
        init_model(model, "torchvision", cfg.model)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as where it is not installed: import fails
    cfg.model.backbone = "resnet18"
    with pytest.raises(ConfigError, match="model.init='torchvision' needs torchvision, which does not import here "
                       r"\(.*\); pip install torchvision"):
        init_model(model, "torchvision", cfg.model)


# --------------------------------------------------------------------------- the end of training: calibrated


TINY = ["data.num_workers=0", "train.batch_size=4", "train.device=cpu", "model.image_size=64", "train.epochs=1",
        "data.val_fraction=0.25"]


def animals(tmp_path: Path) -> Path:
    return labelled_folder(tmp_path / "animals", {"train": [["cat"], ["cat", "dog"], ["dog", "dog", "bird"]] * 4})


def test_training_ends_with_best_pt_calibrated_and_load_uses_it(tmp_path, capsys, monkeypatch):
    from facedet.checkpoint import load, load_checkpoint
    from facedet.cli import run_cli
    from facedet.train import main

    root = animals(tmp_path)
    code = run_cli(main, ["--config", "objects.yaml", f"data.root={root}", f"out_dir={tmp_path}", *TINY,
                          "model.init=retinanet"])
    out = capsys.readouterr().err  # the log lines; stdout keeps the results
    assert code == 0
    best = tmp_path / "objects" / "best.pt"
    point = load_checkpoint(best)["operating_point"]
    assert point["rule"] == "best F1 at IoU 0.5 on animals val together" and point["per_set"]["animals"]["images"] == 3
    assert load(best, "cpu").min_score == point["min_score"]
    assert f"calibrated {best}: min score {point['min_score']:.3f} (best F1" in out
    assert "model.init=retinanet (" in out
    assert re.search(r"3 classes \(from the data\): bird \d, cat \d, dog \d+ boxes in 9 train images; validation: 3 images "
                     r"\(held out from training, data.val_fraction=0.25\)", out)
    # the evaluation's PR curve names the split it was scored on
    import facedet.evaluate

    titles = []
    monkeypatch.setattr(facedet.evaluate, "plot_pr_curves", lambda curves, path, title: titles.append(title))
    assert run_cli(facedet.evaluate.main, ["--checkpoint", str(best), "--split", "train", "--out", str(tmp_path)]) == 0
    assert titles == [f"retinanet on {root}, train split"]
    # calibrate on its own takes the classes from the checkpoint: no --classes needed for these six-class runs
    from facedet import calibrate

    assert run_cli(calibrate.main, ["--checkpoint", str(best), "--data", str(root), "--workers", "0",
                                    "--out", str(tmp_path / "again.pt")]) == 0
    assert load_checkpoint(tmp_path / "again.pt")["operating_point"]["min_score"] == pytest.approx(point["min_score"])
    # on other data its error names a fix that works
    other = labelled_folder(tmp_path / "fruit", {"train": [["apple"], ["pear"]], "val": [["apple"]]})
    assert run_cli(calibrate.main, ["--checkpoint", str(best), "--data", str(other), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint's classes are bird, cat, dog: calibrate on data labelled with them" in err
    assert run_cli(calibrate.main, ["--checkpoint", str(best), "--data", str(other), "--workers", "0",
                                    "--classes", ""]) == 2
    assert ("the data has classes ['apple', 'pear'], the checkpoint ['bird', 'cat', 'dog']; calibrate on data "
            "labelled with its classes, or pass --classes bird,cat,dog") in capsys.readouterr().err


def test_train_calibrate_false_leaves_best_pt_uncalibrated(tmp_path):
    from facedet.checkpoint import load_checkpoint
    from facedet.cli import run_cli
    from facedet.train import main

    root = animals(tmp_path)
    assert run_cli(main, ["--config", "objects.yaml", f"data.root={root}", f"out_dir={tmp_path}", *TINY,
                          "train.calibrate=false"]) == 0
    assert "operating_point" not in load_checkpoint(tmp_path / "objects" / "best.pt")
