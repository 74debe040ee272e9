"""Tests for facedet.boxes: hand-worked values, slow loop oracles, properties, edge cases."""

import math
from collections import deque

import pytest
import torch

from facedet import boxes as boxes_module
from facedet.boxes import (
    batched_nms,
    box_area,
    box_convert,
    box_intersection,
    box_iou,
    box_iou_batched,
    clip_boxes,
    component_boxes,
    connected_components,
    decode,
    elementwise_box_ioa,
    elementwise_box_iou,
    encode,
    generalized_box_iou,
    greedy_nms_mask,
    label_components,
    nms,
    to_absolute,
    to_fractional,
)

from conftest import iou_oracle

# ---------------------------------------------------------------- slow, readable oracles


def nms_oracle(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(iou_oracle(boxes[i].tolist(), boxes[k].tolist()) <= threshold for k in keep):
            keep.append(i)
    return keep


def batched_nms_oracle(boxes, scores, labels, threshold) -> list[int]:
    keep = []
    for c in sorted(set(labels.tolist())):
        idx = [i for i in range(len(labels)) if labels[i] == c]
        keep += [idx[k] for k in nms_oracle(boxes[idx], scores[idx], threshold)]
    return sorted(keep, key=lambda i: -float(scores[i]))


def flood_fill_oracle(mask: torch.Tensor, connectivity: int) -> tuple[list[list[int]], int]:
    """Label components with a queue, numbering them in raster order of their first cell."""
    h, w = mask.shape
    grid = mask.tolist()
    labels = [[0] * w for _ in range(h)]
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    count = 0
    for r in range(h):
        for c in range(w):
            if grid[r][c] and not labels[r][c]:
                count += 1
                labels[r][c] = count
                queue = deque([(r, c)])
                while queue:
                    y, x = queue.popleft()
                    for dy, dx in steps:
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and grid[ny][nx] and not labels[ny][nx]:
                            labels[ny][nx] = count
                            queue.append((ny, nx))
    return labels, count


def components_boxes_oracle(labels: list[list[int]], count: int) -> list[list[float]]:
    boxes = []
    for k in range(1, count + 1):
        cells = [(r, c) for r, row in enumerate(labels) for c, v in enumerate(row) if v == k]
        rows = [r for r, _ in cells]
        cols = [c for _, c in cells]
        boxes.append([min(cols), min(rows), max(cols) + 1, max(rows) + 1])
    return boxes


def random_boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    """(n, 4) "xyxy" pixel boxes, crowded enough to overlap often."""
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


# ---------------------------------------------------------------- conversions


def test_box_convert_hand_values():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert box_convert(xyxy, "xyxy", "xywh").tolist() == [[10.0, 20.0, 20.0, 40.0]]
    assert box_convert(torch.tensor([[20.0, 40.0, 20.0, 40.0]]), "cxcywh", "xywh").tolist() == [
        [10.0, 20.0, 20.0, 40.0]
    ]


@pytest.mark.parametrize("fmt_a", ["xyxy", "cxcywh", "xywh"])
@pytest.mark.parametrize("fmt_b", ["xyxy", "cxcywh", "xywh"])
def test_box_convert_round_trip(fmt_a, fmt_b):
    g = torch.Generator().manual_seed(0)
    boxes = box_convert(random_boxes(20, g), "xyxy", fmt_a)
    back = box_convert(box_convert(boxes, fmt_a, fmt_b), fmt_b, fmt_a)
    torch.testing.assert_close(back, boxes)


def test_box_convert_batched_and_empty_and_bad_format():
    boxes = torch.rand(2, 3, 4)
    assert box_convert(boxes, "xyxy", "cxcywh").shape == (2, 3, 4)
    assert box_convert(torch.zeros(0, 4), "cxcywh", "xyxy").shape == (0, 4)
    with pytest.raises(ValueError, match="xywh"):
        box_convert(boxes, "xyxy", "yolo")


def test_absolute_fractional_round_trip():
    frac = torch.tensor([[0.1, 0.2, 0.5, 1.0]])
    pixels = to_absolute(frac, width=200, height=100)
    torch.testing.assert_close(pixels, torch.tensor([[20.0, 20.0, 100.0, 100.0]]))
    torch.testing.assert_close(to_fractional(pixels, 200, 100), frac)
    assert to_absolute(torch.zeros(0, 4), 10, 10).shape == (0, 4)


def test_clip_boxes():
    boxes = torch.tensor([[-5.0, 3.0, 120.0, 80.0], [10.0, -1.0, 20.0, 200.0]])
    expected = torch.tensor([[0.0, 3.0, 100.0, 50.0], [10.0, 0.0, 20.0, 50.0]])
    assert torch.equal(clip_boxes(boxes, width=100, height=50), expected)
    fractional = torch.tensor([[-0.1, 0.5, 1.2, 0.75]])
    assert clip_boxes(fractional, 1, 1).tolist() == [[0.0, 0.5, 1.0, 0.75]]


# ---------------------------------------------------------------- area and IoU


def test_box_area_hand_values_and_degenerate():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [5.0, 5.0, 4.0, 4.0]])
    assert box_area(boxes).tolist() == [6.0, 0.0, 0.0]


