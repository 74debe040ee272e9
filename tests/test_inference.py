"""The one inference path: photos of any size, pyramids, tiles and batches map boxes back exactly.

Most tests use `BrightSquares`, a stand-in for FaceSSD with the same outputs and priors whose
"face score" is plain brightness: the 16 px prior of a stride-8 cell fires when the 8 x 8
block under the cell is bright. A bright 16 x 16 square centred on a cell centre is then
found as exactly its own box, so every step of the path (resize, padding, priors per grid,
tiles, pyramid levels, batching, mapping back to the photo) can be checked to the pixel
without a trained network.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import facedet
from facedet.files import atomic_save
from facedet.config import load_config, to_dict
from facedet.models import build_model
from facedet.models.detector import Detections, Detector, to_image_tensor
from facedet.models.face_ssd import FACE_PRIOR_MAPS, FaceSSD, make_face_priors, priors_per_cell
from facedet.models.ssd import SSDPostprocess


class BrightSquares(nn.Module):
    """FaceSSD's outputs for an input (N, 3, H, W) in [0, 1]: zero offsets everywhere; the
    16 px prior of each stride-8 cell scores logit 20 * (brightness of its 8 x 8 block - 0.9)
    against a background logit 0, every other prior is background by 20 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # so the Detector can tell the device
        self.inputs: list[tuple[int, int, int]] = []  # (N, H, W) of every forward call

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        self.inputs.append((n, h, w))
        p = len(make_face_priors(h, w))
        scores = torch.zeros(n, p, 2)
        scores[..., 0] = 20.0  # every prior says "background" ...
        block = F.avg_pool2d(images.mean(1, keepdim=True), 8)[:, 0]  # (N, H/8, W/8)
        k = priors_per_cell()[0]  # priors per stride-8 cell; the 16 px one is second
        first = scores[:, : block.shape[1] * block.shape[2] * k].view(n, block.shape[1], block.shape[2], k, 2)
        first[..., 1, 0] = 0.0  # ... except the 16 px ones, whose face logit is the brightness
        first[..., 1, 1] = 20 * (block - 0.9)
        return torch.zeros(n, p, 4), scores


def bright_detector() -> Detector:
    priors = make_face_priors(320)
    return Detector(BrightSquares(), nn.Identity(), SSDPostprocess(priors, prior_fn=make_face_priors),
                    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), image_size=320, input_policy="scalable",
                    max_size=0, size_multiple=64, class_names=["face"], min_score=0.5, nms_iou=0.45, top_k=200)


