"""Users' own data as annotation tools export it: LabelImg, CVAT, Label Studio, Roboflow, ultralytics.

Every set here is a handful of tiny images made with PIL and labels written by the test.
"""
import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from facedet import train
from facedet.cli import run_cli
from facedet.config import Config, DataConfig, load_config
from facedet.data import loaders
from facedet.data.layouts import detect_format, list_splits, read_data_yaml
from facedet.data.loaders import build_datasets, load_records
from facedet.data.readers import read_dataset
from facedet.data.record import Record
from facedet.data.splits import hold_out, match_split
from facedet.errors import ConfigError, DataError


def image(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = "PNG" if path.suffix.lower() == ".png" else "JPEG"  # PIL picks by suffix, but not for .JPG / .PNG
    Image.new("RGB", (width, height), (120, 90, 60)).save(path, format=kind)
    return path


def voc_xml(path: Path, filename: str, objects: list[tuple[str, tuple[int, int, int, int]]]) -> Path:
    """A LabelImg-style annotation: <filename>, <size>, one <object> per (name, (xmin, ymin, xmax, ymax))."""
    body = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2) in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>{path.parent.name}</folder><filename>{filename}</filename>"
                    f"<size><width>64</width><height>48</height><depth>3</depth></size>{body}</annotation>")
    return path


def labelimg(root: Path, splits: dict[str, int], names: dict[str, str] | None = None) -> Path:
    """LabelImg's folders: <split>/IMG_k.JPG beside <split>/IMG_k.xml, k numbered across splits.

    Image k has k % 3 + 1 boxes; names maps a split to the class its boxes carry (default "face").
    """
    k = 0
    for split, count in splits.items():
        for _ in range(count):
            stem = f"IMG_{k}"
            image(root / split / f"{stem}.JPG")
            boxes = [(2 + 10 * j, 3, 10 + 10 * j, 20) for j in range(k % 3 + 1)]
            label = (names or {}).get(split, "face")
            voc_xml(root / split / f"{stem}.xml", f"{stem}.JPG", [(label, box) for box in boxes])
            k += 1
    return root


@pytest.fixture(autouse=True)
def fresh_loader_caches():
    """load_records caches what it read; each test writes new files under new paths, but clear anyway."""
    loaders._read.cache_clear()
    loaders._held_out.cache_clear()
    yield


# --------------------------------------------------------------------------- VOC XML beside the images


def test_labelimg_split_folders_are_read(tmp_path):
    """The user's report: train/IMG_1.JPG + train/IMG_1.xml, test/ the same, was 'cannot tell the format'."""
    root = labelimg(tmp_path / "faces", {"train": 4, "test": 2})
    assert detect_format(root) == "voc"
    assert list_splits(root) == ["test", "train"]
    records, names = read_dataset(root, "train")
    assert names == ["face"]
    assert [r.image_path.name for r in records] == ["IMG_0.JPG", "IMG_1.JPG", "IMG_2.JPG", "IMG_3.JPG"]
    assert [len(r.boxes) for r in records] == [1, 2, 3, 1]
    assert records[1].boxes.tolist() == [[2, 3, 10, 20], [12, 3, 20, 20]]
    assert (records[0].width, records[0].height) == (64, 48)
    test, _ = read_dataset(root, "test", fmt="voc")  # data.format=voc was "no Annotations/ folder"
    assert [r.image_path.name for r in test] == ["IMG_4.JPG", "IMG_5.JPG"]


def test_voc_beside_images_without_split_folders(tmp_path):
    root = labelimg(tmp_path, {"photos": 3}) / "photos"  # one folder: IMG_k.JPG + IMG_k.xml
    image(root / "empty.jpeg")  # LabelImg writes no xml for a photo without faces
    assert detect_format(root) == "voc" and list_splits(root) == []
    records, names = read_dataset(root, None)
    assert names == ["face"]
    assert sorted((r.image_path.name, len(r.boxes)) for r in records) == [
        ("IMG_0.JPG", 1), ("IMG_1.JPG", 2), ("IMG_2.JPG", 3), ("empty.jpeg", 0)]
    with pytest.raises(DataError, match="no 'train' split .*its images are not divided into splits"):
        read_dataset(root, "train")


