"""RoI operations: cut a fixed-size feature block out of a feature map for each region.

A two-stage detector runs its backbone once per photo, then looks at each proposed region
(RoI, "region of interest") through a small head that needs a fixed-size input, say 7 x 7.
These two functions cut that block, with torchvision.ops' signatures and results:

    roi_pool   Fast R-CNN (2015): the box is rounded to whole feature cells, split into
               output_size bins (their edges rounded again), and each bin keeps its maximum.
    roi_align  Mask R-CNN (2017): no rounding at all; each bin averages a few bilinear samples
               taken at fractional positions, so a box one pixel to the right gives a
               different (shifted) result instead of the same one.

`boxes` is either a (K, 5) tensor of rows (batch index, x1, y1, x2, y2) or a list with one
(L_i, 4) "xyxy" tensor per photo, in input pixels; `spatial_scale` maps them to the feature
map (1/16 for a stride-16 map). Both return (K, C, output_h, output_w).

Toy example to check by hand (tests/test_ops.py works it): on the 4 x 4 map of values 0..15
(row-major), the box (0, 0, 3, 3) at scale 1 pooled to 2 x 2 covers all 16 cells; roi_pool's
bins are rows {0, 1} / {2, 3} x the same columns, so the maxima are [[5, 7], [13, 15]].
roi_align on the same box (not aligned) splits the 3 cells from 0 to 3 into two bins of 1.5
with 2 samples each, at 0.375, 1.125 | 1.875, 2.625 along each axis; the map is linear
(value = 4 y + x), so each bin is the value at its mean sample: [[3.75, 5.25], [9.75, 11.25]].

Both are vectorised over RoIs and bins: no Python loop. Gradients flow to `input` only (as in
torchvision, not to the boxes): roi_pool's through the max, roi_align's through the bilinear
weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _pair(output_size: int | Sequence[int]) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair of them; got {output_size!r}")
    return size[0], size[1]


def rois_from_boxes(boxes: Tensor | Sequence[Tensor], num_images: int) -> Tensor:
    """(K, 5) rois (batch index, x1, y1, x2, y2) from either that tensor or a list of (L_i, 4) boxes."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes as a tensor must be (K, 5) rows (batch index, x1, y1, x2, y2); "
                             f"got shape {tuple(boxes.shape)}")
        rois = boxes
    else:
        boxes = list(boxes)
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"boxes[{i}] must be an (L, 4) 'xyxy' tensor; got {shape}")
        if not boxes:
            return torch.zeros(0, 5)
        index = torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype, device=b.device)
                           for i, b in enumerate(boxes)])
        rois = torch.cat([index, torch.cat(boxes)], dim=1)
    if len(rois):
        batch = rois[:, 0]
        if (batch != batch.round()).any() or batch.min() < 0 or batch.max() >= num_images:
            raise ValueError(f"roi batch indices must be whole numbers in [0, {num_images - 1}] "
                             f"(the input holds {num_images} maps); got {batch.unique().tolist()}")
    return rois


def _check_input(input: Tensor) -> None:
    if input.dim() != 4:
        raise ValueError(f"input must be a (N, C, H, W) feature map; got shape {tuple(input.shape)}")


def _round_half_away(values: Tensor) -> Tensor:
    """C's round(): halves go away from zero (torch.round sends them to the even neighbour)."""
    return torch.sign(values) * torch.floor(values.abs() + 0.5)


def _masked_max(values: Tensor, valid: Tensor, dim: int) -> Tensor:
    """Max of `values` over `dim` among `valid` entries (-inf where none is valid).

    amax, not max(dim): it skips the argmax indices (about 3x faster here); its gradient is
    shared equally among tied maxima, where torchvision's goes to the first one.
    """
    return values.masked_fill(~valid, float("-inf")).amax(dim=dim)


