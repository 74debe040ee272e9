"""Your own objects (issue 29): one config for any labelled folder, and what a run says about the data.

Every set here is a handful of tiny PIL images with LabelImg-style VOC XML written by the test.
"""
from pathlib import Path

import pytest
from PIL import Image

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
