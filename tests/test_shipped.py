"""The shipped detectors and photos: every name facedet.list_detectors() gives loads and detects,
and the default detector finds the faces of the shipped public-domain photos."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import facedet
from facedet import infer
from facedet.boxes import box_iou
from facedet.checkpoint import SHIPPED_WEIGHTS, resolve_checkpoint
from facedet.cli import run_cli
from facedet.errors import CheckpointError, DataError
from facedet.tools.model_card import card_table
from facedet.photos import PHOTOS, photo_path


def test_the_default_detector_is_listed_first_and_every_listed_name_is_a_shipped_file():
    names = facedet.list_detectors()
    assert names[0] == "face_default"
    assert names == ["face_default"] + sorted(names[1:])
    for name in names:
        assert resolve_checkpoint(name) == SHIPPED_WEIGHTS / f"{name}.pt"


@pytest.mark.parametrize("name", facedet.list_detectors())
def test_every_shipped_detector_loads_by_name_and_detects_on_a_real_photo(name):
    det = facedet.load(name, device="cpu")
    found = det(photo_path("astronaut"))
    assert found.boxes.shape[1:] == (4,) and len(found.scores) == len(found.boxes)
    assert det.source.endswith(f"{name}.pt")


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_the_default_detector_finds_the_face_of_each_shipped_photo(photo):
    found = facedet.load(device="cpu")(photo_path(photo))
    truth = torch.tensor(PHOTOS[photo].faces, dtype=torch.float32)
    assert len(found.boxes) >= 1
    assert box_iou(found.boxes, truth).max(dim=0).values.min() >= 0.5


def test_an_unknown_name_is_refused_with_the_shipped_names():
    with pytest.raises(CheckpointError, match="face_default"):
        facedet.load("no_such_detector")


def test_a_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    shutil.copy(SHIPPED_WEIGHTS / "face_default.pt", tmp_path / "retinanet")
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("retinanet") == tmp_path.joinpath("retinanet").relative_to(tmp_path)
    assert facedet.load("retinanet", device="cpu").config.model.name == "face_ssd"


def test_a_missing_file_path_is_not_taken_for_a_name(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        facedet.load(tmp_path / "face_default")


def test_the_model_card_quotes_the_table_the_checkpoints_give():
    card = (SHIPPED_WEIGHTS / "MODEL_CARD.md").read_text()
    start, end = card.index("<!-- model-card-table -->"), card.index("<!-- /model-card-table -->")
    assert card[start:end].split("\n", 1)[1].strip() == card_table().strip(), \
        "MODEL_CARD.md's table is stale: paste the output of python -m facedet.tools.model_card"


def test_a_uint8_tensor_gives_the_same_faces_as_the_array_it_came_from():
    det = facedet.load(device="cpu")
    array = np.asarray(Image.open(photo_path("astronaut")).convert("RGB"))
    from_array = det(array)
    from_uint8 = det(torch.from_numpy(array.copy()).permute(2, 0, 1))  # torchvision.io.read_image's layout
    from_float = det(torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255)
    assert len(from_array.boxes) >= 1
    assert torch.allclose(from_uint8.boxes, from_array.boxes) and torch.allclose(from_float.boxes, from_array.boxes)


def test_a_float_tensor_of_0_255_values_is_refused_with_the_fix():
    with pytest.raises(DataError, match="divide 0-255 values by 255"):
        facedet.load(device="cpu")(torch.full((3, 64, 64), 200.0))


def test_infer_names_each_class_says_how_it_sizes_photos_and_refuses_an_empty_folder(tmp_path, capsys):
    out = tmp_path / "faces.json"
    assert run_cli(infer.main, [str(photo_path("astronaut")), "--no-save", "--json", str(out), "--size", "native",
                                "--device", "cpu"]) == 0
    rows = json.loads(out.read_text())[str(photo_path("astronaut"))]
    assert rows and all(len(row) == 7 and row[6] == "face" for row in rows)
    header = capsys.readouterr().out.splitlines()[0]
    assert "photos at their own size)" in header and "up to" not in header
    assert run_cli(infer.main, [str(photo_path("astronaut")), "--no-save", "--size", "320", "--device", "cpu"]) == 0
    assert "photos resized to 320 px" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert run_cli(infer.main, [str(tmp_path / "empty"), "--no-save", "--device", "cpu"]) != 0
    assert "no images found in" in capsys.readouterr().err
