"""Messy inputs, one table: every case goes through the data API, `facedet.train`,
`facedet.infer` and `facedet.evaluate` (where it applies).

Each case ends either in correct handling (exit 0, the result checked) or in ONE line
naming the culprit (file, file:line or key) with a non-zero exit, never a traceback,
and never a half-written output: after every run, each file in the output folder must
be complete (JSON parses, checkpoints load, images decode) and no *.tmp is left.

Conventions the table pins down:
  - EXIF orientation: labels refer to the upright picture, as a viewer shows it (what
    `load_image` returns), not to the stored pixels. A YOLO fraction of a phone photo
    stored landscape with orientation 6 is a fraction of the portrait image.
  - YOLO: a missing or empty label file is an image without objects (a background
    image); only a split where NO image has a label file gets a warning (a wrong folder).
  - Pascal VOC: an id listed in ImageSets whose XML is missing is an error (the split
    file promised an annotation); an XML without <object> is an image without objects.
  - data.yaml: unknown keys are ignored (ultralytics files carry download scripts and
    more); wrong types and missing folders are errors naming the key or folder.
  - Image size: Pillow's decompression-bomb guard stays on (see facedet/data/images.py):
    an 8000 x 8000 photo (64 Mpx) loads, a header claiming 200 Mpx is refused.
  - Checkpoints: only zip files written by torch.save, loaded with weights_only=True.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from facedet import evaluate, infer, train
from facedet.checkpoint import load_checkpoint, load_detector
from facedet.cli import run_cli
from facedet.config import load_config
from facedet.data.dataset import DetectionDataset
from facedet.data.images import image_size, load_image
from facedet.data.labels import DataWarning
from facedet.data.readers import read_dataset
from facedet.errors import FacedetError

# A run of about a second: 56 px input (7 x 7 grid of 8 px cells), 8 channels, one batch.
TRAIN = ["--config", "quickstart.yaml", "train.epochs=1", "train.batch_size=8", "train.device=cpu",
         "train.warmup_iters=0", "train.val_every=0", "data.num_workers=0", "model.width=8",
         "model.image_size=56"]
FACE = "0 0.5 0.5 0.5 0.5\n"  # one face in the middle, half the image wide and high


# --------------------------------------------------------------------------- data sets


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def yolo_set(root: Path) -> Path:
    """A valid YOLO set: images/{train,val}/{a,b}.jpg (64 x 48), one face each, data.yaml."""
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / f"images/{split}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), (120, 90, 60)).save(root / f"images/{split}/{name}.jpg")
            write(root / f"labels/{split}/{name}.txt", FACE)
    write(root / "data.yaml", "train: images/train\nval: images/val\nnames: [face]\n")
    return root


def voc_set(root: Path, objects: str) -> Path:
    """A Pascal VOC set: a.jpg with the given <object> XML, b.jpg with one face; train = val."""
    face = "<object><name>face</name><bndbox><xmin>8</xmin><ymin>8</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>"
    for image_id, xml in (("a", objects), ("b", face)):
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (120, 90, 60)).save(root / f"JPEGImages/{image_id}.jpg")
        write(root / f"Annotations/{image_id}.xml", f"<annotation><filename>{image_id}.jpg</filename>{xml}</annotation>")
    for split in ("train", "val"):
        write(root / f"ImageSets/Main/{split}.txt", "a\nb\n")
    return root


def add_image(root: Path, name: str, save: Callable[[Path], None], label: str | None = FACE) -> Path:
    """Put one more image (written by `save`) into images/train, with a label file unless None."""
    path = root / "images/train" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path)
    if label is not None:
        write(root / "labels/train" / Path(name).with_suffix(".txt"), label)
    return path


def set_label(root: Path, text: str | bytes) -> Path:
    return write(root / "labels/train/a.txt", text)


# --------------------------------------------------------------------------- image files


def jpeg_bytes(size=(64, 48)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def truncated_jpeg(path: Path) -> None:
    data = jpeg_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, half the scan data gone


def png_16bit(path: Path) -> None:
    Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21)).save(path)


def palette_png_transparent(path: Path) -> None:
    image = Image.new("P", (64, 48), 1)
    image.putpalette([10, 200, 30] + [200, 100, 50] * 255)
    image.paste(0, (0, 0, 32, 48))  # the left half uses colour 0, declared transparent
    image.save(path, transparency=0)


def cmyk_jpeg(path: Path) -> None:
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path, quality=95)  # magenta + yellow = red


# The upright picture of the EXIF case: 48 wide, 64 tall, a white square at x, y in 4..20.
SQUARE = (4, 4, 20, 20)


def exif_rotated_jpeg(path: Path) -> None:
    upright = Image.new("RGB", (48, 64), (0, 0, 0))
    upright.paste((255, 255, 255), SQUARE)
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to view": the file holds the picture turned back
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)


def exif_label() -> str:
    x1, y1, x2, y2 = SQUARE  # fractions of the UPRIGHT 48 x 64 picture
    return f"0 {(x1 + x2) / 2 / 48} {(y1 + y2) / 2 / 64} {(x2 - x1) / 48} {(y2 - y1) / 64}\n"


@functools.cache
def huge_jpeg_bytes() -> bytes:
    """8000 x 8000 = 64 Mpx: under Pillow's 89 Mpx decompression-bomb threshold. Encoded once."""
    buffer = io.BytesIO()
    Image.new("RGB", (8000, 8000), (120, 90, 60)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def huge_jpeg(path: Path) -> None:
    path.write_bytes(huge_jpeg_bytes())


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims an 8-bit RGB image of the given size (the data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- checks of handled cases


def loads_as(size: tuple[int, int]) -> Callable:
    def check(records, caught, culprit):
        image = load_image(culprit)
        assert image.mode == "RGB" and image.size == size and image_size(culprit) == size

    return check


def palette_check(records, caught, culprit):
    pixels = np.asarray(load_image(culprit))
    assert (pixels[:, :32] == 255).all() and (pixels[:, 32:] == [200, 100, 50]).all()  # transparent -> white


def cmyk_check(records, caught, culprit):
    assert np.abs(np.asarray(load_image(culprit)).astype(int)[24, 32] - [255, 0, 0]).max() < 10


def exif_check(records, caught, culprit):
    """The label, read against the upright picture, must frame the white square."""
    (record,) = [r for r in records if r.image_path == culprit]
    assert (record.width, record.height) == (48, 64)
    assert torch.allclose(record.boxes, torch.tensor([SQUARE], dtype=torch.float32), atol=1e-3)
    dataset = DetectionDataset([record])  # no transform: the full upright image, fractional boxes
    image, target = dataset[0]
    assert image.shape == (3, 64, 48)
    x1, y1, x2, y2 = (target["boxes"][0] * torch.tensor([48, 64, 48, 64])).round().long().tolist()
    inside = image[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
    assert inside.mean() > 0.9  # JPEG blurs the edges, hence the 1 px margin
    outside = image.clone()
    outside[:, y1 - 2 : y2 + 2, x1 - 2 : x2 + 2] = 0
    assert outside.max() < 0.2


def boxes_of(name: str, expected: list[list[float]], warning: str | None = None) -> Callable:
    """The train image `name` keeps exactly these "xyxy" pixel boxes; `warning` in the DataWarning."""

    def check(records, caught, culprit):
        (record,) = [r for r in records if r.image_path.name == name]
        assert torch.allclose(record.boxes, torch.tensor(expected, dtype=torch.float32).reshape(-1, 4), atol=1e-3)
        messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
        if warning is None:
            assert messages == []
        else:
            assert len(messages) == 1 and warning in messages[0], messages

    return check


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad input.

    kind:      what `make` builds: "image" (one more train image), "labels" (a YOLO set
               with a defect), "voc" (a VOC set), "config" (a --config YAML file) or
               "checkpoint" (a file given as a checkpoint).
    make:      (tmp folder, good checkpoint) -> (data root or None, culprit path)
    error:     None when the input must be handled (exit 0); else a regex that the one
               error line must match, naming the culprit.
    check:     for handled cases, (records, warnings, culprit) -> None on the data API result.
    stages:    the stages the case goes through.
    overrides: extra settings for train and evaluate.
    handled_in: stages where the input is fine although others refuse it (resuming needs
               only the weights, not the stored config).
    """

    name: str
    kind: str
    make: Callable[[Path, Path], tuple[Path | None, Path]]
    error: str | None = None
    check: Callable | None = None
    stages: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    handled_in: tuple[str, ...] = ()

    def expected(self, stage: str) -> str | None:
        return None if stage in self.handled_in else self.error

    def applies(self, stage: str) -> bool:
        default = {"image": ("data", "train", "infer", "evaluate"), "labels": ("data", "train", "evaluate"),
                   "voc": ("data", "train", "evaluate"), "config": ("data", "train"),
                   "checkpoint": ("data", "train", "infer", "evaluate")}[self.kind]
        return stage in (self.stages or default)


def image_case(name: str, file: str, save: Callable[[Path], None], error: str | None = None,
               check: Callable | None = None, label: str | None = FACE, **kwargs) -> Case:
    def make(tmp: Path, checkpoint: Path):
        root = yolo_set(tmp / "set")
        return root, add_image(root, file, save, label)

    return Case(name, "image", make, error, check, **kwargs)


def label_case(name: str, text: str | bytes, error: str | None = None, check: Callable | None = None,
               yaml_text: str | None = None, **kwargs) -> Case:
    """The set with labels/train/a.txt replaced by `text` (and data.yaml by `yaml_text`)."""

    def make(tmp: Path, checkpoint: Path):
        root = yolo_set(tmp / "set")
        culprit = set_label(root, text)
        if yaml_text is not None:
            culprit = write(root / "data.yaml", yaml_text)
        return root, culprit

    return Case(name, "labels", make, error, check, **kwargs)


def layout_case(name: str, change: Callable[[Path], Path], error: str | None = None,
                check: Callable | None = None) -> Case:
    """The set after `change(root)`, which returns the culprit."""

    def make(tmp: Path, checkpoint: Path):
        root = yolo_set(tmp / "set")
        return root, change(root)

    return Case(name, "labels", make, error, check)


def voc_case(name: str, objects: str, error: str | None = None, check: Callable | None = None,
             change: Callable[[Path], Path] | None = None) -> Case:
    def make(tmp: Path, checkpoint: Path):
        root = voc_set(tmp / "voc", objects)
        return root, change(root) if change else root / "Annotations/a.xml"

    return Case(name, "voc", make, error, check)


def config_case(name: str, text: str | bytes, error: str) -> Case:
    def make(tmp: Path, checkpoint: Path):
        return yolo_set(tmp / "set"), write(tmp / "bad.yaml", text)

    return Case(name, "config", make, error)


def checkpoint_case(name: str, build: Callable[[Path, Path], None], error: str, **kwargs) -> Case:
    """build(good checkpoint, bad path) writes the bad checkpoint."""

    def make(tmp: Path, checkpoint: Path):
        bad = tmp / "bad.pt"
        build(checkpoint, bad)
        return yolo_set(tmp / "set"), bad

    return Case(name, "checkpoint", make, error, **kwargs)


def edited_checkpoint(edit: Callable[[dict], dict]) -> Callable[[Path, Path], None]:
    return lambda good, bad: torch.save(edit(torch.load(good, weights_only=True)), bad)


def with_model_config(**changes) -> Callable[[dict], dict]:
    def edit(state):
        config = {**state["config"], "model": {**state["config"]["model"], **changes}}
        return {**state, "config": config}

    return edit


def missing_label(root: Path) -> Path:
    (root / "labels/train/a.txt").unlink()
    return root / "images/train/a.jpg"


def no_label_folder(root: Path) -> Path:
    for path in (root / "labels/train").iterdir():
        path.unlink()
    (root / "labels/train").rmdir()
    return root / "labels/train"


def huge_class_without_names(root: Path) -> Path:
    (root / "data.yaml").unlink()  # without names any class id >= 0 is accepted, up to a limit
    return set_label(root, "1e300 0.5 0.5 0.2 0.2\n")


def missing_folder(root: Path) -> Path:
    write(root / "data.yaml", "train: images/training\nval: images/val\nnames: [face]\n")
    return root / "images/training"


def list_naming_missing_image(root: Path) -> Path:
    write(root / "train.txt", "images/train/a.jpg\nimages/train/gone.jpg\n")
    write(root / "data.yaml", "train: train.txt\nval: images/val\nnames: [face]\n")
    return root / "images/train/gone.jpg"


def missing_xml(root: Path) -> Path:
    (root / "Annotations/a.xml").unlink()
    return root / "Annotations/a.xml"


def missing_voc_image(root: Path) -> Path:
    (root / "JPEGImages/a.jpg").unlink()
    return root / "JPEGImages/a.jpg"


BOX = "<bndbox><xmin>8</xmin><ymin>8</ymin><xmax>40</xmax><ymax>40</ymax></bndbox>"
GOOD_A = [[16.0, 12.0, 48.0, 36.0]]  # FACE on a 64 x 48 image
NOT_IMAGE = "not a readable image"

CASES = [
    # ---- image files
    image_case("truncated JPEG", "c.jpg", truncated_jpeg, rf"c\.jpg: {NOT_IMAGE} \(image file is truncated"),
    image_case("truncated JPEG, 2 loader workers", "c.jpg", truncated_jpeg, rf"c\.jpg: {NOT_IMAGE}",
               stages=("train", "evaluate"), overrides=("data.num_workers=2",)),
    image_case("zero-byte file", "c.jpg", lambda p: p.write_bytes(b""), rf"c\.jpg: {NOT_IMAGE}"),
    image_case("text file named .jpg", "c.jpg", lambda p: p.write_text("hello\n"), rf"c\.jpg: {NOT_IMAGE}"),
    image_case("PNG header claiming 200 Mpx", "c.png", lambda p: p.write_bytes(png_header_claiming(20000, 10000)),
               rf"c\.png: {NOT_IMAGE} \(Image size \(200000000 pixels\) exceeds limit"),
    image_case("16-bit PNG", "c.png", png_16bit, check=loads_as((64, 48))),
    image_case("palette PNG with transparency", "c.png", palette_png_transparent, check=palette_check),
    image_case("CMYK JPEG", "c.jpg", cmyk_jpeg, check=cmyk_check),
    image_case("EXIF-rotated photo", "c.jpg", exif_rotated_jpeg, check=exif_check, label=exif_label()),
    image_case("1x1 image", "c.png", lambda p: Image.new("RGB", (1, 1), (9, 9, 9)).save(p), check=loads_as((1, 1))),
    image_case("8000x8000 image", "c.jpg", huge_jpeg, check=loads_as((8000, 8000))),
    # ---- YOLO label files (labels/train/a.txt; a.jpg is 64 x 48)
    label_case("too few columns", FACE + "0 0.5 0.5 0.2\n", r"a\.txt:2: expected 'class cx cy w h' with 5 numbers"),
    label_case("too many columns", FACE + "0 0.5 0.5 0.2 0.2 0.9\n", r"a\.txt:2: expected 'class cx cy w h'"),
    label_case("non-numeric value", FACE + "0 0.5 abc 0.2 0.2\n", r"a\.txt:2: expected .* got '0 0\.5 abc 0\.2 0\.2'"),
    label_case("infinite value", FACE + "0 0.5 inf 0.2 0.2\n", r"a\.txt:2: non-finite number"),
    label_case("negative width", FACE + "0 0.5 0.5 -0.2 0.2\n", check=boxes_of("a.jpg", GOOD_A, "dropped 1 zero-area box")),
    label_case("zero-area box", FACE + "0 0.5 0.5 0 0.2\n", check=boxes_of("a.jpg", GOOD_A, "dropped 1 zero-area box")),
    label_case("box entirely outside", FACE + "0 1.5 0.5 0.2 0.2\n",
               check=boxes_of("a.jpg", GOOD_A, "dropped 1 zero-area box")),
    label_case("box far past the edges", "0 0.5 0.5 3 3\n",
               check=boxes_of("a.jpg", [[0, 0, 64, 48]], "clipped 1 box reaching more than 2 px outside")),
    label_case("class id above names", FACE + "1 0.5 0.5 0.2 0.2\n", r"a\.txt:2: class id '1' is not in 0\.\.0"),
    label_case("negative class id", "-1 0.5 0.5 0.2 0.2\n", r"a\.txt:1: class id '-1' is not in 0\.\.0"),
    label_case("fractional class id", "0.5 0.5 0.5 0.2 0.2\n", r"a\.txt:1: class id '0\.5' is not in 0\.\.0"),
    layout_case("class id too large for any data set", huge_class_without_names, r"a\.txt:1: class id '1e300' is not in"),
    label_case("empty label file", "", check=boxes_of("a.jpg", [])),
    label_case("blank lines and a byte-order mark", "\ufeff\n\n" + FACE + "\n", check=boxes_of("a.jpg", GOOD_A)),
    label_case("label file not text", b"\xff\xfe\x00\x81garbage", r"a\.txt: cannot read label file"),
    layout_case("missing label file", missing_label, check=boxes_of("a.jpg", [])),
    layout_case("no label file in the whole split", no_label_folder,
                check=boxes_of("a.jpg", [], "no label files in")),
    # ---- data.yaml
    label_case("data.yaml unknown keys", FACE, yaml_text="train: images/train\nval: images/val\nnames: [face]\n"
               "download: https://example.com/x.zip\nroboflow: {workspace: w}\n", check=boxes_of("a.jpg", GOOD_A)),
    label_case("data.yaml nc not a number", FACE, r"data\.yaml: 'nc' must be an integer, got 'abc'",
               yaml_text="train: images/train\nval: images/val\nnc: abc\n"),
    label_case("data.yaml path a list", FACE, r"data\.yaml: 'path' must be a folder, got \['a', 'b'\]",
               yaml_text="path: [a, b]\ntrain: images/train\nval: images/val\nnames: [face]\n"),
    label_case("data.yaml train is a mapping", FACE, r"data\.yaml: 'train' must be a folder",
               yaml_text="train: {a: 1}\nval: images/val\nnames: [face]\n"),
    label_case("data.yaml names not a list", FACE, r"data\.yaml: names must be a list",
               yaml_text="train: images/train\nval: images/val\nnames: 5\n"),
    label_case("data.yaml not a mapping", FACE, r"data\.yaml: expected a mapping", yaml_text="- a\n- b\n"),
    label_case("data.yaml not YAML", FACE, r"data\.yaml: cannot read data yaml", yaml_text="train: [a\nnames: b\n"),
    layout_case("data.yaml names a missing folder", missing_folder, r"images/training: no such image folder"),
    layout_case("image list names a missing image", list_naming_missing_image,
                rf"gone\.jpg: {NOT_IMAGE} \(No such file"),
    # ---- Pascal VOC (Annotations/a.xml)
    voc_case("VOC object without <name>", f"<object>{BOX}</object>", r"a\.xml: object 0 has no <name>"),
    voc_case("VOC object without <bndbox>", "<object><name>face</name></object>",
             r"a\.xml: object 0 \('face'\) needs numeric <bndbox>"),
    voc_case("VOC <bndbox> without <xmax>", "<object><name>face</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
             "<ymax>9</ymax></bndbox></object>", r"a\.xml: object 0 \('face'\) needs numeric <bndbox>"),
    voc_case("VOC file not XML", "<object><name>face", r"a\.xml: not a readable VOC annotation"),
    voc_case("VOC without objects", "", check=boxes_of("a.jpg", [])),
    voc_case("VOC XML missing for a listed id", "", r"a\.xml: not a readable VOC annotation", change=missing_xml),
    voc_case("VOC image missing", "", rf"a\.jpg: {NOT_IMAGE} \(No such file", change=missing_voc_image),
    # ---- config YAML given as --config
    config_case("config unknown key", "train:\n  epoch: 3\n", r"bad\.yaml: unknown key 'train\.epoch' \(did you mean 'epochs'\?\)"),
    config_case("config wrong type", "train:\n  epochs: three\n", r"bad\.yaml: 'train\.epochs' must be int, got 'three'"),
    config_case("config section not a mapping", "train: 3\n", r"bad\.yaml: 'train' must be a section"),
    config_case("config not YAML", "train: [1\n", r"bad\.yaml: not valid YAML"),
    config_case("config not text", b"\xff\xfe\x00\x81\x00", r"bad\.yaml: not a UTF-8 text file"),
    # ---- files given as a checkpoint (train: as train.resume)
    checkpoint_case("bare state_dict", lambda good, bad: torch.save(torch.load(good, weights_only=True)["model"], bad),
                    r"bad\.pt: not a facedet checkpoint \(expected keys 'model' and 'config'\)"),
    checkpoint_case("text file as checkpoint", lambda good, bad: bad.write_text("hello\n"),
                    r"bad\.pt: not a readable facedet checkpoint \(not a torch\.save archive"),
    checkpoint_case("zero-byte checkpoint", lambda good, bad: bad.write_bytes(b""),
                    r"bad\.pt: not a readable facedet checkpoint \(the file is empty\)"),
    checkpoint_case("image as checkpoint", lambda good, bad: bad.write_bytes(jpeg_bytes()),
                    r"bad\.pt: not a readable facedet checkpoint \(not a torch\.save archive"),
    checkpoint_case("truncated checkpoint", lambda good, bad: bad.write_bytes(good.read_bytes()[:5000]),
                    r"bad\.pt: not a readable facedet checkpoint \(not a torch\.save archive, or cut short\)"),
    checkpoint_case("checkpoint config not a mapping", edited_checkpoint(lambda s: {**s, "config": 5}),
                    r"bad\.pt: not a facedet checkpoint \('config' is int, expected a mapping\)"),
    checkpoint_case("checkpoint weights not a mapping", edited_checkpoint(lambda s: {**s, "model": [1, 2]}),
                    r"bad\.pt: not a facedet checkpoint \('model' is list, expected a mapping"),
    checkpoint_case("checkpoint config from a newer facedet", edited_checkpoint(lambda s: {**s, "config": {**s["config"], "future": 1}}),
                    r"bad\.pt: stored config is not valid for this facedet .*unknown key 'future'",
                    handled_in=("train",)),
    checkpoint_case("checkpoint of an unknown model", edited_checkpoint(with_model_config(name="resnet")),
                    r"bad\.pt: (its config builds no model \(model\.name 'resnet' is not a facedet model"
                    r"|checkpoint is of model 'resnet', expected 'yolo_face_tiny')"),
    checkpoint_case("checkpoint of another rung", edited_checkpoint(with_model_config(name="classifier")),
                    r"bad\.pt: (checkpoint is of model 'classifier', expected 'yolo_face_tiny'|weights do not fit model 'classifier')"),
    checkpoint_case("weights of another width", edited_checkpoint(with_model_config(width=16)),
                    r"bad\.pt: weights do not fit model 'yolo_face_tiny'", handled_in=("train",)),
    checkpoint_case("class names not a list", edited_checkpoint(lambda s: {**s, "class_names": 5}),
                    r"bad\.pt: 'class_names' is 5, expected a list of names", stages=("data", "infer", "evaluate")),
]


def cases(stage: str) -> list:
    return [pytest.param(case, id=case.name) for case in CASES if case.applies(stage)]


# --------------------------------------------------------------------------- shared pieces


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint from `facedet.train` on the valid set: the one infer and evaluate use."""
    tmp = tmp_path_factory.mktemp("good")
    root = yolo_set(tmp / "set")
    assert run_cli(train.main, [*TRAIN, f"data.root={root}", f"out_dir={tmp}", "name=good"]) == 0
    return tmp / "good" / "last.pt"


def run(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a CLI in-process; any exception other than SystemExit escaping run_cli is a traceback."""
    capsys.readouterr()
    try:
        code = run_cli(main, argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    except BaseException as error:  # noqa: BLE001 - that is the failure this suite looks for
        pytest.fail(f"traceback instead of one line: {type(error).__name__}: {error}")
    out, err = capsys.readouterr()
    return code, out, err


def assert_outcome(expected: str | None, code: int, out: str, err: str, prefixes=("error:",)) -> None:
    """Exit 0 without error lines, or exit != 0 with exactly one, matching `expected`."""
    assert "Traceback" not in out + err
    lines = [line.strip() for line in err.splitlines()]
    errors = [line for line in lines if line.startswith(prefixes)]
    if expected is None:
        assert code == 0 and errors == [], err
        return
    assert code != 0, f"exit 0 for a bad input; stdout: {out[-500:]}"
    assert len(errors) == 1, err
    assert re.search(expected, errors[0]), f"{errors[0]!r} does not match {expected!r}"


def assert_complete_outputs(folder: Path) -> None:
    """Nothing half-written under `folder`: every output file reads back whole."""
    if not folder.exists():
        return
    for path in folder.rglob("*"):
        if path.is_dir():
            continue
        assert not path.name.endswith(".tmp"), f"stray temporary file {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            load_checkpoint(path)
        elif path.suffix in (".jpg", ".png"):
            load_image(path)
        elif path.suffix == ".csv":
            assert list(csv.DictReader(path.open()))
        elif path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict)


# --------------------------------------------------------------------------- the four stages


@pytest.mark.parametrize("case", cases("data"))
def test_data_api(case, tmp_path, checkpoint):
    """(a) readers and loaders: read_dataset + every image decoded, load_config, load_detector."""
    root, culprit = case.make(tmp_path, checkpoint)

    def use():
        if case.kind == "config":
            return load_config(culprit)
        if case.kind == "checkpoint":
            return load_detector(culprit)
        records, names = read_dataset(root, "train")
        dataset = DetectionDataset(records)
        for index in range(len(dataset)):
            dataset[index]
        return records

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case.expected("data") is not None:
            with pytest.raises(FacedetError) as info:
                use()
            message = str(info.value)
            assert "\n" not in message and re.search(case.expected("data"), message), message
            return
        result = use()
    if case.check is not None:
        case.check(result, caught, culprit)


@pytest.mark.parametrize("case", cases("train"))
def test_train(case, tmp_path, checkpoint, capsys):
    """(b) python -m facedet.train on the case's data, config or resume checkpoint."""
    root, culprit = case.make(tmp_path, checkpoint)
    out = tmp_path / "runs"
    argv = [*TRAIN, f"data.root={root}", f"out_dir={out}", "name=run", *case.overrides]
    if case.kind == "config":
        argv[1] = str(culprit)
    if case.kind == "checkpoint":
        argv += [f"train.resume={culprit}", "train.epochs=2"]  # the good checkpoint ended epoch 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        code, stdout, err = run(train.main, argv, capsys)
    assert_outcome(case.expected("train"), code, stdout, err)
    assert_complete_outputs(out)
    if case.expected("train") is None:
        assert load_checkpoint(out / "run" / "last.pt")["epoch"] == (2 if case.kind == "checkpoint" else 1)
    else:
        assert not (out / "run" / "last.pt").exists()


@pytest.mark.parametrize("case", cases("infer"))
def test_infer(case, tmp_path, checkpoint, capsys):
    """(c) python -m facedet.infer on the image, or with the file as --checkpoint."""
    root, culprit = case.make(tmp_path, checkpoint)
    out = tmp_path / "out"
    image = culprit if case.kind == "image" else root / "images/val/a.jpg"
    model = culprit if case.kind == "checkpoint" else checkpoint
    code, stdout, err = run(infer.main, [str(image), "--checkpoint", str(model), "--json", str(out / "det.json"),
                                         "--save-dir", str(out / "ann"), "--device", "cpu", "--min-score", "0"], capsys)
    # an unreadable image is skipped with one line and exit 1, the other images still processed
    assert_outcome(case.expected("infer"), code, stdout, err, prefixes=("error:", "skipped:"))
    assert_complete_outputs(out)
    if case.expected("infer") is None:
        width, height = image_size(image)
        (boxes,) = json.loads((out / "det.json").read_text()).values()
        for x1, y1, x2, y2, score, label, name in boxes:
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height and label == 0 and name == "face"
        # the annotated copy is upright: EXIF orientation applied, then saved without it
        assert Image.open(out / "ann" / f"{image.stem}_det.jpg").size == (width, height)
    elif case.kind == "image":
        assert json.loads((out / "det.json").read_text()) == {}  # complete, and without the bad image
        assert not list((out / "ann").glob("*"))
    else:
        assert not out.exists() or not list(out.rglob("*.*"))


@pytest.mark.parametrize("case", cases("evaluate"))
def test_evaluate(case, tmp_path, checkpoint, capsys):
    """(d) python -m facedet.evaluate on the case's data (train split), or with the file as --checkpoint."""
    root, culprit = case.make(tmp_path, checkpoint)
    out = tmp_path / "out"
    model = culprit if case.kind == "checkpoint" else checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        code, stdout, err = run(evaluate.main, ["--checkpoint", str(model), "--data", str(root), "--split", "train",
                                                "--out", str(out), "--device", "cpu", *case.overrides], capsys)
    assert_outcome(case.expected("evaluate"), code, stdout, err)
    assert_complete_outputs(out)
    if case.expected("evaluate") is None:
        assert "mAP50" in json.loads((out / "metrics.json").read_text())
    else:
        assert not (out / "metrics.json").exists()