def test_voc_xml_whose_image_is_gone_is_counted(tmp_path):
    root = labelimg(tmp_path, {"train": 2, "valid": 1})
    voc_xml(root / "train" / "lost.xml", "lost.jpg", [("face", (1, 1, 9, 9))])
    with pytest.warns(UserWarning, match=r"left out 1 annotation file without an image beside \(first: .*lost.xml\)"):
        records, _ = read_dataset(root, "train")
    assert len(records) == 2


def test_class_names_are_every_split_sorted_the_same_each_run(tmp_path):
    """Names come from the .xml of all splits, sorted: train and test agree on the ids."""
    root = labelimg(tmp_path, {"train": 2, "test": 2}, names={"train": "with_mask", "test": "face"})
    train_records, train_names = read_dataset(root, "train")
    test_records, test_names = read_dataset(root, "test")
    assert train_names == test_names == ["face", "with_mask"]
    assert all(r.labels.eq(1).all() for r in train_records) and all(r.labels.eq(0).all() for r in test_records)


def test_roboflow_voc_valid_folder_is_the_val_split(tmp_path, capsys):
    root = labelimg(tmp_path, {"train": 3, "valid": 2, "test": 1})
    records, _ = load_records(DataConfig(root=str(root)), "val")
    assert [r.image_path.parent.name for r in records] == ["valid", "valid"]
    assert "holding out" not in capsys.readouterr().err


def test_voc_devkit_with_upper_case_image_suffix(tmp_path):
    voc_xml(tmp_path / "Annotations" / "a.xml", "a.jpg", [("face", (1, 2, 30, 40))])
    image(tmp_path / "JPEGImages" / "a.JPG")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (records, names) = read_dataset(tmp_path, "train")
    assert records[0].image_path.name == "a.JPG" and records[0].boxes.tolist() == [[1, 2, 30, 40]]


def test_cvat_voc_export_with_its_default_subset_is_one_unsplit_set(tmp_path, capsys):
    """CVAT's "Pascal VOC" export: Annotations/, JPEGImages/ and ImageSets/Main/default.txt."""
    for k in range(4):
        voc_xml(tmp_path / "Annotations" / f"frame_{k}.xml", f"frame_{k}.PNG", [("face", (1, 2, 30, 40))])
        image(tmp_path / "JPEGImages" / f"frame_{k}.PNG")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "default.txt").write_text("".join(f"frame_{k}\n" for k in range(4)))
    assert detect_format(tmp_path) == "voc" and list_splits(tmp_path) == []
    train_records, names = load_records(DataConfig(root=str(tmp_path)), "train")
    val_records, _ = load_records(DataConfig(root=str(tmp_path)), "val")
    assert (len(train_records), len(val_records), names) == (3, 1, ["face"])
    assert "holding out 1 of 4 images" in capsys.readouterr().err


# --------------------------------------------------------------------------- holding out validation images


def test_no_val_split_holds_out_a_fixed_disjoint_share(tmp_path, capsys):
    root = labelimg(tmp_path / "faces", {"train": 10, "test": 3})
    cfg = DataConfig(root=str(root))
    train_records, names = load_records(cfg, "train")
    val_records, val_names = load_records(cfg, "val")
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"no validation split in {root}: holding out 1 of 10 images (data.val_fraction=0.1)"]
    train_paths = {r.image_path for r in train_records}
    val_paths = {r.image_path for r in val_records}
    assert len(train_paths) == 9 and len(val_paths) == 1 and not train_paths & val_paths
    assert train_paths | val_paths == {r.image_path for r in read_dataset(root, "train")[0]}
    assert names == val_names == ["face"]

    loaders._read.cache_clear()
    loaders._held_out.cache_clear()  # as a new run would: the same images again
    assert {r.image_path for r in load_records(cfg, "val")[0]} == val_paths
    more, _ = load_records(DataConfig(root=str(root), val_fraction=0.3), "val")
    assert len(more) == 3 and "holding out 3 of 10 images (data.val_fraction=0.3)" in capsys.readouterr().err
    test, _ = load_records(cfg, "test")  # a split that is there is read as it is
    assert len(test) == 3