def test_box_iou_hand_values():
    # two 2x2 squares overlapping by one column: inter 2, union 6
    iou = box_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]]))
    torch.testing.assert_close(iou, torch.tensor([[1 / 3, 0.0]]))
    # a 1x1 box inside a 2x2 box
    torch.testing.assert_close(box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[0.0, 0, 1, 1]])), torch.tensor([[0.25]]))


def test_box_iou_matches_loop_oracle():
    g = torch.Generator().manual_seed(1)
    a, b = random_boxes(17, g), random_boxes(9, g)
    expected = torch.tensor([[iou_oracle(x, y) for y in b.tolist()] for x in a.tolist()])
    torch.testing.assert_close(box_iou(a, b), expected)


def test_box_iou_empty_identical_and_zero_area():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0]])  # second has zero area
    assert box_iou(torch.zeros(0, 4), boxes).shape == (0, 2)
    assert box_iou(boxes, torch.zeros(0, 4)).shape == (2, 0)
    iou = box_iou(boxes, boxes)
    assert torch.isfinite(iou).all()
    assert iou.tolist() == [[1.0, 0.0], [0.0, 0.0]]  # zero-area vs itself: 0, not NaN


def test_box_iou_gradient_finite_for_zero_area():
    boxes = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    box_iou(boxes, boxes).sum().backward()
    assert torch.isfinite(boxes.grad).all()


def test_box_iou_gradient_matches_finite_differences():
    # the overlap family works in place on its own intermediates; autograd must still be right
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.5, 0.2, 1.7, 2.5]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.1, 0.4, 1.2, 1.3]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(box_iou, (a, b))
    assert torch.autograd.gradcheck(elementwise_box_ioa, (a, b))


def test_box_intersection_hand_values_and_broadcast():
    # the 2x2 squares of the module docstring share a 1x2 strip; [5, 5, 6, 6] touches neither
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    assert box_intersection(a, b).tolist() == [2.0, 0.0]  # matched pairs
    assert box_intersection(a[:, None], b[None]).tolist() == [[2.0, 0.0], [0.0, 0.0]]  # every pair


def test_elementwise_box_iou_pairs_rows():
    # row by row: 2/6, a 1x1 box inside a 2x2 one (1/4), two zero-area boxes (0, not NaN)
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    torch.testing.assert_close(elementwise_box_iou(a, b), torch.tensor([1 / 3, 0.25, 0.0]))
    assert elementwise_box_iou(a, b).shape == (3,)


def test_box_iou_batched_is_box_iou_per_group_bit_for_bit():
    g = torch.Generator().manual_seed(8)
    a, b = random_boxes(3 * 40, g).view(3, 40, 4), random_boxes(3 * 30, g).view(3, 30, 4)
    a[:, :2] = a[:, :2, [2, 3, 0, 1]]  # a few inverted (zero-area) boxes too
    batched = box_iou_batched(a, b)
    assert batched.shape == (3, 40, 30)
    for i in range(3):
        assert torch.equal(batched[i], box_iou(a[i], b[i]))
        assert torch.equal(elementwise_box_iou(a[i][:, None], b[i][None]), box_iou(a[i], b[i]))
    assert box_iou_batched(torch.zeros(2, 0, 4), torch.zeros(2, 5, 4)).shape == (2, 0, 5)