def roi_pool(input: Tensor, boxes: Tensor | Sequence[Tensor], output_size: int | Sequence[int],
             spatial_scale: float = 1.0) -> Tensor:
    """Max-pool each RoI's quantised window into output_size bins (Fast R-CNN; torchvision.ops.roi_pool).

    input (N, C, H, W); boxes (K, 5) or a list of (L_i, 4) "xyxy" in input pixels -> (K, C, PH, PW).
    Quantisation, as torchvision: each coordinate * spatial_scale is rounded (halves away from 0)
    to a cell, the end cell included (a box of 1 cell's width covers 1 cell); bin ph spans rows
    [floor(ph * h / PH), ceil((ph + 1) * h / PH)) of the window, clipped to the map; a bin
    with no cell (a box outside the map) is 0.
    The max is taken in two steps (columns of each bin, then rows), each over a gathered
    window padded to the widest bin, so memory is about K x roi rows x PW x bin width x C.
    """
    _check_input(input)
    ph_, pw_ = _pair(output_size)
    n, c, h, w = input.shape
    rois = rois_from_boxes(boxes, n).to(input.dtype).detach()
    if len(rois) == 0:
        return input.new_zeros(0, c, ph_, pw_)
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).long().unbind(1)
    roi_w = (x2 - x1 + 1).clamp(min=1)  # (K,) cells, the end cell included
    roi_h = (y2 - y1 + 1).clamp(min=1)

    def bin_edges(start: Tensor, length: Tensor, bins: int, limit: int) -> tuple[Tensor, Tensor]:
        """(K, bins) first and past-the-end cells of each bin, clipped to [0, limit]."""
        size = length.to(input.dtype)[:, None] / bins  # (K, 1) bin size in cells, fractional
        steps = torch.arange(bins, device=input.device, dtype=input.dtype)
        lo = torch.floor(steps * size).long() + start[:, None]
        hi = torch.ceil((steps + 1) * size).long() + start[:, None]
        return lo.clamp(0, limit), hi.clamp(0, limit)

    row_lo, row_hi = bin_edges(y1, roi_h, ph_, h)  # (K, PH)
    col_lo, col_hi = bin_edges(x1, roi_w, pw_, w)  # (K, PW)
    batch = rois[:, 0].long()
    features = input.permute(0, 2, 3, 1)  # (N, H, W, C): one gather picks whole channel vectors

    # step 1: per row of the RoI's window, the max over each column bin -> (K, R, PW, C)
    first_row = row_lo[:, 0]  # bins start in order, so bin 0 starts the window
    num_rows = max(int((row_hi[:, -1] - first_row).max()), 1)
    rows = (first_row[:, None] + torch.arange(num_rows, device=input.device)).clamp(max=h - 1)  # (K, R)
    bin_width = max(int((col_hi - col_lo).max()), 1)
    cols = col_lo[:, :, None] + torch.arange(bin_width, device=input.device)  # (K, PW, Lw)
    col_valid = cols < col_hi[:, :, None]
    gathered = features[batch[:, None, None, None], rows[:, :, None, None], cols.clamp(max=w - 1)[:, None]]
    col_max = _masked_max(gathered, col_valid[:, None, :, :, None], dim=3)  # (K, R, PW, C)

    # step 2: the max over each bin's rows, rows counted from the window's first -> (K, PH, PW, C)
    bin_height = max(int((row_hi - row_lo).max()), 1)
    offsets = (row_lo - first_row[:, None])[:, :, None] + torch.arange(bin_height, device=input.device)
    row_valid = offsets < (row_hi - first_row[:, None])[:, :, None]  # (K, PH, Lh)
    picked = col_max[torch.arange(len(rois), device=input.device)[:, None, None], offsets.clamp(max=num_rows - 1)]
    pooled = _masked_max(picked, row_valid[:, :, :, None, None], dim=2)  # (K, PH, PW, C)

    empty = (row_hi <= row_lo)[:, :, None] | (col_hi <= col_lo)[:, None, :]  # (K, PH, PW)
    pooled = torch.where(empty[..., None], torch.zeros_like(pooled), pooled)
    return pooled.permute(0, 3, 1, 2).contiguous()


