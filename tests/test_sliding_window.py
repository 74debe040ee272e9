"""Rung 2: the sliding-window scan, its batching and its NMS, with stand-in classifiers."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facedet.boxes import box_iou, suppress_nested
from facedet.config import ClassifierConfig
from facedet.errors import ConfigError, FacedetError
from facedet.models.classifier import build_classifier
from facedet.models.detector import Detector
from facedet.models.sliding_window import (
    SlidingWindowDetector,
    detector_from_classifier,
    sliding_window_postprocess,
)


class MeanScorer(nn.Module):
    """logit = mean of the crop: makes every window's score checkable by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, crops):
        self.calls.append(len(crops))
        return crops.mean(dim=(1, 2, 3))


def blob(side: int) -> torch.Tensor:
    """A smooth, distinctly coloured "face": (3, side, side), a Gaussian bump, red up, blue down."""
    r = torch.linspace(-1, 1, side)
    bump = torch.exp(-(r[None, :] ** 2 + r[:, None] ** 2) / (2 * 0.4**2))
    return torch.stack([3 * bump, 1.5 * bump, -3 * bump])


class BlobScorer(nn.Module):
    """Stand-in face classifier: cosine similarity of the (centred) window to the blob template."""

    def __init__(self, window: int = 128) -> None:
        super().__init__()
        template = blob(window)
        self.register_buffer("template", (template - template.mean()).flatten())

    def forward(self, crops):
        flat = crops.flatten(1)
        flat = flat - flat.mean(dim=1, keepdim=True)
        cosine = F.cosine_similarity(flat, self.template[None], dim=1)
        return 20 * (cosine - 0.5)  # logit 0 at cosine 0.5


def test_window_boxes_hand_example():
    # window 128, stride 64 on a 256 x 288 (h x w) image scanned as is: 3 rows x 4 columns,
    # the last column (x 192..320) overhangs the right edge and is clipped to 288
    scanner = SlidingWindowDetector(MeanScorer(), window=128, window_sizes=(128,), stride_fraction=0.5, image_side=None)
    assert scanner.levels(256, 288) == [(256, 288, 3, 4)]
    boxes = scanner.window_boxes(256, 288)
    assert boxes.shape == (12, 4)
    torch.testing.assert_close(boxes[0], torch.tensor([0.0, 0.0, 128 / 288, 0.5]))
    torch.testing.assert_close(boxes[3], torch.tensor([192 / 288, 0.0, 1.0, 0.5]))     # row 0, last column
    torch.testing.assert_close(boxes[11], torch.tensor([192 / 288, 0.5, 1.0, 1.0]))    # last row, last column


def test_levels_scale_the_image_so_each_window_becomes_the_net_input():
    scanner = SlidingWindowDetector(MeanScorer(), window=128, window_sizes=(64, 128, 400), stride_fraction=0.25, image_side=None)
    # 64-px windows: image doubled to 400 x 600 -> rows ceil(272/32)+1 = 10, cols ceil(472/32)+1 = 16;
    # 400-px windows do not fit the 200-px side and are skipped
    assert scanner.levels(200, 300) == [(400, 600, 10, 16), (200, 300, 4, 7)]
    assert scanner.num_windows(200, 300) == 160 + 28
    # scales are an image pyramid: a 64 window on the image halved covers 128 pixels
    assert SlidingWindowDetector(MeanScorer(), window_sizes=(64,), scales=(1.0, 0.5)).sizes == [64, 128]
    with pytest.raises(ConfigError, match="stride_fraction"):
        SlidingWindowDetector(MeanScorer(), stride_fraction=0)


def test_scores_match_a_loop_over_windows():
    # at window size == net input no resize happens, so each score must equal sigmoid(mean of
    # the window of the zero-padded image), computed here one window at a time
    torch.manual_seed(0)
    images = torch.randn(2, 3, 40, 50)
    scanner = SlidingWindowDetector(MeanScorer(), window=16, window_sizes=(16,), stride_fraction=0.75, batch_size=7, image_side=None)
    boxes, scores = scanner(images)
    assert boxes.shape == (2, scanner.num_windows(40, 50), 4) and scores.shape == (2, scanner.num_windows(40, 50))
    padded = F.pad(images, (0, 16, 0, 16))
    (_, _, rows, cols), = scanner.levels(40, 50)
    for b in range(2):
        for row in range(rows):
            for col in range(cols):
                y, x = row * 12, col * 12
                expected = torch.sigmoid(padded[b, :, y : y + 16, x : x + 16].mean())
                torch.testing.assert_close(scores[b, row * cols + col], expected)


@pytest.mark.parametrize("batch_size", [1, 100, 512, 10_000])
def test_forward_calls_are_ceil_windows_over_batch_size(batch_size):
    classifier = MeanScorer()
    scanner = SlidingWindowDetector(classifier, window=32, window_sizes=(16, 24, 32, 48), batch_size=batch_size, image_side=None)
    n = scanner.num_windows(90, 120)
    scanner(torch.zeros(2, 3, 90, 120))  # two images share the batches
    assert len(classifier.calls) == math.ceil(2 * n / batch_size)
    assert max(classifier.calls) <= batch_size and sum(classifier.calls) == 2 * n