def test_build_datasets_trains_and_validates_on_a_folder_without_splits(tmp_path):
    root = labelimg(tmp_path, {"photos": 8}) / "photos"
    cfg = Config()
    cfg.data.root, cfg.model.num_classes = str(root), 1
    train_set, val_set, names = build_datasets(cfg, mean=[0.5] * 3, std=[0.25] * 3)
    assert (len(train_set), len(val_set), names) == (7, 1, ["face"])  # round(0.8) = 1 held out


def test_hold_out_depends_on_file_names_only():
    records = [Record(Path(f"/data/set/img_{i:03d}.jpg"), 10, 10) for i in range(50)]
    train_part, val_part = hold_out(records, Path("/data/set"), 0.2)
    assert len(val_part) == 10 and len(train_part) == 40
    assert {r.image_path for r in train_part}.isdisjoint({r.image_path for r in val_part})
    assert sorted(train_part + val_part, key=lambda r: r.image_path.name) == records
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert {r.image_path for r in hold_out(shuffled, Path("/data/set"), 0.2)[1]} == {r.image_path for r in val_part}
    moved = [Record(Path("/elsewhere") / r.image_path.name, 10, 10) for r in records]  # the folder moved
    moved_val = hold_out(moved, Path("/elsewhere"), 0.2)[1]
    assert [r.image_path.name for r in moved_val] == [r.image_path.name for r in val_part]
    assert len(hold_out(records[:2], Path("/data/set"), 0.01)[1]) == 1  # never an empty part
    with pytest.raises(DataError, match="1 image.*too few to hold out"):
        hold_out(records[:1], Path("/data/set"), 0.1)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", ".nan"])
def test_val_fraction_outside_0_1_is_refused(value):
    with pytest.raises(ConfigError, match=r"'data.val_fraction' is .*; expected a fraction between 0 and 1"):
        load_config(None, [f"data.val_fraction={value}"])
    assert load_config(None, ["data.val_fraction=0.25"]).data.val_fraction == 0.25


def test_split_names_map_to_their_usual_spellings():
    assert match_split("val", ["train", "valid", "test"]) == "valid"
    assert match_split("val", ["Train", "Val"]) == "Val"
    assert match_split("train", ["training", "validation"]) == "training"
    assert match_split("val", ["train", "test"]) is None
    assert match_split("2007", ["2007", "2012"]) == "2007"


# --------------------------------------------------------------------------- YOLO: Roboflow and ultralytics


def yolo_split(root: Path, split: str, stems: list[str], suffix: str = ".jpg") -> None:
    for k, stem in enumerate(stems):
        image(root / split / "images" / f"{stem}{suffix}")
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        (root / split / "labels" / f"{stem}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.5\n")


def test_roboflow_yolo_with_its_data_yaml(tmp_path):
    """Roboflow writes train: ../train/images next to train/ (ultralytics drops the ../ too)."""
    yolo_split(tmp_path, "train", ["a", "b", "c"], ".JPG")
    yolo_split(tmp_path, "valid", ["d"], ".PNG")
    yolo_split(tmp_path, "test", ["e"], ".JPEG")
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                       "nc: 2\nnames: ['mask', 'face']\nroboflow:\n  workspace: w\n")
    records, names = read_dataset(tmp_path, "val")
    assert names == ["mask", "face"]  # the order data.yaml defines
    assert [r.image_path.name for r in records] == ["d.PNG"]
    assert records[0].boxes.tolist() == [[24, 12, 40, 36]]
    records, _ = read_dataset(tmp_path, "train")
    assert [r.image_path.name for r in records] == ["a.JPG", "b.JPG", "c.JPG"]
    assert [r.labels.tolist() for r in records] == [[0], [1], [0]]
    assert len(read_dataset(tmp_path, "test")[0]) == 1