def photo_with_squares(h: int, w: int, cells: list[tuple[int, int]], side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A dark (3, h, w) photo with bright side x side squares centred on stride-8 cell centres
    (row, col); returns the photo and the squares' "xyxy" boxes."""
    image = torch.zeros(3, h, w)
    boxes = []
    for r, c in cells:
        cx, cy = 8 * c + 4, 8 * r + 4
        x1, y1 = cx - side // 2, cy - side // 2
        image[:, y1:y1 + side, x1:x1 + side] = 1.0
        boxes.append([x1, y1, x1 + side, y1 + side])
    return image, torch.tensor(boxes, dtype=torch.float32)


def same_boxes(found: Detections, expected: torch.Tensor) -> bool:
    order = found.boxes[:, 0].argsort() if len(found) else torch.zeros(0, dtype=torch.long)
    want = expected[expected[:, 0].argsort()]
    return len(found) == len(expected) and torch.allclose(found.boxes[order], want, atol=1e-3)


# ------------------------------------------------------------------ priors of any input


def test_priors_keep_their_pixel_sizes_on_every_grid():
    for h, w in [(320, 320), (64, 128), (448, 640)]:
        priors = make_face_priors(h, w)
        cells = sum((h // s) * (w // s) * len(sides) for s, sides in FACE_PRIOR_MAPS)
        assert priors.shape == (cells, 4)
        # the first prior of the stride-8 map: cell (0, 0), centre (4, 4) px, side 10 px
        assert torch.allclose(priors[0] * torch.tensor([w, h, w, h]), torch.tensor([4.0, 4.0, 10.0, 10.0]))
        # the 16 px prior of the stride-8 cell in row 2, column 3
        k = priors_per_cell()[0]
        index = (2 * (w // 8) + 3) * k + 1
        assert torch.allclose(priors[index] * torch.tensor([w, h, w, h]), torch.tensor([28.0, 20.0, 16.0, 16.0]))


def test_priors_refuse_inputs_that_are_not_multiples_of_the_coarsest_stride():
    with pytest.raises(facedet.errors.ConfigError, match="multiple of 64"):
        make_face_priors(300, 320)


@pytest.mark.parametrize("hw", [(64, 128), (192, 320)])
def test_face_ssd_predicts_one_row_per_prior_of_its_own_grid(hw):
    model = FaceSSD(width=16).eval()
    locs, scores = model(torch.zeros(1, 3, *hw))
    assert locs.shape[1] == scores.shape[1] == len(make_face_priors(*hw))


def test_postprocess_builds_and_caches_the_priors_of_each_input_size():
    post = SSDPostprocess(make_face_priors(320), prior_fn=make_face_priors)
    a = post.priors_for((128, 192))
    assert a is post.priors_for((128, 192))
    assert torch.equal(a, make_face_priors(128, 192))
    fixed = SSDPostprocess(make_face_priors(320))
    with pytest.raises(facedet.errors.ConfigError, match="fixed input size"):
        fixed.priors_for((128, 192))


# ------------------------------------------------------------------ the scalable path, exactly


def test_native_size_finds_each_square_as_its_own_box():
    photo, boxes = photo_with_squares(200, 300, [(5, 7), (12, 30), (20, 10)])
    found = bright_detector()(photo)
    assert same_boxes(found, boxes)
    assert found.names == ["face"] * 3


def test_a_chosen_size_resizes_and_maps_boxes_back_to_the_photo():
    # a 64 x 96 photo at --size 192 is enlarged 2x: its 8 px squares become the 16 px the
    # stand-in finds, and the boxes come back in the small photo's pixels
    photo = torch.zeros(3, 64, 96)
    photo[:, 6:14, 18:26] = 1.0  # centre (22, 10) -> (44, 20) at 2x: the centre of stride-8 cell (row 2, col 5)
    det = bright_detector()
    assert len(det(photo)) == 0  # at native size an 8 px square fires nothing
    found = det(photo, size=192)
    assert len(found) == 1
    assert torch.allclose(found.boxes[0], torch.tensor([18.0, 6.0, 26.0, 14.0]), atol=1e-3)


def test_small_faces_are_found_at_native_size_and_missed_when_shrunk_to_320():
    photo, boxes = photo_with_squares(640, 960, [(10, 10), (40, 60), (70, 100)])
    det = bright_detector()
    assert same_boxes(det(photo, size=0), boxes)
    assert len(det(photo, size=320)) == 0  # the 16 px squares shrink to 5 px


def test_tiles_give_the_single_pass_boxes():
    cells = [(3, 3), (10, 20), (15, 33), (28, 7), (30, 45)]  # some near tile borders (tile 128, step 64)
    photo, boxes = photo_with_squares(256, 384, cells)
    det = bright_detector()
    single = det(photo, tile=0)
    det.model.inputs.clear()
    tiled = det(photo, tile=128)
    assert same_boxes(single, boxes)
    assert same_boxes(tiled, boxes)
    assert torch.allclose(tiled.scores.sort().values, single.scores.sort().values)
    assert {(h, w) for _, h, w in det.model.inputs} == {(128, 128)}  # no pass saw the whole photo


def test_a_4000_x_3000_photo_is_never_one_network_input():
    det = bright_detector()
    photo, boxes = photo_with_squares(3000, 4000, [(100, 100), (300, 450)])
    found = det(photo)  # native size (the stand-in's default), default tiling
    assert same_boxes(found, boxes)
    largest = max(n * h * w for n, h, w in det.model.inputs)
    assert largest <= 4 * 1024 * 1024  # at most four 1024 x 1024 tiles at once, not 12 Mpx


def test_a_pyramid_gives_the_single_pass_boxes_when_other_levels_find_nothing_new():
    photo, boxes = photo_with_squares(256, 320, [(5, 5), (20, 30)])
    det = bright_detector()
    single = det(photo)
    assert same_boxes(det(photo, scales=(0.5, 1.0)), boxes)  # at 0.5 the squares fire nothing
    doubled = det(photo, scales=(1.0, 1.0))  # every face found twice, merged by NMS
    assert same_boxes(doubled, boxes)
    assert torch.equal(doubled.scores, single.scores)


def test_a_list_of_photos_of_different_sizes_comes_back_in_order():
    a, boxes_a = photo_with_squares(128, 192, [(4, 4)])
    b, boxes_b = photo_with_squares(200, 100, [(10, 5), (20, 8)])
    c, boxes_c = photo_with_squares(128, 192, [(8, 16)])
    det = bright_detector()
    found = det([a, b, c])
    assert isinstance(found, list) and len(found) == 3
    for f, expected in zip(found, [boxes_a, boxes_b, boxes_c]):
        assert same_boxes(f, expected)
    # a and c share their input size: one batch of two, b its own
    assert sorted(n for n, _, _ in det.model.inputs[-2:]) == [1, 2]


def test_min_score_is_the_detectors_operating_point_unless_given():
    photo = torch.zeros(3, 64, 64)
    photo[:, 12:28, 12:28] = 0.93  # logit 20 * 0.03 = 0.6: score 0.65
    det = bright_detector()
    assert len(det(photo)) == 1
    det.min_score = 0.7
    assert len(det(photo)) == 0
    assert len(det(photo, min_score=0.6)) == 1


# ------------------------------------------------------------------ what a user passes in


def test_paths_pil_images_arrays_and_tensors_are_one_photo(tmp_path):
    photo, boxes = photo_with_squares(64, 128, [(3, 5)])
    pixels = (photo.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    det = bright_detector()
    for item in [tmp_path / "p.png", str(tmp_path / "p.png"), Image.fromarray(pixels), pixels, photo,
                 pixels[:, :, 0]]:
        assert same_boxes(det(item), boxes), type(item)


def test_an_array_of_a_pil_image_is_read_without_a_warning(tmp_path):
    """np.asarray(Image.open(p)) is read-only; torch.from_numpy of it warns (once per process,
    hence a fresh interpreter)."""
    Image.new("RGB", (64, 48), (200, 120, 40)).save(tmp_path / "photo.png")
    code = ("import numpy as np, facedet; from PIL import Image\n"
            f"array = np.asarray(Image.open({str(tmp_path / 'photo.png')!r}))\n"
            "assert not array.flags.writeable\n"
            "print(len(facedet.load(device='cpu')(array)))")
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().isdigit(), run.stderr
    assert run.stderr == "", run.stderr


def test_to_image_tensor_refuses_what_is_not_an_image():
    with pytest.raises(facedet.errors.DataError, match="shape"):
        to_image_tensor(np.zeros((4, 5, 2), dtype=np.uint8))
    with pytest.raises(facedet.errors.DataError, match="cannot read an image from a int"):
        to_image_tensor(3)


# ------------------------------------------------------------------ a real checkpoint


@pytest.fixture(scope="module")
def face_checkpoint(tmp_path_factory):
    """An untrained FaceSSD checkpoint with a stored operating point."""
    cfg = load_config("face_default.yaml")
    torch.manual_seed(0)
    detector = build_model(cfg.model)
    path = tmp_path_factory.mktemp("ckpt") / "face.pt"
    atomic_save({"model": detector.model.state_dict(), "config": to_dict(cfg), "class_names": ["face"],
                 "operating_point": {"min_score": 0.75, "rule": "test rule"}}, path)
    return path


def test_load_returns_a_ready_detector_with_its_operating_point(face_checkpoint):
    det = facedet.load(face_checkpoint, "cpu")
    assert det.input_policy == "scalable" and det.max_size == 640 and det.size_multiple == 64
    assert det.min_score == 0.75 and det.calibration["rule"] == "test rule"
    assert det.class_names == ["face"] and det.source == str(face_checkpoint)
    found = det(torch.rand(3, 240, 320), min_score=0.0, top_k=50)
    assert found.boxes.shape == (50, 4) and bool((found.scores[:-1] >= found.scores[1:]).all())
    assert found.boxes[:, 0::2].max() <= 320 and found.boxes[:, 1::2].max() <= 240  # clipped to the photo


def test_a_stored_operating_point_must_be_a_score(face_checkpoint, tmp_path):
    state = torch.load(face_checkpoint, weights_only=True)
    state["operating_point"] = {"min_score": "high"}
    atomic_save(state, tmp_path / "bad.pt")
    with pytest.raises(facedet.errors.CheckpointError, match="operating_point.min_score"):
        facedet.load(tmp_path / "bad.pt", "cpu")


def test_the_shipped_detector_loads_with_a_calibrated_threshold():
    det = facedet.load(device="cpu")
    assert det.config.model.name == "face_ssd" and det.input_policy == "scalable"
    assert det.calibration, "the shipped checkpoint stores its operating point"
    assert 0.0 < det.min_score < 1.0
    assert math.isfinite(det.min_score)


def test_by_default_large_photos_shrink_to_max_size_and_small_ones_stay_native():
    det = bright_detector()
    det.max_size = 256
    big = torch.zeros(3, 512, 384)
    big[:, 8:40, 40:72] = 1.0  # a 32 px square centred at (56, 24): (28, 12) at half size, a cell centre
    det.model.inputs.clear()
    found = det(big)
    assert det.model.inputs == [(1, 256, 192)]  # shrunk: 512 -> 256
    assert torch.allclose(found.boxes, torch.tensor([[40.0, 8.0, 72.0, 40.0]]), atol=1e-3)
    small, boxes = photo_with_squares(200, 240, [(5, 5)])
    det.model.inputs.clear()
    assert same_boxes(det(small), boxes)
    assert det.model.inputs == [(1, 256, 256)]  # native 200 x 240, padded to multiples of 64: never enlarged
    det(big, size=0)  # native on request: the whole 512 px photo
    assert det.model.inputs[-1] == (1, 512, 384)


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's five-line example, verbatim, on a generated photo."""
    import re
    from pathlib import Path

    from facedet.data.synthetic import make_demo_image

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "facedet.load()" in b]
    monkeypatch.chdir(tmp_path)
    make_demo_image(tmp_path / "photo.jpg", seed=5, size=(240, 320))
    exec(compile(block, "README.md", "exec"), {})
    for line in capsys.readouterr().out.splitlines():  # "[x1, y1, x2, y2] score" per face
        box, score = line.rsplit(" ", 1)
        assert len(eval(box)) == 4 and 0.0 <= float(score) <= 1.0


def test_folding_batchnorm_keeps_the_outputs_and_the_parameter_count():
    from facedet.models.detector import fuse_batchnorm

    torch.manual_seed(0)
    model = FaceSSD(width=16).eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):  # statistics a trained net would have
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    images = torch.randn(2, 3, 128, 192)
    with torch.no_grad():
        expected = model(images)
    count = sum(p.numel() for p in model.parameters())
    fused = fuse_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        got = fused(images)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
    det = Detector(fused, nn.Identity(), lambda o, **k: o, min_score=0.5, nms_iou=0.45, top_k=200)
    assert det.num_parameters == count


def test_face_ssd_predictions_are_flattened_in_the_priors_order():
    """Each prediction conv is replaced by one that writes its cell's centre into the offsets:
    after flattening, prediction p must carry prior p's centre, on a non-square input too."""

    class CellCentres(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, f):
            n, _, h, w = f.shape
            cy, cx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
            per_prior = torch.stack([cx, cy, torch.zeros_like(cx), torch.zeros_like(cx)])
            return per_prior.repeat(self.k, 1, 1)[None].expand(n, -1, -1, -1)

    model = FaceSSD(width=8).eval()
    model.loc = nn.ModuleList(CellCentres(k) for k in priors_per_cell())
    with torch.no_grad():
        locs, _ = model(torch.zeros(1, 3, 128, 192))
    torch.testing.assert_close(locs[0, :, :2], make_face_priors(128, 192)[:, :2], rtol=0, atol=1e-6)


def test_a_tile_keeps_only_the_boxes_centred_in_its_own_span():
    from facedet.models.detector import _Pass, _to_photo

    det = {"boxes": torch.tensor([[0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 0.75, 0.75]]),  # fractions of 128 x 128
           "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}
    tile = _Pass(0, torch.zeros(3, 128, 128), offset=(64.0, 0.0), scale=(1.0, 1.0),
                 keep_region=(96.0, -math.inf, math.inf, math.inf))  # responsible for centres x >= 96
    out = _to_photo(det, tile, (128, 128))
    assert out["boxes"].tolist() == [[128.0, 64.0, 160.0, 96.0]] and out["scores"].tolist() == [0.800000011920929]


def test_neighbouring_tiles_overlap_by_at_least_the_promised_overlap():
    from facedet.models.detector import TILE_OVERLAP, _tile_starts

    # 1000 px in tiles of 400 overlapping by 100: starts every 300 px, the last one flush with the end
    assert [start for start, _ in _tile_starts(1000, 400, 100)] == [0, 300, 600]
    # a whole photo: every pair of neighbouring tiles shares at least TILE_OVERLAP px on each axis
    det = bright_detector()
    passes = det._passes(0, torch.zeros(3, 2000, 2600), None, (1.0,), tile=1024)
    for axis in (0, 1):
        starts = sorted({p.offset[axis] for p in passes})
        assert len(starts) >= 3
        assert all(1024 - (b - a) >= TILE_OVERLAP for a, b in zip(starts, starts[1:])), starts


def test_boxes_go_back_to_the_photo_with_each_axis_own_scale():
    """A 31 x 200 photo at --size 100 becomes 16 x 100 (15.5 rounds to 16): x is scaled by 1/2,
    y by 16/31, and each axis is mapped back by its own factor."""
    from facedet.models.detector import _to_photo

    (p,) = bright_detector()._passes(0, torch.zeros(3, 31, 200), 100, (1.0,), tile=0)
    assert p.scale == (100 / 200, 16 / 31) and tuple(p.input.shape[-2:]) == (64, 128)
    det = {"boxes": torch.tensor([[0.25, 0.125, 0.5, 0.25]]), "scores": torch.tensor([0.9]),  # of 64 x 128
           "labels": torch.tensor([0])}
    out = _to_photo(det, p, (64, 128))
    assert torch.allclose(out["boxes"], torch.tensor([[64.0, 8 * 31 / 16, 128.0, 16 * 31 / 16]]))