def _bilinear_weights(start: Tensor, length: Tensor, bins: int, grid: Tensor, size: int) -> Tensor:
    """(K, bins, size): each bin's average bilinear weight on each row (or column) of the map.

    start, length (K,) the RoI along one axis in feature cells; grid (K,) samples per bin.
    Sample i of bin b sits at start + b * length / bins + (i + 0.5) * length / (bins * grid).
    torchvision's border rules: a sample below -1 or beyond `size` weighs nothing; one in
    [-1, 0] is moved to 0; one past the last cell centre (size - 1) reads the last cell.
    """
    num_samples = max(int(grid.max()), 1)
    bin_size = (length / bins)[:, None, None]  # (K, 1, 1)
    b = torch.arange(bins, device=start.device, dtype=start.dtype)[None, :, None]
    i = torch.arange(num_samples, device=start.device, dtype=start.dtype)[None, None, :]
    step = bin_size / grid.clamp(min=1).to(start.dtype)[:, None, None]
    pos = start[:, None, None] + b * bin_size + (i + 0.5) * step  # (K, bins, S)
    valid = (i < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low.to(pos.dtype))  # weight of `high`
    weight_low = (1 - frac) * valid
    weight_high = frac * valid
    matrix = start.new_zeros(len(start), bins, size)
    matrix.scatter_add_(2, low, weight_low)
    matrix.scatter_add_(2, high, weight_high)
    # average over the grid: dividing each axis by its own count is the same as dividing the
    # sum of grid_h x grid_w samples by their number (no samples: all weights are 0 anyway)
    return matrix / grid.clamp(min=1).to(start.dtype)[:, None, None]


def roi_align(input: Tensor, boxes: Tensor | Sequence[Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """Average bilinear samples in each of output_size bins per RoI (Mask R-CNN; torchvision.ops.roi_align).

    input (N, C, H, W); boxes (K, 5) or a list of (L_i, 4) "xyxy" in input pixels -> (K, C, PH, PW).
    The box * spatial_scale is used as is (no rounding). sampling_ratio > 0 takes that many
    samples per bin along each axis; -1 takes ceil(roi side / bins) per RoI and axis.
    aligned=False (the original) treats the map's cell i as the point i, and widens RoIs
    narrower than 1 cell to 1; aligned=True shifts the box by -0.5 cell so that cell i is the
    interval [i, i+1) (pixel-exact), and keeps tiny RoIs tiny.

    Why it is a product of matrices: a bilinear sample is (row weights) x (column weights), and
    its rows and columns do not depend on each other, so a bin's average over its grid of
    samples is A_y F A_x^T, with A_y (PH, H) the averaged row weights and A_x (PW, W) the column
    ones (`_bilinear_weights`). The row step runs as one matrix product over all photos' rows
    stacked (A_y placed at its photo's rows), so no per-RoI copy of the map is made.
    """
    _check_input(input)
    ph_, pw_ = _pair(output_size)
    n, c, h, w = input.shape
    rois = rois_from_boxes(boxes, n).to(input.dtype).detach()
    k = len(rois)
    if k == 0:
        return input.new_zeros(0, c, ph_, pw_)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the original RoIAlign forced at least one cell (kept for compatibility)
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.long, device=input.device)
        grid_w = grid_h
    else:  # adaptive: about one sample per feature cell; <= 0 for an empty aligned RoI -> no sample
        grid_h = torch.ceil(roi_h / ph_).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / pw_).long().clamp(min=0)
    rows = _bilinear_weights(y1, roi_h, ph_, grid_h, h)  # (K, PH, H)
    cols = _bilinear_weights(x1, roi_w, pw_, grid_w, w)  # (K, PW, W)

    # rows: put each RoI's (PH, H) block at its photo's rows of a (K, PH, N * H) matrix
    batch = rois[:, 0].long()
    placed = rows.new_zeros(k, ph_, n, h)
    placed[torch.arange(k, device=input.device), :, batch] = rows
    stacked = input.permute(0, 2, 1, 3).reshape(n * h, c * w)  # (N*H, C*W): every photo's rows
    row_mixed = (placed.reshape(k * ph_, n * h) @ stacked).reshape(k, ph_, c, w)  # (K, PH, C, W)
    return torch.einsum("kpcw,kqw->kcpq", row_mixed, cols)  # (K, C, PH, PW)