def test_roboflow_yolo_folders_without_data_yaml(tmp_path):
    yolo_split(tmp_path, "train", ["a", "b"])
    yolo_split(tmp_path, "valid", ["c"])
    assert detect_format(tmp_path) == "yolo" and list_splits(tmp_path) == ["train", "valid"]
    records, names = read_dataset(tmp_path, "val")
    assert [r.image_path.name for r in records] == ["c.jpg"] and names == ["0"]


def test_ultralytics_yaml_path_key_absolute_paths_and_dict_names(tmp_path):
    data = tmp_path / "datasets" / "faces"
    yolo_split(data, "train", ["a", "b"])
    yolo_split(data, "val", ["c"])
    configs = tmp_path / "configs"
    configs.mkdir()
    relative = configs / "relative.yaml"  # `path:` relative to the yaml's folder, splits relative to `path:`
    relative.write_text("path: ../datasets/faces\ntrain: train/images\nval: val/images\nnames:\n  0: face\n  1: mask\n")
    records, names = read_dataset(relative, "train")
    assert [r.image_path.name for r in records] == ["a.jpg", "b.jpg"] and names == ["face", "mask"]
    absolute = configs / "absolute.yaml"
    absolute.write_text(f"train: {data / 'train/images'}\nval: {data / 'val/images'}\n"
                        "names: {'0': face, '1': mask}\n")
    records, names = read_dataset(absolute, "val")
    assert [r.image_path.name for r in records] == ["c.jpg"] and names == ["face", "mask"]


def test_data_yaml_written_on_another_machine_falls_back_to_its_own_folder(tmp_path):
    yolo_split(tmp_path, "train", ["a"])
    yolo_split(tmp_path, "valid", ["b"])
    (tmp_path / "data.yaml").write_text("path: /content/datasets/faces-1\ntrain: train/images\n"
                                       "val: /content/datasets/faces-1/valid/images\nnames: [face]\n")
    data = read_data_yaml(tmp_path / "data.yaml")
    assert data.splits == {"train": [tmp_path / "train/images"], "val": [tmp_path / "valid/images"]}
    assert [r.image_path.name for r in read_dataset(tmp_path, "val")[0]] == ["b.jpg"]


def test_label_studio_yolo_export_without_splits_uses_classes_txt(tmp_path, capsys):
    for k in range(5):
        image(tmp_path / "images" / f"p{k}.jpg")
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"p{k}.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (tmp_path / "classes.txt").write_text("mask\nface\n")
    (tmp_path / "notes.json").write_text("{}")
    assert detect_format(tmp_path) == "yolo" and list_splits(tmp_path) == []
    records, names = read_dataset(tmp_path, None)
    assert names == ["mask", "face"] and len(records) == 5
    val, _ = load_records(DataConfig(root=str(tmp_path)), "val")
    assert len(val) == 1 and "holding out 1 of 5 images" in capsys.readouterr().err


# --------------------------------------------------------------------------- COCO: Roboflow, CVAT, Label Studio


def coco_json(path: Path, files: list[str], categories: list[dict], category_id: int) -> Path:
    """One box [4, 6, 20, 10] (x, y, w, h) of `category_id` on each image."""
    content = {
        "images": [{"id": i + 1, "file_name": name, "width": 64, "height": 48} for i, name in enumerate(files)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": category_id, "bbox": [4, 6, 20, 10],
                         "area": 200, "iscrowd": 0} for i in range(len(files))],
        "categories": categories,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


ROBOFLOW_CATEGORIES = [{"id": 0, "name": "faces-abc", "supercategory": "none"},
                       {"id": 1, "name": "face", "supercategory": "faces-abc"},
                       {"id": 2, "name": "mask", "supercategory": "faces-abc"}]


