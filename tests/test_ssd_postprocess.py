"""SSD post-processing: the batched version against the tutorial's loops (the oracle in
benchmarks/postprocess.py), hand-made NMS cases and edge cases."""
import importlib.util
from pathlib import Path

import pytest
import torch

import facedet.boxes as box_ops

from facedet.boxes import batched_nms, box_convert
from facedet.boxes import multiclass_nms
from facedet.models.ssd import SSDPostprocess, make_priors


def _load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "postprocess.py"
    spec = importlib.util.spec_from_file_location("benchmark_postprocess", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


@pytest.fixture(scope="module")
def priors():
    return make_priors()


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(g[key], w[key]), key


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_reference_loops(priors, seed):
    outputs = bench.random_outputs(2, len(priors), 4, torch.Generator().manual_seed(seed))
    got = SSDPostprocess(priors)(outputs, min_score=0.01, nms_iou=0.45, top_k=200)
    want = bench.reference_postprocess(outputs, priors, min_score=0.01, nms_iou=0.45, top_k=200)
    assert_same(got, want)
    assert all(len(d["scores"]) == 200 for d in got)  # enough candidates to fill top_k


def test_equals_reference_with_heavy_suppression(priors):
    """The larger priors (conv7 on), a tight IoU: most candidates are suppressed, long
    suppression chains for the fixed point, and the candidate cut has to grow."""
    large = priors[5776:]
    g = torch.Generator().manual_seed(2)
    outputs = (torch.randn(2, len(large), 4, generator=g), torch.randn(2, len(large), 3, generator=g))
    settings = {"min_score": 0.4, "nms_iou": 0.2, "top_k": 100}
    got = SSDPostprocess(large)(outputs, **settings)
    assert_same(got, bench.reference_postprocess(outputs, large, **settings))
    assert [len(d["scores"]) for d in got] == [100, 100]


def test_cut_is_doubled_when_needed(priors, monkeypatch):
    """With few candidates per class and a top_k that needs more, the padded NMS must be
    redone on a larger cut and still equal the loops."""
    sizes = []
    original = box_ops.greedy_nms_mask  # the one NMS engine, under boxes.multiclass_nms

    def recording(boxes, valid, iou_threshold, *labels):
        sizes.append(boxes.shape[1])
        return original(boxes, valid, iou_threshold, *labels)

    monkeypatch.setattr(box_ops, "greedy_nms_mask", recording)
    outputs = bench.random_outputs(2, len(priors), 3, torch.Generator().manual_seed(3))
    got = SSDPostprocess(priors)(outputs, min_score=0.01, nms_iou=0.45, top_k=100, candidates=4)
    want = bench.reference_postprocess(outputs, priors, min_score=0.01, nms_iou=0.45, top_k=100)
    assert_same(got, want)
    assert sizes[0] == 4 and len(sizes) > 1 and sizes == sorted(sizes)


def test_multiclass_nms_equals_batched_nms_per_image():
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(3, 60, 2, generator=g) * 0.7
    boxes = torch.cat([xy, xy + 0.1 + torch.rand(3, 60, 2, generator=g) * 0.3], dim=-1)
    scores = torch.rand(3, 60, 4, generator=g)
    got = multiclass_nms(boxes, scores, min_score=0.3, nms_iou=0.5, top_k=1000)
    for i in range(3):
        prior, label = (scores[i] > 0.3).nonzero(as_tuple=True)
        flat_scores = scores[i][prior, label]
        keep = batched_nms(boxes[i][prior], flat_scores, label, 0.5)
        assert torch.equal(got[i]["scores"], flat_scores[keep])
        assert torch.equal(got[i]["labels"], label[keep])
        assert torch.equal(got[i]["boxes"], boxes[i][prior[keep]])


def test_two_classes_on_one_box_hand_computed():
    """One box scoring for two classes is kept once per class; labels come back 0-based."""
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2]])  # IoU ~0.82
    # softmax of logits (log 1, log 6, log 3) / 10 -> background 0.1, class 0: 0.6, class 1: 0.3
    logits = torch.log(torch.tensor([[[1.0, 6.0, 3.0], [1.0, 2.0, 7.0]]]))
    out = SSDPostprocess(priors)((torch.zeros(1, 2, 4), logits), min_score=0.25, nms_iou=0.45, top_k=200)
    d = out[0]
    torch.testing.assert_close(d["scores"], torch.tensor([0.7, 0.6]))
    assert d["labels"].tolist() == [1, 0]  # prior 1 wins class 1, prior 0 wins class 0
    expected = box_convert(priors[[1, 0]], "cxcywh", "xyxy")
    torch.testing.assert_close(d["boxes"], expected)


def test_nothing_above_min_score(priors):
    locs = torch.zeros(2, len(priors), 4)
    scores = torch.zeros(2, len(priors), 3)
    scores[..., 0] = 20.0  # background everywhere
    out = SSDPostprocess(priors)((locs, scores), min_score=0.01, nms_iou=0.45, top_k=200)
    assert len(out) == 2
    for d in out:
        assert d["boxes"].shape == (0, 4) and d["scores"].shape == (0,) and d["labels"].shape == (0,)
        assert d["labels"].dtype == torch.int64


def test_top_k_sorted_and_sigmoid_mode(priors):
    outputs = bench.random_outputs(1, len(priors), 3, torch.Generator().manual_seed(5))
    out = SSDPostprocess(priors, score="sigmoid")(outputs, min_score=0.0, nms_iou=0.45, top_k=7)[0]
    assert len(out["scores"]) == 7
    assert torch.all(out["scores"][:-1] >= out["scores"][1:])
    # sigmoid of the class columns, background column ignored
    assert out["scores"][0] == outputs[1][0, :, 1:].sigmoid().max()


def test_a_box_scoring_exactly_min_score_is_kept():
    """min_score means "at least": the calibrated threshold is itself a detection's score."""
    boxes = torch.tensor([[[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9], [0.3, 0.0, 0.4, 0.1]]])
    scores = torch.tensor([[[0.75], [0.5], [0.25]]])
    (kept,) = multiclass_nms(boxes, scores, min_score=0.5, nms_iou=0.45, top_k=10)
    assert kept["scores"].tolist() == [0.75, 0.5]
    (kept,) = multiclass_nms(boxes, scores, min_score=0.5000001, nms_iou=0.45, top_k=10)
    assert kept["scores"].tolist() == [0.75]
