"""Tests for facedet.proposal_cache: recall worked by hand, and proposals computed once then read back."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from facedet.data.record import Record
from facedet.proposal_cache import cached_proposals, proposal_recall, proposals_path, settings_of
from facedet.selective_search import SelectiveSearchConfig


def test_recall_by_hand():
    truth = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([[0.0, 0, 4, 4]])]
    proposals = [
        # rank 0 misses both, rank 1 finds the first (IoU 0.81), rank 2 the second (IoU 1)
        torch.tensor([[50.0, 50, 60, 60], [1, 1, 10, 10], [20, 20, 30, 30]]),
        torch.zeros(0, 4),  # no proposals at all: its face is not found
    ]
    assert proposal_recall(proposals, truth, [1, 2, 3, 100]) == {1: 0.0, 2: 1 / 3, 3: 2 / 3, 100: 2 / 3}
    assert proposal_recall(proposals, truth, [3], iou_threshold=0.9) == {3: 1 / 3}  # 0.81 no longer counts


def test_recall_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="no ground-truth box"):
        proposal_recall([torch.zeros(3, 4)], [torch.zeros(0, 4)], [1])
    with pytest.raises(ValueError, match="2 proposal lists for 1 photos"):
        proposal_recall([torch.zeros(0, 4)] * 2, [torch.zeros(1, 4)], [1])


def write_photos(folder, count: int) -> list[Record]:
    records = []
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = np.kron(rng.integers(0, 256, (4, 5, 3)), np.ones((10, 10, 1))).astype(np.uint8)
        path = folder / f"photo{i}.png"
        Image.fromarray(pixels).save(path)
        records.append(Record(path, 50, 40, boxes=torch.tensor([[10.0, 10, 20, 20]])))
    return records


def test_proposals_are_computed_once_and_stored_per_settings(tmp_path):
    records = write_photos(tmp_path, 3)
    config = SelectiveSearchConfig.single()
    calls = []
    boxes, timings = cached_proposals(records[:2], "toy-val", config, keep=5, folder=tmp_path / "cache",
                                      progress=lambda done, total, s: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)] and len(boxes) == 2 and all(t["seconds"] > 0 and t["cpu_seconds"] > 0 for t in timings)
    assert all(0 < len(b) <= 5 and b.shape[1] == 4 for b in boxes)
    calls.clear()
    again, timings_again = cached_proposals(records, "toy-val", config, keep=5, folder=tmp_path / "cache",
                                            progress=lambda done, total, s: calls.append((done, total)))
    assert calls == [(1, 1)]  # only the third photo was new
    assert all(torch.equal(a, b) for a, b in zip(boxes, again[:2])) and timings_again[:2] == timings
    other = proposals_path(tmp_path / "cache", "toy-val", settings_of(replace(config, seed=1), 5))
    stored = proposals_path(tmp_path / "cache", "toy-val", settings_of(config, 5))
    assert stored.exists() and other != stored  # other settings, another file
    assert list((tmp_path / "cache").iterdir()) == [stored]


def test_bad_keep_is_refused(tmp_path):
    with pytest.raises(ValueError, match="keep must be >= 1"):
        cached_proposals(write_photos(tmp_path, 1), "toy", keep=0, folder=tmp_path)