def test_elementwise_box_ioa_hand_values():
    # COCO crowd rule: a 1x1 box inside a 4x4 region scores 1 (its IoU is only 1/16);
    # half of a 2x2 box inside the region scores 1/2; a zero-area box scores 0
    boxes = torch.tensor([[1.0, 1.0, 2.0, 2.0], [3.0, 0.0, 5.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    region = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    assert elementwise_box_ioa(boxes, region).tolist() == [1.0, 0.5, 0.0]
    assert elementwise_box_iou(boxes[:1], region).tolist() == [1 / 16]


def test_generalized_box_iou_hand_values():
    # apart: IoU 0, union 2, enclosing [0, 0, 3, 1] of area 3 -> 0 - (3 - 2) / 3 = -1/3
    # identical: 1; nested 1x1 in 2x2: IoU 1/4, enclosing = the 2x2 = union -> 1/4
    # side by side overlapping one column (the module's toy pair): IoU 1/3, enclosing 3x2 = 6 = union -> 1/3
    a = torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 2, 2]])
    b = torch.tensor([[2.0, 0, 3, 1], [0, 0, 1, 1], [0, 0, 2, 2], [1, 0, 3, 2]])
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([-1 / 3, 1.0, 0.25, 1 / 3]))
    # far apart on a diagonal: [0,0,1,1] vs [9,9,10,10]: enclosing 100, union 2 -> -(98/100)
    far = generalized_box_iou(torch.tensor([0.0, 0, 1, 1]), torch.tensor([9.0, 9, 10, 10]))
    assert far.item() == pytest.approx(-0.98)


def test_generalized_box_iou_properties():
    g = torch.Generator().manual_seed(11)
    a, b = random_boxes(40, g), random_boxes(40, g)
    giou = generalized_box_iou(a, b)
    iou = elementwise_box_iou(a, b)
    assert (giou <= iou + 1e-6).all() and (giou >= -1).all() and (giou <= 1).all()
    torch.testing.assert_close(giou, generalized_box_iou(b, a))  # symmetric
    # broadcasts like elementwise_box_iou: every pair of (N,) x (M,)
    assert generalized_box_iou(a[:, None], b[None, :5]).shape == (40, 5)
    # a loss 1 - GIoU has finite gradients even for boxes that do not meet
    p = torch.tensor([[0.0, 0, 1, 1]], requires_grad=True)
    (1 - generalized_box_iou(p, torch.tensor([[5.0, 5, 6, 6]]))).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_generalized_box_iou_agrees_with_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(12)
    a, b = random_boxes(30, g), random_boxes(20, g)
    torch.testing.assert_close(generalized_box_iou(a[:, None], b[None]), ops.generalized_box_iou(a, b))


# ---------------------------------------------------------------- encode / decode


def test_encode_hand_values():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.52, 0.5, 0.4, 0.2]])
    # g_cx = 0.02 / (0.2 * 0.1) = 1; g_w = log(2) / 0.2 = 5 log 2
    torch.testing.assert_close(encode(boxes, priors), torch.tensor([[1.0, 0.0, 5 * math.log(2), 0.0]]))
    torch.testing.assert_close(
        encode(boxes, priors, variances=(1.0, 1.0)), torch.tensor([[0.1, 0.0, math.log(2), 0.0]])
    )


def test_decode_inverts_encode_with_batch_dimension():
    g = torch.Generator().manual_seed(2)
    priors = box_convert(random_boxes(30, g) / 150, "xyxy", "cxcywh")  # (P, 4)
    boxes = box_convert(torch.stack([random_boxes(30, g), random_boxes(30, g)]) / 150, "xyxy", "cxcywh")  # (2, P, 4)
    for variances in [(0.1, 0.2), (1.0, 1.0)]:
        offsets = encode(boxes, priors, variances)
        assert offsets.shape == (2, 30, 4)
        torch.testing.assert_close(decode(offsets, priors, variances), boxes)
    assert torch.equal(decode(torch.zeros(1, 4), priors[:1]), priors[:1])  # zero offsets = the prior


# ---------------------------------------------------------------- NMS


def test_nms_hand_example():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.8, 0.9, 0.7])
    # box 1 wins, box 0 overlaps it by 90/110 > 0.5 and goes, box 2 is far away
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # 0.818 <= 0.9 keeps all
    assert nms(boxes, scores, 0.5).dtype == torch.int64