def test_roboflow_coco_split_folders(tmp_path):
    for split, files in {"train": ["a.jpg", "b.JPG"], "valid": ["c.jpg"], "test": ["d.jpg"]}.items():
        for name in files:
            image(tmp_path / split / name)
        coco_json(tmp_path / split / "_annotations.coco.json", files, ROBOFLOW_CATEGORIES, category_id=2)
    assert detect_format(tmp_path) == "coco" and list_splits(tmp_path) == ["test", "train", "valid"]
    records, names = read_dataset(tmp_path, "val")
    assert names == ["face", "mask"]  # Roboflow's project category "faces-abc" is no class
    assert [r.image_path.name for r in records] == ["c.jpg"]
    assert records[0].boxes.tolist() == [[4, 6, 24, 16]] and records[0].labels.tolist() == [1]
    assert [r.image_path.name for r in read_dataset(tmp_path, "train")[0]] == ["a.jpg", "b.JPG"]


def test_cvat_coco_export_with_sub_folders_and_no_splits(tmp_path, capsys):
    files = [f"day{k % 2}/IMG_{k}.JPG" for k in range(6)]
    for name in files:
        image(tmp_path / "images" / name)
    categories = [{"id": 3, "name": "mask", "supercategory": ""}, {"id": 1, "name": "face", "supercategory": ""}]
    coco_json(tmp_path / "annotations" / "instances_default.json", files, categories, category_id=3)
    assert detect_format(tmp_path) == "coco" and list_splits(tmp_path) == []
    records, names = read_dataset(tmp_path, None)
    assert names == ["face", "mask"]  # COCO category id order: 1, 3
    assert [r.image_path.relative_to(tmp_path).as_posix() for r in records] == [f"images/{n}" for n in files]
    assert all(r.labels.tolist() == [1] for r in records)
    train_records, _ = load_records(DataConfig(root=str(tmp_path)), "train")
    val_records, _ = load_records(DataConfig(root=str(tmp_path)), "val")
    assert (len(train_records), len(val_records)) == (5, 1)
    assert "no validation split in" in capsys.readouterr().err


def test_label_studio_coco_result_json(tmp_path):
    files = ["images/0a1b-photo.png", "images/2c3d-photo.PNG"]
    for name in files:
        image(tmp_path / name)
    coco_json(tmp_path / "result.json", files, [{"id": 0, "name": "face"}], category_id=0)
    assert detect_format(tmp_path) == "coco"
    records, names = read_dataset(tmp_path, None)
    assert names == ["face"] and [r.image_path.name for r in records] == ["0a1b-photo.png", "2c3d-photo.PNG"]


# --------------------------------------------------------------------------- when nothing fits


def test_unknown_layout_names_the_config_key_and_the_layouts(tmp_path):
    image(tmp_path / "only_a_photo.jpg")
    with pytest.raises(DataError) as error:
        detect_format(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "fmt=" not in message
    assert "set data.format= one of yolo, voc, coco, wider, fddb" in message
    for layout in ("data.yaml", "Annotations/", ".xml beside the images", "_annotations.coco.json", "<split>/images"):
        assert layout in message


def test_unknown_format_is_a_config_error_before_any_file_is_read(tmp_path):
    with pytest.raises(ConfigError, match="unknown data set format 'csv'"):
        load_records(DataConfig(root=str(tmp_path), format="csv"), "train")


def test_data_format_voc_on_a_folder_without_xml_says_what_it_looked_for(tmp_path):
    image(tmp_path / "train" / "a.jpg")
    with pytest.raises(DataError, match=r"no Annotations/ folder in it or in its subfolders, and no \.xml files"):
        read_dataset(tmp_path, "train", fmt="voc")


def test_train_cli_on_a_labelimg_folder(tmp_path, capsys):
    """End to end: `facedet.train data.root=<LabelImg folder>` trains one epoch and validates."""
    root = labelimg(tmp_path / "faces", {"train": 10, "test": 2})
    code = run_cli(train.main, ["--config", "quickstart.yaml", f"data.root={root}", f"out_dir={tmp_path}", "name=l",
                                "train.epochs=1", "train.batch_size=4", "train.device=cpu", "data.num_workers=0",
                                "model.width=8", "model.image_size=56"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"no validation split in {root}: holding out 1 of 10 images" in err
    assert (tmp_path / "l" / "best.pt").exists()
    assert torch.load(tmp_path / "l" / "best.pt", weights_only=True)["class_names"] == ["face"]
