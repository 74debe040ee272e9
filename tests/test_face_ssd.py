"""The shipped face detector, FaceSSD: priors, shapes, builder, loss edge cases, overfitting,
and the default checkpoint behind `python -m facedet.infer photo.jpg` (when it is present)."""
import math

import numpy as np
import pytest
import torch

from facedet.boxes import box_convert, box_iou
from facedet.config import model_config
from facedet.data.synthetic import make_demo_image
from facedet.errors import ConfigError
from facedet.models import MODELS, build_model
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.models.detector import Detector
from facedet.models.face_ssd import (
    FACE_ASPECTS,
    FACE_PRIOR_MAPS,
    FaceSSD,
    build_face_ssd,
    make_face_priors,
    priors_per_cell,
)
from facedet.models.ssd import MultiBoxLoss, SSDPostprocess

from conftest import n_params, scene_batch


# ----------------------------------------------------------------------------- priors


def test_prior_count_at_320():
    # 40*40*3 + 20*20*2 + 10*10*2 + 5*5*3
    assert priors_per_cell() == (3, 2, 2, 3)
    assert make_face_priors(320).shape == (5875, 4)


def test_prior_sizes_and_centres_by_hand():
    priors = make_face_priors(320)  # "cxcywh" fractional
    # first cell of the stride-8 map: centre (4, 4) px, squares of 10, 16 and 24 px
    expected = torch.tensor([[4, 4, 10, 10], [4, 4, 16, 16], [4, 4, 24, 24]]) / 320
    assert torch.allclose(priors[:3], expected)
    # the stride-64 map starts after 40*40*3 + 20*20*2 + 10*10*2 = 5800 priors; its first cell
    # is centred at (32, 32) px and its squares are 128, 192 and 256 px
    last = priors[5800:5803]
    assert torch.allclose(last[:, :2], torch.full((3, 2), 32 / 320))
    assert torch.allclose(last[:, 2], torch.tensor([128.0, 192.0, 256.0]) / 320)


def test_prior_ranges_and_shapes():
    priors = make_face_priors(320)
    assert priors.min() >= 0 and priors.max() <= 1
    sides_px = (priors[:, 2] * priors[:, 3]).sqrt() * 320  # sqrt(area): the "side" of a prior
    # every prior keeps its side in pixels (no clamp: see make_face_priors)
    assert sides_px.min() == pytest.approx(10, rel=1e-4)
    assert sides_px.max() == pytest.approx(256, rel=1e-4)
    ratio = priors[:, 3] / priors[:, 2]  # h / w
    interior = (box_convert(priors, "cxcywh", "xyxy") > 0).all(1) & (box_convert(priors, "cxcywh", "xyxy") < 1).all(1)
    assert set(np.round(ratio[interior].numpy(), 3).tolist()) == set(FACE_ASPECTS)


def test_every_face_size_has_a_prior_at_the_matching_iou():
    """The sides are about a factor 1.5 apart, so a square face of any side from 7 to 400 px,
    centred on a cell of the right map, overlaps one of its priors by IoU >= 0.35 (the
    matching threshold), and any from 12 to 300 px by IoU >= 0.5."""
    priors_xyxy = box_convert(make_face_priors(640), "cxcywh", "xyxy")
    centres = (324.0, 328.0, 336.0, 352.0)  # a cell centre of the stride 8, 16, 32, 64 map
    for side, iou in [(7, 0.35), (10, 0.5), (12, 0.5), (20, 0.5), (28, 0.5), (40, 0.5), (56, 0.5), (80, 0.5),
                      (110, 0.5), (150, 0.5), (200, 0.5), (250, 0.5), (300, 0.5), (400, 0.35)]:
        faces = torch.tensor([[c - side / 2, c - side / 2, c + side / 2, c + side / 2] for c in centres]) / 640
        assert box_iou(faces, priors_xyxy).max() >= iou, side


def test_large_priors_cover_faces_up_to_the_whole_640_px_input():
    """Without them a 500 px face (a close-up on a 640 px photo) has no prior at the matching IoU,
    so the 256 px priors box its parts; with 384 and 512 px priors every face to 640 px has one."""
    assert priors_per_cell(large=True) == (3, 2, 2, 5)
    small, large = make_face_priors(640), make_face_priors(640, large=True)
    assert len(large) - len(small) == 10 * 10 * 2  # two more priors in each stride-64 cell
    # the stride-64 cells end the list: the first one's five squares
    first = large[len(large) - 100 * 5:][:5]
    assert torch.allclose(first[:, 2] * 640, torch.tensor([128.0, 192.0, 256.0, 384.0, 512.0]))
    for side, has_prior in [(500, True), (640, True), (450, True)]:
        face = torch.tensor([[320 - side / 2, 320 - side / 2, 320 + side / 2, 320 + side / 2]]) / 640
        best_small = box_iou(face, box_convert(small, "cxcywh", "xyxy")).max()
        best_large = box_iou(face, box_convert(large, "cxcywh", "xyxy")).max()
        assert best_large >= 0.35 and best_small < 0.35, side
    model = FaceSSD(16, large_priors=True)
    locs, scores = model(torch.zeros(1, 3, 128, 192))
    assert locs.shape[1] == scores.shape[1] == len(make_face_priors(128, 192, large=True))
    detector = build_face_ssd(model_config("face_ssd", width=16, image_size=128, large_priors=True))
    assert len(detector.criterion.priors) == len(make_face_priors(128, large=True))
    assert len(detector.postprocess.prior_fn(256, 320)) == len(make_face_priors(256, 320, large=True))