def test_nms_chain_is_greedy_not_pairwise():
    # A suppresses B, B would have suppressed C, but B is gone so C survives
    boxes = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_nms_matches_loop_oracle(threshold):
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        boxes, scores = random_boxes(40, g), torch.rand(40, generator=g)
        assert nms(boxes, scores, threshold).tolist() == nms_oracle(boxes, scores, threshold)


def test_nms_across_blocks_matches_loop_oracle():
    """More boxes than one NMS block (256): suppressions cross block boundaries."""
    from facedet.boxes import NMS_BLOCK

    g = torch.Generator().manual_seed(7)
    n = 2 * NMS_BLOCK + 100
    boxes, scores = random_boxes(n, g, size=400.0), torch.rand(n, generator=g)
    keep = nms(boxes, scores, 0.3)
    assert keep.tolist() == nms_oracle(boxes, scores, 0.3)
    rank = scores.argsort(descending=True).argsort()  # 0 = best score
    assert rank[keep].max() >= 2 * NMS_BLOCK and len(keep) < n / 2  # the third block keeps some, most boxes went
    labels = torch.randint(0, 2, (n,), generator=g)
    assert batched_nms(boxes, scores, labels, 0.3).tolist() == batched_nms_oracle(boxes, scores, labels, 0.3)


def test_greedy_nms_mask_chain_hand_computed():
    """Unit squares shifted by 0.25: neighbours overlap with IoU 0.6, boxes two apart with
    IoU 1/3. Greedy NMS at 0.45 keeps every other box: 0, 2, 4, 6 (box 1 is removed by
    box 0, so box 2 survives, and so on), which the one-shot "Fast NMS" would get wrong."""
    x = torch.arange(7, dtype=torch.float32) * 0.25
    boxes = torch.stack([x, torch.zeros(7), x + 1, torch.ones(7)], dim=1)
    keep = greedy_nms_mask(boxes[None], torch.ones(1, 7, dtype=torch.bool), 0.45)
    assert keep[0].tolist() == [True, False, True, False, True, False, True]
    # a padded (invalid) box suppresses nothing and is never kept
    valid = torch.tensor([[False, True, True, True, True, True, True]])
    keep = greedy_nms_mask(boxes[None], valid, 0.45)
    assert keep[0].tolist() == [False, True, False, True, False, True, False]
    # labels: class 1 = boxes 0 and 2 (IoU 1/3, both stay); class 0 = boxes 1, 3, 4, 5, 6,
    # where box 0 no longer removes box 1, so the chain keeps 1, 3, 5
    labels = torch.tensor([[1, 0, 1, 0, 0, 0, 0]])
    keep = greedy_nms_mask(boxes[None], torch.ones(1, 7, dtype=torch.bool), 0.45, labels)
    assert keep[0].tolist() == [True, True, True, True, False, True, False]


def test_greedy_nms_mask_groups_match_loop_oracle_across_blocks(monkeypatch):
    """Several groups, padding, labels and more boxes than one block: each group's answer
    is the loop's on its valid boxes."""
    monkeypatch.setattr(boxes_module, "NMS_BLOCK", 16)
    g = torch.Generator().manual_seed(10)
    boxes = torch.stack([random_boxes(70, g, size=60.0) for _ in range(3)])  # (3, 70, 4)
    valid = torch.rand(3, 70, generator=g) > 0.2
    labels = torch.randint(0, 2, (3, 70), generator=g)
    scores = torch.arange(70, 0, -1, dtype=torch.float32)  # the boxes are already in score order
    for use_labels in (False, True):
        keep = greedy_nms_mask(boxes, valid, 0.3, labels if use_labels else None)
        for i in range(3):
            idx = valid[i].nonzero().flatten()
            if use_labels:
                expected = batched_nms_oracle(boxes[i][idx], scores[idx], labels[i][idx], 0.3)
            else:
                expected = nms_oracle(boxes[i][idx], scores[idx], 0.3)
            assert keep[i].nonzero().flatten().tolist() == sorted(idx[expected].tolist())


