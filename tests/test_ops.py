"""Tests for facedet.ops: RoI pooling and RoIAlign against slow loop oracles, by hand, by gradcheck,
and against torchvision.ops where torchvision imports."""
from __future__ import annotations

import math

import pytest
import torch

from facedet.ops import roi_align, roi_pool

# ---------------------------------------------------------------- slow, readable oracles
# Written from torchvision's CPU kernels (roi_pool_kernel.cpp, roi_align_kernel.cpp), one bin at a time.


def c_round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool_oracle(x: torch.Tensor, rois: torch.Tensor, ph: int, pw: int, scale: float) -> torch.Tensor:
    _, c, h, w = x.shape
    out = torch.zeros(len(rois), c, ph, pw, dtype=x.dtype)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sw, sh, ew, eh = c_round(x1 * scale), c_round(y1 * scale), c_round(x2 * scale), c_round(y2 * scale)
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        bh, bw = rh / ph, rw / pw
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(i * bh) + sh, 0), h)
                he = min(max(math.ceil((i + 1) * bh) + sh, 0), h)
                ws = min(max(math.floor(j * bw) + sw, 0), w)
                we = min(max(math.ceil((j + 1) * bw) + sw, 0), w)
                for ch in range(c):
                    if he <= hs or we <= ws:
                        continue  # an empty bin stays 0
                    best = -math.inf
                    for yy in range(hs, he):
                        for xx in range(ws, we):
                            best = max(best, float(x[int(b), ch, yy, xx]))
                    out[k, ch, i, j] = best
    return out


def bilinear_oracle(plane: torch.Tensor, y: float, x: float) -> float:
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= h - 1:
        yl = yh = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xl = xh = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return float(hy * hx * plane[yl, xl] + hy * lx * plane[yl, xh] + ly * hx * plane[yh, xl] + ly * lx * plane[yh, xh])


def roi_align_oracle(x, rois, ph, pw, scale, sampling_ratio, aligned) -> torch.Tensor:
    _, c, h, w = x.shape
    out = torch.zeros(len(rois), c, ph, pw, dtype=x.dtype)
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sw, sh = x1 * scale - offset, y1 * scale - offset
        rw, rh = x2 * scale - offset - sw, y2 * scale - offset - sh
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for ch in range(c):
            for i in range(ph):
                for j in range(pw):
                    total = 0.0
                    for iy in range(gh):
                        yy = sh + i * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            xx = sw + j * bw + (ix + 0.5) * bw / gw
                            total += bilinear_oracle(x[int(b), ch], yy, xx)
                    out[k, ch, i, j] = total / count
    return out


def random_rois(generator: torch.Generator, k: int, n: int, size: float, spread: float) -> torch.Tensor:
    """k rois (batch, x1, y1, x2, y2) in pixels, corners drawn from [-spread, size + spread] (borders and outside)."""
    a = torch.rand(k, 2, generator=generator) * (size + 2 * spread) - spread
    b = torch.rand(k, 2, generator=generator) * (size + 2 * spread) - spread
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    batch = torch.randint(0, n, (k, 1), generator=generator).float()
    return torch.cat([batch, lo, hi], dim=1)


# ---------------------------------------------------------------- by hand: the 4 x 4 map

MAP = torch.arange(16.0).reshape(1, 1, 4, 4)  # value = 4 y + x


def test_roi_pool_by_hand_on_a_4x4_map():
    # the whole map in 2 x 2 bins: rows {0,1} / {2,3}, the same columns; the max is the bottom-right cell
    assert roi_pool(MAP, torch.tensor([[0, 0, 0, 3, 3.0]]), 2)[0, 0].tolist() == [[5, 7], [13, 15]]
    # (0.4, 0.6, 2.4, 2.5) rounds to cells x 0..2, y 1..3 (0.6 -> 1, 2.5 -> 3: halves go up):
    # 3 cells in 2 bins of 1.5: rows [1, 3) and [2, 4) overlap on row 2 (floor / ceil), same for columns
    assert roi_pool(MAP, torch.tensor([[0, 0.4, 0.6, 2.4, 2.5]]), 2)[0, 0].tolist() == [[9, 10], [13, 14]]


def test_roi_align_by_hand_on_a_4x4_map():
    # 3 cells from 0 to 3 in two bins of 1.5, 2 samples each at 0.375, 1.125 | 1.875, 2.625;
    # the map is linear, so a bin is the value at its mean sample (0.75 or 2.25 per axis)
    out = roi_align(MAP, torch.tensor([[0, 0, 0, 3, 3.0]]), 2)
    assert torch.allclose(out[0, 0], torch.tensor([[3.75, 5.25], [9.75, 11.25]]))
    # one sample per bin (sampling_ratio=1) at the bin centre 0.75 / 2.25: the same on a linear map
    assert torch.allclose(roi_align(MAP, torch.tensor([[0, 0, 0, 3, 3.0]]), 2, sampling_ratio=1), out)
    # aligned=True: the box moves by -0.5 -> samples at -0.125 (read at 0), 0.625 | 1.375, 2.125 per axis
    # bin means per axis: (0 + 0.625) / 2 = 0.3125 and (1.375 + 2.125) / 2 = 1.75
    aligned = roi_align(MAP, torch.tensor([[0, 0, 0, 3, 3.0]]), 2, aligned=True)[0, 0]
    expected = [[4 * a + b for b in (0.3125, 1.75)] for a in (0.3125, 1.75)]
    assert torch.allclose(aligned, torch.tensor(expected))