def test_image_side_rescales_before_scanning():
    classifier = MeanScorer()
    scanner = SlidingWindowDetector(classifier, window=32, window_sizes=(32,), stride_fraction=1.0, image_side=64)
    assert scanner.scanned_size(300, 600) == (32, 64)
    boxes, scores = scanner(torch.zeros(1, 3, 300, 600))
    assert scores.shape == (1, 2) and sum(classifier.calls) == 2  # two 32-px windows side by side
    torch.testing.assert_close(boxes[0], torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]))


def test_finds_planted_faces_at_two_sizes():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 256, 256) * 0.5
    faces = torch.tensor([[22.0, 36.0, 86.0, 100.0], [141.0, 115.0, 237.0, 211.0]])  # 64 px and 96 px, off the stride grid
    for x1, y1, x2, y2 in faces.int().tolist():
        image[0, :, y1:y2, x1:x2] += blob(x2 - x1)
    scanner = SlidingWindowDetector(BlobScorer(), window=128, window_sizes=(48, 64, 96, 128), image_side=None)
    outputs = scanner(image)
    # IoU-only NMS leaves 48-px windows inside the 96-px face (IoU 0.25 with it)
    assert len(sliding_window_postprocess(outputs, min_score=0.5, nms_iou=0.3, top_k=100, max_contained=None)[0]["boxes"]) > 2
    detections = sliding_window_postprocess(outputs, min_score=0.5, nms_iou=0.3, top_k=100)
    assert len(detections) == 1
    found = detections[0]["boxes"] * 256
    assert len(found) == 2, found
    iou = box_iou(found, faces)
    assert (iou.amax(dim=0) > 0.5).all(), iou            # each face recovered
    assert (iou.amax(dim=1) > 0.5).all(), iou            # nothing found on the noise


def test_suppress_nested_hand_example():
    boxes = torch.tensor([
        [0.0, 0.0, 4.0, 4.0],   # best
        [1.0, 1.0, 3.0, 3.0],   # inside box 0 (IoU 0.25): dropped
        [3.0, 3.0, 7.0, 7.0],   # 1/16 of it inside box 0: kept
        [1.0, 1.0, 3.0, 3.0],   # inside box 0 but another image: kept
    ])
    keep = suppress_nested(boxes, torch.tensor([0, 0, 0, 1]), max_contained=0.8)
    assert keep.tolist() == [True, False, True, True]
    # a large window scoring below a small one inside it goes too: the best of the pair stays
    assert suppress_nested(boxes[[1, 0]], torch.tensor([0, 0]), 0.8).tolist() == [True, False]
    assert suppress_nested(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 0.8).shape == (0,)


def test_postprocess_thresholds_keeps_images_apart_and_caps_top_k():
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5], [0.5, 0.5, 1.0, 1.0]]).expand(2, -1, -1)
    scores = torch.tensor([[0.9, 0.8, 0.7], [0.2, 0.6, 0.1]])
    out = sliding_window_postprocess((boxes, scores), min_score=0.5, nms_iou=0.3, top_k=100)
    torch.testing.assert_close(out[0]["scores"], torch.tensor([0.9, 0.7]))     # window 1 suppressed by window 0
    torch.testing.assert_close(out[0]["boxes"], boxes[0, [0, 2]])
    torch.testing.assert_close(out[1]["scores"], torch.tensor([0.6]))          # image 0 never suppresses image 1
    assert out[1]["labels"].tolist() == [0]
    assert len(sliding_window_postprocess((boxes, scores), min_score=0.5, nms_iou=0.3, top_k=1)[0]["scores"]) == 1
    empty = sliding_window_postprocess((boxes, scores), min_score=0.95, nms_iou=0.3, top_k=100)
    assert [len(d["boxes"]) for d in empty] == [0, 0] and empty[0]["boxes"].shape == (0, 4)


def test_detector_from_classifier_scans_with_the_trained_network():
    classifier = build_classifier(ClassifierConfig(embedding_dim=32, image_size=128))
    detector = detector_from_classifier(classifier, window_sizes=(100,), stride_fraction=1.0, image_side=100)
    assert detector.task == "detection" and detector.mean == classifier.mean
    assert detector.model.classifier is classifier.model and detector.model.window == 128
    detector.model.eval()
    detections = detector.postprocess(detector.model(torch.zeros(1, 3, 50, 100)), min_score=0.0, nms_iou=0.5, top_k=10)
    assert detections[0]["boxes"].shape == (2, 4)  # 100-px windows do not fit: two of the shorter side, 50
    with pytest.raises(FacedetError, match="not trained"):
        detector.criterion(None, None)
    with pytest.raises(ConfigError, match="classifier"):
        detector_from_classifier(Detector(nn.Identity(), nn.Identity(), lambda x: x, min_score=0.5, nms_iou=0.45,
                                          top_k=200))