def test_greedy_nms_mask_in_chunks_keeps_the_same_boxes(monkeypatch):
    # An untrained model sends thousands of candidates per group; the IoU tables are then built
    # a few groups at a time. Chunking must not change what is kept.
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(6, 50, 2, generator=g)
    boxes = torch.cat([xy, xy + 0.05 + 0.3 * torch.rand(6, 50, 2, generator=g)], dim=2)
    valid = torch.rand(6, 50, generator=g) > 0.2
    whole = greedy_nms_mask(boxes, valid, 0.45)
    monkeypatch.setattr(boxes_module, "MAX_IOU_ENTRIES", 2 * 50 * 50)  # two groups per chunk
    assert torch.equal(greedy_nms_mask(boxes, valid, 0.45), whole)
    monkeypatch.setattr(boxes_module, "MAX_IOU_ENTRIES", 1)  # one group per chunk
    assert torch.equal(greedy_nms_mask(boxes, valid, 0.45), whole)
    assert 0 < int(whole.sum()) < int(valid.sum())  # the case is not trivial: NMS removed some


def test_greedy_nms_mask_empty():
    assert greedy_nms_mask(torch.zeros(0, 5, 4), torch.zeros(0, 5, dtype=torch.bool), 0.5).shape == (0, 5)
    assert greedy_nms_mask(torch.zeros(3, 0, 4), torch.zeros(3, 0, dtype=torch.bool), 0.5).shape == (3, 0)


def test_nms_properties():
    g = torch.Generator().manual_seed(4)
    boxes, scores = random_boxes(60, g), torch.rand(60, generator=g)
    keep = nms(boxes, scores, 0.4)
    kept_iou = box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert (kept_iou <= 0.4).all()
    assert (scores[keep][1:] <= scores[keep][:-1]).all()  # decreasing score
    # every dropped box overlaps some kept box with a higher score
    dropped = torch.tensor(sorted(set(range(60)) - set(keep.tolist())))
    overlap = box_iou(boxes[dropped], boxes[keep]) > 0.4
    higher = scores[keep][None, :] > scores[dropped][:, None]
    assert (overlap & higher).any(dim=1).all()
    # permuting the input permutes nothing in the answer (distinct scores)
    perm = torch.randperm(60, generator=g)
    assert perm[nms(boxes[perm], scores[perm], 0.4)].tolist() == keep.tolist()


def test_nms_edge_cases():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).dtype == torch.int64
    assert nms(torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    identical = torch.tensor([[0.0, 0, 5, 5]]).repeat(4, 1)
    assert nms(identical, torch.tensor([0.1, 0.4, 0.3, 0.2]), 0.5).tolist() == [1]
    assert nms(identical, torch.tensor([0.5, 0.5, 0.5, 0.5]), 0.5).tolist() == [0]  # ties: first one
    zero_area = torch.tensor([[2.0, 2, 2, 2], [2.0, 2, 2, 2], [0.0, 0, 4, 4]])
    assert nms(zero_area, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]  # IoU 0 suppresses nothing


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_batched_nms_matches_loop_oracle(threshold):
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        boxes, scores = random_boxes(50, g), torch.rand(50, generator=g)
        labels = torch.randint(0, 3, (50,), generator=g)
        assert batched_nms(boxes, scores, labels, threshold).tolist() == batched_nms_oracle(
            boxes, scores, labels, threshold
        )


def test_batched_nms_never_suppresses_across_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10]]).repeat(3, 1)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.5).tolist() == [0, 1, 2]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    g = torch.Generator().manual_seed(6)
    boxes, scores = random_boxes(40, g), torch.rand(40, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    keep = batched_nms(boxes, scores, labels, 0.5)
    for c in range(4):  # each class alone gives the same answer as plain NMS on that class
        idx = torch.nonzero(labels == c).flatten()
        assert keep[labels[keep] == c].tolist() == idx[nms(boxes[idx], scores[idx], 0.5)].tolist()
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)


# ---------------------------------------------------------------- connected components


def test_diagonal_mask_4_vs_8_connectivity():
    mask = torch.eye(3, dtype=torch.bool)
    labels8, k8 = label_components(mask, connectivity=8)
    assert k8 == 1 and labels8.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert connected_components(mask, 8).tolist() == [[0.0, 0.0, 3.0, 3.0]]
    labels4, k4 = label_components(mask, connectivity=4)
    assert k4 == 3 and labels4.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 3]]
    assert connected_components(mask, 4).tolist() == [[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0]]
    with pytest.raises(ValueError, match="4 or 8"):
        label_components(mask, connectivity=6)


def test_touching_blobs_merge_and_separate_blobs_do_not():
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[0:2, 0:3] = True  # blob A: rows 0-1, columns 0-2
    mask[2:5, 2:4] = True  # blob B touches A along an edge
    mask[4:6, 6:8] = True  # blob C apart
    boxes = connected_components(mask, connectivity=4)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[0.0, 0.0, 4.0, 5.0], [6.0, 4.0, 8.0, 6.0]]