def test_quantisation_moves_roi_pool_but_not_roi_align():
    shifted = torch.tensor([[0, 0.3, 0, 3.3, 3.0]])  # 0.3 px to the right
    assert torch.equal(roi_pool(MAP, shifted, 2), roi_pool(MAP, torch.tensor([[0, 0, 0, 3, 3.0]]), 2))
    moved = roi_align(MAP, shifted, 2) - roi_align(MAP, torch.tensor([[0, 0, 0, 3, 3.0]]), 2)
    assert torch.allclose(moved, torch.full_like(moved, 0.3))  # value = 4 y + x: x moved by 0.3


# ---------------------------------------------------------------- against the oracles

@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("output_size", [(2, 2), (3, 2), (7, 7)])
def test_roi_pool_matches_the_loop_oracle(scale, output_size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 11, generator=g)
    rois = random_rois(g, 20, 2, 11 / scale, spread=3 / scale)
    expected = roi_pool_oracle(x, rois, *output_size, scale)
    assert torch.equal(roi_pool(x, rois, output_size, scale), expected)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_align_matches_the_loop_oracle(aligned, sampling_ratio, scale):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 10, generator=g, dtype=torch.float64)
    rois = random_rois(g, 20, 2, 10 / scale, spread=3 / scale).double()
    expected = roi_align_oracle(x, rois, 3, 2, scale, sampling_ratio, aligned)
    got = roi_align(x, rois, (3, 2), scale, sampling_ratio, aligned)
    assert torch.allclose(got, expected, atol=1e-10)


def test_tiny_and_empty_boxes_follow_the_border_rules():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    rois = torch.tensor([[0, 2, 2, 2, 2], [0, 3, 1, 2.5, 4], [0, -9, -9, -3, -3], [0, 6, 6, 20, 20],
                         [0, 4.9, 0, 5.4, 0.2]], dtype=torch.float64)  # a point, inverted, outside, past the end
    for aligned in (False, True):
        assert torch.allclose(roi_align(x, rois, 2, aligned=aligned),
                              roi_align_oracle(x, rois, 2, 2, 1.0, -1, aligned), atol=1e-12)
    assert torch.equal(roi_pool(x, rois, 2), roi_pool_oracle(x, rois, 2, 2, 1.0))
    assert roi_pool(x, rois[2:3], 2).abs().sum() == 0  # entirely outside: every bin empty -> 0


def test_list_of_boxes_equals_the_k_by_5_form_and_no_boxes_give_no_rows():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6, 6, generator=g)
    per_photo = [torch.tensor([[0.0, 0, 4, 4], [1, 2, 5, 3]]), torch.tensor([[2.0, 1, 6, 6]])]
    rois = torch.tensor([[0, 0.0, 0, 4, 4], [0, 1, 2, 5, 3], [1, 2, 1, 6, 6]])
    for op in (roi_pool, roi_align):
        assert torch.equal(op(x, per_photo, 2), op(x, rois, 2))
        assert op(x, torch.zeros(0, 5), (3, 2)).shape == (0, 4, 3, 2)
        assert op(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 4, 2, 2)


def test_bad_boxes_and_sizes_are_refused_with_the_expected_shape():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        roi_align(x, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match=r"boxes\[0\] must be an \(L, 4\)"):
        roi_pool(x, [torch.zeros(3, 5)], 2)
    with pytest.raises(ValueError, match=r"batch indices .* \[0, 0\]"):
        roi_pool(x, torch.tensor([[1, 0, 0, 2, 2.0]]), 2)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(x, torch.tensor([[0, 0, 0, 2, 2.0]]), 0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        roi_pool(torch.zeros(4, 4), torch.tensor([[0, 0, 0, 2, 2.0]]), 2)


# ---------------------------------------------------------------- gradients

def test_gradcheck_roi_align_and_roi_pool():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.2, 3.9], [1, -1.0, 1.5, 2.5, 6.0], [1, 2.2, 0.1, 5.9, 2.2]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 3), 1.0, -1, False), (x,))
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, 2, 0.5, 2, True), (x,))
    # random doubles have no ties, so the max is differentiable where gradcheck probes it
    assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (2, 3), 1.0), (x,))


def test_roi_pool_gradient_lands_on_each_bins_maximum():
    x = MAP.clone().requires_grad_(True)
    roi_pool(x, torch.tensor([[0, 0, 0, 3, 3.0]]), 2).sum().backward()
    expected = torch.zeros(4, 4)
    expected[1, 1] = expected[1, 3] = expected[3, 1] = expected[3, 3] = 1
    assert torch.equal(x.grad[0, 0], expected)


# ---------------------------------------------------------------- torchvision, where it imports

def _torchvision_ops():
    try:
        from torchvision import ops  # noqa: PLC0415 - optional cross-check, not a dependency
    except Exception as error:  # a broken install raises more than ImportError
        pytest.skip(f"torchvision.ops does not import here ({type(error).__name__}: {error})")
    return ops


@pytest.mark.parametrize("aligned", [False, True])
def test_against_torchvision_ops(aligned):
    ops = _torchvision_ops()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 12, 14, generator=g)
    rois = random_rois(g, 40, 2, 56.0, spread=8.0)
    assert torch.allclose(roi_align(x, rois, 7, 0.25, -1, aligned), ops.roi_align(x, rois, 7, 0.25, -1, aligned),
                          atol=1e-5)
    assert torch.allclose(roi_pool(x, rois, 7, 0.25), ops.roi_pool(x, rois, 7, 0.25))
