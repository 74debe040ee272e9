"""Every rung's settings have one source: its builder (min_score, nms_iou, top_k), or the checkpoint's
calibrated operating point. The command line and the Python API therefore give the same boxes for
the same checkpoint and photo, on every rung.

Each checkpoint is a tiny untrained network (fixed seed) whose stored operating point is low, so
that hundreds of overlapping boxes reach NMS: a command line that ran NMS at its own IoU instead
of the rung's (RetinaNet's 0.5) would keep other boxes.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import facedet
from facedet import infer
from facedet.cli import run_cli
from facedet.config import Config, model_config, to_dict
from facedet.files import atomic_save
from facedet.models import MODELS, build_model
from facedet.models.haar_features import HaarFeatures
from facedet.models.viola_jones import Stage, Stump

SMALL = {"backbone": "small", "width": 8}
# model.name -> the keys that keep its network small (and its scan short) on a CPU
RUNGS = {
    "viola_jones": {},
    "classifier": {**SMALL, "image_size": 32, "window_sizes": [32, 48], "window_image_side": 96},
    "grid_simple": {**SMALL, "image_size": 64},
    "grid_cnn": {**SMALL, "image_size": 64},
    "yolo_face": {**SMALL, "image_size": 64},
    "yolo_face_tiny": {"width": 8, "image_size": 64, "griddim": 4},
    "ssd300": {},
    "fastai_ssd": {"width": 8},
    "face_ssd": {"width": 8},
    "retinanet": {"width": 8, "fpn_channels": 16, "head_depth": 1},
    "centernet": {"width": 8},
    "faster_rcnn": {"width": 8, "channels": 16, "hidden": 32},
}
# low enough that an untrained network's boxes pass (RetinaNet's and CenterNet's start near 0.01 and 0.1)
LOW_OPERATING_POINT = {"min_score": 0.001, "rule": "for this test: every box reaches NMS"}


def test_every_rung_is_checked():
    assert set(RUNGS) == set(MODELS)


def bar_stage(cascade) -> None:
    """One stump on a three-bar feature, so that the untrained cascade's windows score differently."""
    bar = torch.tensor([[[0, 0, 8, 24], [8, 0, 16, 24], [16, 0, 24, 24], [0, 0, 0, 0]]])
    features = HaarFeatures(bar, torch.tensor([[1.0, -1.0, 1.0, 0]]), torch.tensor([2]))
    cascade.add_stage(Stage([Stump(0, 0.0, 1, 0.1)], [2.0], 1.0, 1.0, 0.0), features)


def checkpoint(tmp_path, name: str) -> str:
    cfg = Config(model=model_config(name, num_classes=1, **RUNGS[name]))
    torch.manual_seed(0)
    model = build_model(cfg.model).model
    if name == "viola_jones":
        bar_stage(model)
    if name.startswith("grid"):  # cells start at p = 0.1, below the 0.5 that makes a cell a face's
        torch.nn.init.zeros_(model.head.bias)
    path = tmp_path / f"{name}.pt"
    atomic_save({"model": model.state_dict(), "config": to_dict(cfg), "class_names": ["face"],
                 "operating_point": LOW_OPERATING_POINT}, path)
    return str(path)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 96 x 72 photo of smooth random colour (fixed seed)."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((96, 72), Image.BILINEAR).save(path)
    return path


@pytest.mark.parametrize("name", list(RUNGS))
def test_the_command_line_and_the_python_api_give_the_same_boxes(name, tmp_path, photo):
    path = checkpoint(tmp_path, name)
    detector = facedet.load(path, "cpu")
    api = detector(str(photo)).to_list()
    out = tmp_path / "boxes.json"
    assert run_cli(infer.main, [str(photo), "--checkpoint", path, "--json", str(out), "--no-save",
                                "--device", "cpu"]) == 0
    cli = json.loads(out.read_text())[str(photo)]
    # the grid joins every cell above the operating point into connected components: at this test's
    # 0.001 the whole untrained grid is one component, one box; every other rung gives several
    assert len(api) >= (1 if name.startswith("grid") else 2), "too few boxes to compare"
    assert cli == api
    # the settings came from the rung and the checkpoint, not from a default of the command line
    assert detector.min_score == LOW_OPERATING_POINT["min_score"]
    assert detector.nms_iou == build_model(model_config(name, **RUNGS[name])).nms_iou