def test_component_numbering_and_single_cells():
    mask = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    labels, k = label_components(mask, 4)
    assert k == 2 and labels.dtype == torch.int64
    assert labels.tolist() == [[0, 0, 1], [2, 0, 0], [0, 0, 0]]  # raster order of first cell
    assert connected_components(mask, 4).tolist() == [[2.0, 0.0, 3.0, 1.0], [0.0, 1.0, 1.0, 2.0]]


@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_match_flood_fill_oracle(connectivity):
    g = torch.Generator().manual_seed(7)
    for density in (0.3, 0.5, 0.7):
        mask = torch.rand(13, 17, generator=g) < density
        labels_oracle, count = flood_fill_oracle(mask, connectivity)
        labels, k = label_components(mask, connectivity)
        assert k == count
        assert labels.tolist() == labels_oracle
        assert connected_components(mask, connectivity).tolist() == components_boxes_oracle(labels_oracle, count)


def test_components_long_snake_converges():
    mask = torch.zeros(15, 15, dtype=torch.bool)
    mask[::2, :] = True  # horizontal runs...
    for r in range(1, 15, 2):  # ...joined alternately at the right and the left end
        mask[r, 14 if r % 4 == 1 else 0] = True
    labels, k = label_components(mask, 4)
    assert k == 1 and (labels[mask] == 1).all()
    assert connected_components(mask, 4).tolist() == [[0.0, 0.0, 15.0, 15.0]]


def test_component_boxes_hand_values():
    # components 1 (two cells in row 0) and 2 (one cell at row 2, column 1) of a 3 x 3 map
    labels_map = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 2, 0]])
    assert component_boxes(labels_map, 2).tolist() == [[0.0, 0.0, 2.0, 1.0], [1.0, 2.0, 2.0, 3.0]]
    assert component_boxes(torch.zeros(3, 3, dtype=torch.int64), 0).shape == (0, 4)


def test_components_empty_and_full_masks():
    labels, k = label_components(torch.zeros(4, 5, dtype=torch.bool))
    assert k == 0 and labels.shape == (4, 5) and not labels.any()
    assert connected_components(torch.zeros(4, 5, dtype=torch.bool)).shape == (0, 4)
    assert connected_components(torch.zeros(0, 0, dtype=torch.bool)).shape == (0, 4)
    assert connected_components(torch.ones(4, 5, dtype=torch.bool)).tolist() == [[0.0, 0.0, 5.0, 4.0]]


# ---------------------------------------------------------------- torchvision agreement (skips without it)
# They run wherever torchvision imports (pip install -e ".[extras]", torchvision from the same
# index as torch); `python -m pytest -k torchvision` runs only them.


def torchvision_ops():
    """torchvision.ops, or a skip that says why: not installed, or installed for another torch
    (a CUDA torchvision beside a CPU torch fails with RuntimeError/OSError, not ImportError)."""
    try:
        import torchvision.ops
    except Exception as err:  # noqa: BLE001 - any failure to import means "not usable here"
        pytest.skip(f"torchvision does not import here ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
    return torchvision.ops


def test_agrees_with_torchvision_box_ops():
    ops = torchvision_ops()
    g = torch.Generator().manual_seed(8)
    a, b = random_boxes(30, g), random_boxes(20, g)
    torch.testing.assert_close(box_iou(a, b), ops.box_iou(a, b))
    for fmt in ("cxcywh", "xywh"):
        torch.testing.assert_close(box_convert(a, "xyxy", fmt), ops.box_convert(a, "xyxy", fmt))
        torch.testing.assert_close(box_convert(a, fmt, "xyxy"), ops.box_convert(a, fmt, "xyxy"))


def test_agrees_with_torchvision_nms():
    ops = torchvision_ops()
    g = torch.Generator().manual_seed(9)
    boxes, scores = random_boxes(80, g), torch.rand(80, generator=g)
    labels = torch.randint(0, 3, (80,), generator=g)
    for threshold in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, threshold).tolist() == ops.nms(boxes, scores, threshold).tolist()
        assert (
            batched_nms(boxes, scores, labels, threshold).tolist()
            == ops.batched_nms(boxes, scores, labels, threshold).tolist()
        )
