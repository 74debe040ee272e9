"""The grid rung's teaching figures (facedet.tools.figures.grid): every figure, the touching-faces demo, and the
figures command's grid section (python -m facedet.tools.figures --only grid).

The seed's grid models have ~413M parameters, far too many for a fast test, so the command is
run on checkpoints of a tiny stand-in: `TinyGrid` (a few hundred weights, same (N, S, S) output),
registered under model.name "grid_simple" for the duration of a test.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from facedet.models.detector import Detector
from facedet.models.grid import GridLoss, GridPostprocess

from conftest import assert_png

FAST = {"dpi": 40}  # small PNGs: the drawing is the same, the saving faster


# --------------------------------------------------------------------------- figures from tensors


@pytest.fixture
def photo() -> torch.Tensor:
    """A (3, 60, 80) uint8 photo: non-square, so cells are rectangles."""
    return torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_truth_matrix_figure(photo, tmp_path):
    from facedet.tools.figures.grid import plot_truth_matrix

    boxes = torch.tensor([[10.0, 5.0, 40.0, 35.0], [60.0, 40.0, 62.0, 42.0]])  # one large, one tiny face
    path = plot_truth_matrix(photo, boxes, 7, tmp_path / "truth.png", **FAST)
    assert path == tmp_path / "truth.png"
    assert_png(path)
    # a PIL photo, no faces at all, 14 x 14
    empty = plot_truth_matrix(Image.new("L", (50, 40), 128), torch.zeros(0, 4), 14, tmp_path / "empty.png", **FAST)
    assert_png(empty)


def test_probability_grid_figure(photo, tmp_path):
    from facedet.tools.figures.grid import plot_probability_grid

    probs = torch.zeros(7, 7)
    probs[1:3, 1:3] = 0.9
    path = plot_probability_grid(photo.float() / 255, probs, tmp_path / "grid.png", threshold=0.5,
                                 true_boxes_xyxy=torch.tensor([[10.0, 8.0, 30.0, 26.0]]), **FAST)
    assert path == tmp_path / "grid.png"
    assert_png(path)


def test_combined_figure(photo, tmp_path):
    from facedet.tools.figures.grid import plot_combined

    generator = torch.Generator().manual_seed(1)
    path = plot_combined(photo, torch.rand(7, 7, generator=generator), torch.rand(14, 14, generator=generator),
                         tmp_path / "combined.png", **FAST)
    assert path == tmp_path / "combined.png"
    assert_png(path)


def test_grid_boxes_are_the_postprocess_components():
    from facedet.tools.figures.grid import grid_boxes

    probs = torch.zeros(4, 4)
    probs[0, 0] = probs[1, 1] = 0.8   # diagonal neighbours: one component (8-connectivity)
    probs[3, 3] = 0.6                 # alone
    found = grid_boxes(probs, threshold=0.5)
    assert torch.allclose(found["boxes"] * 4, torch.tensor([[0.0, 0, 2, 2], [3, 3, 4, 4]]))
    assert torch.allclose(found["scores"], torch.tensor([0.8, 0.6]))


# --------------------------------------------------------------------------- the touching-faces failure


@pytest.mark.parametrize("griddim", [7, 14])
def test_touching_faces_give_one_box_and_separated_faces_two(griddim):
    from facedet.tools.figures.grid import touching_failure_grids

    grids = touching_failure_grids(griddim)
    postprocess = GridPostprocess(griddim, cell_threshold=0.5)
    touching_probs, touching_faces = grids["touching"]
    separated_probs, separated_faces = grids["separated"]
    assert touching_probs.shape == separated_probs.shape == (griddim, griddim)
    assert len(touching_faces) == len(separated_faces) == 2

    merged = postprocess(touching_probs[None])[0]["boxes"]
    assert len(merged) == 1
    # the one box holds both faces' centres: it really is the two faces merged
    centres = (touching_faces[:, :2] + touching_faces[:, 2:]) / 2
    assert ((merged[0, :2] <= centres) & (centres <= merged[0, 2:])).all()
    assert len(postprocess(separated_probs[None])[0]["boxes"]) == 2


def test_touching_failure_figure(tmp_path):
    from facedet.tools.figures.grid import plot_touching_failure

    path = plot_touching_failure(tmp_path / "touching.png", **FAST)
    assert path == tmp_path / "touching.png"
    assert_png(path)


# --------------------------------------------------------------------------- the command


class TinyGrid(nn.Module):
    """Stand-in for GridSimpleCNNModel: images (N, 3, H, W) -> probabilities (N, S, S), 41 weights."""

    def __init__(self, griddim: int) -> None:
        super().__init__()
        self.griddim = griddim
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1),  # (N, 4, H/2, W/2)
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(griddim),                        # (N, 4, S, S)
            nn.Conv2d(4, 1, kernel_size=1),                       # (N, 1, S, S)
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[:, 0]                             # (N, S, S)


def build_tiny_grid(cfg) -> Detector:
    return Detector(TinyGrid(cfg.griddim), GridLoss(cfg.griddim), GridPostprocess(cfg.griddim),
                    image_size=cfg.image_size, min_score=0.5, nms_iou=0.45, top_k=200)


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """Two tiny grid checkpoints (S = 7 and S = 14) saved as "grid_simple"; returns {S: path}."""
    from facedet import models
    from facedet.files import atomic_save
    from facedet.config import Config, to_dict

    monkeypatch.setitem(models.MODELS, "grid_simple", build_tiny_grid)
    paths = {}
    for griddim in (7, 14):
        cfg = Config()
        cfg.model.name, cfg.model.num_classes, cfg.model.image_size, cfg.model.griddim = "grid_simple", 1, 64, griddim
        torch.manual_seed(griddim)
        state = {"model": TinyGrid(griddim).state_dict(), "config": to_dict(cfg), "class_names": ["face"]}
        paths[griddim] = tmp_path / f"grid{griddim}.pt"
        atomic_save(state, paths[griddim])
    return paths


def test_command_help(capsys):
    from facedet.tools.figures.all import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    for word in ("--only", "grid (grid7, grid14, grid_cnn)", "--checkpoint", "NAME=PATH", "--images", "--data",
                 "--split", "--count", "--out"):
        assert word in text


def grid_command(checkpoints, tmp_path, *args):
    """The figures command's grid section on the tiny checkpoints named in `args`; returns its output folder."""
    from facedet.tools.figures.all import main

    out = tmp_path / "figs"
    assert main(["--only", "grid", "--runs", str(tmp_path / "no_runs"), "--out", str(out), "--dpi", "40",
                 "--device", "cpu", *args]) == 0
    return out