def test_the_largest_priors_keep_their_pixels_on_inputs_smaller_than_them():
    """A 180 x 200 photo is padded to 192 x 256: the 256 px prior of the stride-64 map is wider and
    taller than the input, and stays 256 px (a clamp to [0, 1] of the fractions made it 192 x 256),
    so the same network output decodes to the same box in pixels on every input size."""
    for h, w in [(192, 256), (128, 128), (64, 320)]:
        priors = make_face_priors(h, w)
        coarsest = priors[-len(FACE_PRIOR_MAPS[-1][1]):] * torch.tensor([w, h, w, h])  # the last cell's priors, px
        assert torch.allclose(coarsest[:, 2:], torch.tensor([[128.0, 128], [192, 192], [256, 256]])), (h, w)


def test_priors_keep_pixel_sizes_as_the_grid_grows_and_refuse_bad_sizes():
    assert make_face_priors(640).shape == (4 * 5875, 4)
    big, small = make_face_priors(640), make_face_priors(320)
    assert torch.allclose(big[0, 2:] * 640, small[0, 2:] * 320)  # the first prior is 10 px in both
    toy = make_face_priors(64)  # one cell per coarsest map: centre 0.5, sides 2, 3 and 4 times the input
    assert toy.shape == (8 * 8 * 3 + 4 * 4 * 2 + 2 * 2 * 2 + 1 * 3, 4)
    assert torch.allclose(toy[-3:, :2], torch.full((3, 2), 0.5))
    assert torch.allclose(toy[-3:, 2:] * 64, torch.tensor([[128.0, 128], [192, 192], [256, 256]]))
    with pytest.raises(ConfigError, match="multiple of 64"):
        make_face_priors(300)


# ----------------------------------------------------------------------------- model


def test_output_shapes_match_priors():
    model = FaceSSD(width=8).eval()
    with torch.no_grad():
        pred_locs, pred_scores = model(torch.randn(2, 3, 128, 128))
    p = len(make_face_priors(128))
    assert pred_locs.shape == (2, p, 4)
    assert pred_scores.shape == (2, p, 2)


def test_default_size_is_small():
    assert len(FACE_PRIOR_MAPS) == 4
    assert n_params(FaceSSD()) == 355_644  # width 32, one class, with the FPN path
    assert n_params(FaceSSD(fpn=False)) == 291_324


def test_builder_via_models():
    assert MODELS["face_ssd"] is build_face_ssd
    cfg = model_config("face_ssd", num_classes=1, image_size=128, width=8)
    detector = build_model(cfg)
    assert isinstance(detector, Detector)
    assert isinstance(detector.criterion, MultiBoxLoss) and isinstance(detector.postprocess, SSDPostprocess)
    assert detector.mean == IMAGENET_MEAN and detector.std == IMAGENET_STD
    assert torch.equal(detector.criterion.priors, make_face_priors(128))
    detector.model.eval()
    with torch.no_grad():
        detections = detector.postprocess(detector.model(torch.randn(1, 3, 128, 128)), min_score=0.01, nms_iou=0.45,
                                        top_k=10)
    assert len(detections) == 1 and detections[0]["boxes"].shape[1] == 4
    assert len(detections[0]["boxes"]) <= 10


def test_loss_on_empty_image_is_finite():
    detector = build_model(model_config("face_ssd", num_classes=1, image_size=128, width=8))
    outputs = detector.model(torch.randn(2, 3, 128, 128))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    terms = detector.criterion(outputs, [empty, empty])
    assert terms["loc"].item() == 0.0
    assert torch.isfinite(terms["conf"])
    (terms["loc"] + terms["conf"]).backward()  # a batch without faces still back-propagates


def test_overfits_one_batch_of_synthetic_scenes():
    """Adam on two synthetic scenes: the loss falls by more than half, and afterwards every
    face is found (IoU >= 0.5 with the best-scoring detection that overlaps it)."""
    torch.manual_seed(0)
    images, targets = scene_batch(192, seeds=(1, 2))
    detector = build_model(model_config("face_ssd", num_classes=1, image_size=192, width=16))
    optimizer = torch.optim.Adam(detector.model.parameters(), lr=3e-3)
    losses = []
    detector.model.train()
    for _ in range(60):
        terms = detector.criterion(detector.model(images), targets)
        loss = terms["loc"] + terms["conf"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    detector.model.eval()  # BatchNorm's running statistics must also have learnt the batch
    with torch.no_grad():
        detections = detector.postprocess(detector.model(images), min_score=0.3, nms_iou=0.45, top_k=20)
    for det, target in zip(detections, targets):
        assert len(det["boxes"]) > 0
        assert (box_iou(target["boxes"], det["boxes"]).max(dim=1).values >= 0.5).all()


# ----------------------------------------------------------------------------- shipped checkpoint


def test_shipped_checkpoint_runs_without_checkpoint_option(tmp_path):
    """`python -m facedet.infer image.jpg` (no --checkpoint) uses facedet/weights/face_default.pt."""
    from facedet import infer
    from facedet.checkpoint import SHIPPED_CHECKPOINT
    from facedet.cli import run_cli

    assert SHIPPED_CHECKPOINT.exists(), "the package ships its default detector"
    make_demo_image(tmp_path / "demo.jpg", seed=3, size=(240, 320))
    code = run_cli(infer.main, [str(tmp_path / "demo.jpg"), "--json", str(tmp_path / "out.json"),
                                "--save-dir", str(tmp_path / "det")])
    assert code == 0
    assert (tmp_path / "out.json").exists() and (tmp_path / "det" / "demo_det.jpg").exists()