def test_command_on_synthetic_scenes(checkpoints, tmp_path):
    out = grid_command(checkpoints, tmp_path, "--checkpoint", f"grid7={checkpoints[7]}",
                       "--checkpoint", f"grid14={checkpoints[14]}", "--count", "1")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["combined_synthetic_0.png", "grid14_synthetic_0.png", "grid7_synthetic_0.png",
                     "truth_matrix_synthetic_0.png"]
    for path in out.iterdir():
        assert_png(path)


def test_command_on_images_and_data(checkpoints, tmp_path, capsys):
    """--images have no true boxes (no truth matrix); --data photos do. No grid14: no combined_*."""
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "images" / "val").mkdir(parents=True)
    (tmp_path / "data" / "labels" / "val").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "data/images/val/a.jpg")
    (tmp_path / "data" / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.3 0.4\n")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    out = grid_command(checkpoints, tmp_path, "--checkpoint", f"grid7={checkpoints[7]}",
                       "--images", str(tmp_path / "b.png"), "--data", str(tmp_path / "data"), "--count", "1")
    assert sorted(p.name for p in out.iterdir()) == ["grid7_a.png", "grid7_b.png", "truth_matrix_a.png"]
    printed = capsys.readouterr().out
    assert "skipped (2)" in printed and "grid14: no " in printed and "grid_cnn: no " in printed


def test_command_skips_a_model_that_is_not_a_grid_with_the_reason(checkpoints, tmp_path, monkeypatch, capsys):
    from facedet import models

    # the same weights rebuilt as a detector whose post-processor is not a grid's
    monkeypatch.setitem(models.MODELS, "grid_simple",
                        lambda cfg: Detector(TinyGrid(cfg.griddim), GridLoss(cfg.griddim), lambda outputs, **_: [],
                                             min_score=0.5, nms_iou=0.45, top_k=200))
    out = grid_command(checkpoints, tmp_path, "--checkpoint", f"grid7={checkpoints[7]}")
    assert not out.exists()
    assert "expected a grid model" in capsys.readouterr().out


def test_command_refuses_a_bad_checkpoint_argument(checkpoints, tmp_path):
    from facedet.errors import ConfigError

    with pytest.raises(ConfigError, match="no run 'grid9'; expected one of"):
        grid_command(checkpoints, tmp_path, "--checkpoint", f"grid9={checkpoints[7]}")
    with pytest.raises(ConfigError, match="expected NAME=PATH"):
        grid_command(checkpoints, tmp_path, "--checkpoint", str(checkpoints[7]))
    with pytest.raises(ConfigError, match="missing.pt is not a file"):
        grid_command(checkpoints, tmp_path, "--checkpoint", f"grid7={tmp_path / 'missing.pt'}")
