"""Tests for facedet.segmentation (Felzenszwalb-Huttenlocher) and facedet.selective_search."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from facedet.boxes import box_iou
from facedet.segmentation import felzenszwalb, grid_edges, smooth
from facedet.selective_search import (
    RegionTable,
    SelectiveSearchConfig,
    colour_histograms,
    describe_regions,
    hierarchical_grouping,
    hierarchy_ranks,
    neighbour_pairs,
    selective_search,
    texture_histograms,
    to_colour_space,
)

# ---------------------------------------------------------------- a slow, readable oracle


def felzenszwalb_oracle(image: np.ndarray, k: float, sigma: float, min_size: int) -> np.ndarray:
    """The paper's algorithm with explicit sets of pixels (no union-find tricks): (H, W) region ids."""
    h, w = image.shape[:2]
    edges, weights = grid_edges(smooth(image, sigma))
    order = np.argsort(weights, kind="stable")
    members = {i: {i} for i in range(h * w)}
    owner = list(range(h * w))
    internal = {i: 0.0 for i in range(h * w)}

    def join(a: int, b: int, weight: float) -> None:
        members[a] |= members.pop(b)
        for m in members[a]:
            owner[m] = a
        internal[a] = weight

    for e in order:
        a, b = owner[edges[e, 0]], owner[edges[e, 1]]
        if a != b and weights[e] <= min(internal[a] + k / len(members[a]), internal[b] + k / len(members[b])):
            join(a, b, weights[e])
    for e in order:
        a, b = owner[edges[e, 0]], owner[edges[e, 1]]
        if a != b and (len(members[a]) < min_size or len(members[b]) < min_size):
            join(a, b, weights[e])
    return np.array(owner).reshape(h, w)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two label maps split the pixels the same way (whatever the numbers)."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def three_rectangles(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 60 image of three flat-colour rectangles plus Gaussian noise (sd 4), and its true regions."""
    truth = np.zeros((40, 60), dtype=np.int64)
    truth[:, 20:] = 1
    truth[20:, 20:] = 2
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)
    noise = np.random.default_rng(seed).normal(0, 4, (40, 60, 3))
    return np.clip(colours[truth] + noise, 0, 255), truth


# ---------------------------------------------------------------- segmentation


def test_grid_edges_are_the_8_neighbourhood_once():
    edges, weights = grid_edges(np.zeros((3, 4, 1)))
    # right 3 x 3, down 2 x 4, down-right 2 x 3, down-left 2 x 3
    assert len(edges) == 9 + 8 + 6 + 6 == len(weights)
    pairs = {tuple(sorted(e)) for e in edges.tolist()}
    assert len(pairs) == len(edges)
    for a, b in pairs:  # every pair really is 8-adjacent
        (ya, xa), (yb, xb) = divmod(a, 4), divmod(b, 4)
        assert max(abs(ya - yb), abs(xa - xb)) == 1
    image = np.zeros((1, 2, 3))
    image[0, 1] = [3, 4, 0]
    assert grid_edges(image)[1].tolist() == [5.0]  # Euclidean colour distance


def test_three_noisy_rectangles_give_three_segments():
    image, truth = three_rectangles()
    # without the blur the boundaries are sharp: exactly the three rectangles
    assert same_partition(felzenszwalb(image, k=100, sigma=0, min_size=20), truth)
    # the blur (sigma 0.8) turns each boundary into a 1-2 pixel band of in-between colours,
    # which is a thin region of its own (118 px here) unless min_size hands it to a neighbour
    labels = felzenszwalb(image, k=100, sigma=0.8, min_size=150)
    assert labels.max() + 1 == 3
    majority = [np.bincount(labels[truth == i]).argmax() for i in range(3)]
    assert sorted(majority) == [0, 1, 2]
    assert all((labels[truth == i] == majority[i]).mean() > 0.9 for i in range(3))


@pytest.mark.parametrize("k, min_size", [(50, 5), (100, 20), (300, 0)])
def test_felzenszwalb_matches_the_set_based_oracle(k, min_size):
    rng = np.random.default_rng(1)
    # blocks of random colour, upsampled, plus noise: boundaries of every strength
    image = np.kron(rng.uniform(0, 255, (5, 6, 3)), np.ones((6, 6, 1))) + rng.normal(0, 10, (30, 36, 3))
    labels = felzenszwalb(image, k=k, sigma=0.8, min_size=min_size)
    assert same_partition(labels, felzenszwalb_oracle(image, k, 0.8, min_size))
    assert sorted(np.unique(labels).tolist()) == list(range(labels.max() + 1))  # 0..R-1, no gaps


def test_larger_k_gives_fewer_regions_and_min_size_is_respected():
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (30, 30, 3))
    counts = [felzenszwalb(image, k=k, min_size=0).max() + 1 for k in (10, 100, 1000)]
    assert counts[0] > counts[1] > counts[2]
    labels = felzenszwalb(image, k=10, min_size=15)
    assert np.bincount(labels.ravel()).min() >= 15


def test_segmentation_of_tiny_and_flat_images():
    assert felzenszwalb(np.zeros((1, 1, 3))).tolist() == [[0]]
    assert (felzenszwalb(np.full((7, 5, 1), 90.0)) == 0).all()  # one grey channel, flat: one region
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        felzenszwalb(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="k >= 0"):
        felzenszwalb(np.zeros((4, 4, 3)), k=-1)


def test_against_scikit_image_where_installed():
    segmentation = pytest.importorskip("skimage.segmentation", reason="scikit-image is not installed (optional check)")
    rng = np.random.default_rng(3)
    blocks = np.kron(rng.uniform(0, 255, (8, 10, 3)), np.ones((8, 8, 1))) + rng.normal(0, 12, (64, 80, 3))
    for image in (three_rectangles(seed=3)[0], blocks):
        pixels = np.clip(image, 0, 255).astype(np.uint8)  # skimage takes 0-255 uint8 as k's scale
        for k, min_size in ((50, 20), (100, 20), (300, 50)):
            theirs = segmentation.felzenszwalb(pixels, scale=k, sigma=0.8, min_size=min_size)
            assert same_partition(theirs, felzenszwalb(pixels.astype(np.float64), k=k, sigma=0.8, min_size=min_size))


# ---------------------------------------------------------------- descriptors and grouping


def stripes(widths: list[int], height: int = 4) -> np.ndarray:
    """Labels (height, sum(widths)): vertical stripes 0, 1, 2, ... of the given widths."""
    return np.repeat(np.arange(len(widths)), widths)[None].repeat(height, axis=0)


def test_histograms_are_l1_normalised_and_count_the_right_bins():
    labels = stripes([2, 2])
    image = np.zeros((4, 4, 3))
    image[:, 2:] = 255  # region 1 white: bin 24 of each channel
    colour = colour_histograms(image, labels, 2)
    assert colour.shape == (2, 75) and np.allclose(colour.sum(axis=1), 1)
    assert np.allclose(colour[0, [0, 25, 50]], 1 / 3) and np.allclose(colour[1, [24, 49, 74]], 1 / 3)
    texture = texture_histograms(image, labels, 2)
    assert texture.shape == (2, 240) and np.allclose(texture.sum(axis=1), 1)
    assert neighbour_pairs(stripes([1, 1, 1])).tolist() == [[0, 1], [1, 2]]


def test_size_only_grouping_order_worked_by_hand():
    # stripes of 1, 2, 3, 4 columns (x 4 rows: sizes 4, 8, 12, 16 of 40 pixels); size similarity
    # 1 - (a + b) / 40 prefers the smallest pair: (0, 1) -> region 4 (12 px); then 4 + 2 (24 px)
    # beats 2 + 3 (28 px) -> region 5; then 5 + 3 -> region 6, the whole image
    start = describe_regions(np.zeros((4, 10, 3)), stripes([1, 2, 3, 4]))
    boxes, merges = hierarchical_grouping(start, ("size",))
    assert merges == [(0, 1), (2, 4), (3, 5)]
    assert boxes.tolist() == [[0, 0, 1, 4], [1, 0, 3, 4], [3, 0, 6, 4], [6, 0, 10, 4],
                              [0, 0, 3, 4], [0, 0, 6, 4], [0, 0, 10, 4]]


def test_colour_grouping_order_worked_by_hand():
    # three stripes of 4 columns: all dark | 3 dark columns + 1 bright | all bright.
    # colour intersection: (0, 1) = 3/4, (1, 2) = 1/4, so 0 and 1 merge first; the union's
    # histogram is 7/8 dark, 1/8 bright (size-weighted), and meets region 2 at 1/8.
    image = np.zeros((4, 12, 3))
    image[:, 7:] = 250
    start = describe_regions(image, stripes([4, 4, 4]))
    table = RegionTable(start.boxes, start.sizes, start.colour, start.texture, start.pairs)
    assert np.allclose(table.similarity(np.array([0, 1]), np.array([1, 2]), ("colour",)), [0.75, 0.25])
    boxes, merges = hierarchical_grouping(start, ("colour",))
    assert merges == [(0, 1), (2, 3)]
    t = table.merge(0, 1)
    assert np.isclose(table.similarity(np.array([t]), np.array([2]), ("colour",))[0], 1 / 8)


def test_a_merged_regions_histograms_equal_the_unions_measured_afresh():
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (6, 9, 3))
    labels = stripes([2, 3, 4], height=6)
    table = RegionTable(*describe_regions(image, labels))
    t = table.merge(1, 2)
    fused = np.where(labels == 2, 1, labels)
    assert np.allclose(table.colour[t], colour_histograms(image, fused, 2)[1])
    assert np.allclose(table.texture[t], texture_histograms(image, fused, 2)[1])
    assert table.boxes[t].tolist() == [2, 0, 9, 6] and table.sizes[t] == 42
    assert table.neighbours[t] == {0} and table.neighbours[0] == {t}


def test_fill_prefers_regions_that_fill_each_others_box():
    # a 6 x 6 image: region 0 the left column, region 1 an L (the bottom row minus its first
    # cell), region 2 the rest (a 5 x 5 block). 2 sits in the hole of 1's box: merging them
    # wastes no box area, merging 0 + 1 leaves the 5 x 5 block empty in their box.
    labels = np.full((6, 6), 2)
    labels[:, 0] = 0
    labels[5, 1:] = 1
    table = RegionTable(*describe_regions(np.zeros((6, 6, 3)), labels))
    fill = table.similarity(np.array([0, 1]), np.array([1, 2]), ("fill",))
    assert np.allclose(fill, [1 - 25 / 36, 1 - (30 - 5 - 25) / 36])


def test_hierarchy_ranks_are_position_times_a_random_number():
    ranks = hierarchy_ranks(5, np.random.default_rng(0))
    draws = np.random.default_rng(0).random(5)
    assert np.allclose(ranks, np.array([5, 4, 3, 2, 1]) * draws)


# ---------------------------------------------------------------- the whole pipeline


def square_scene(seed: int = 5) -> tuple[np.ndarray, torch.Tensor]:
    """A 120 x 160 noisy textured background with one flat red 40 x 40 square at (70, 30)."""
    rng = np.random.default_rng(seed)
    image = np.kron(rng.uniform(60, 160, (12, 16, 3)), np.ones((10, 10, 1))) + rng.normal(0, 6, (120, 160, 3))
    image[30:70, 70:110] = [230, 20, 20]
    return np.clip(image, 0, 255).astype(np.uint8), torch.tensor([[70.0, 30, 110, 70]])


@pytest.mark.parametrize("max_side", [160, 80])
def test_proposals_cover_a_square_object(max_side):
    image, square = square_scene()
    boxes = selective_search(image, SelectiveSearchConfig(max_side=max_side))
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert box_iou(boxes, square).max() >= 0.9
    assert len(torch.unique(boxes, dim=0)) == len(boxes)  # duplicates were removed
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes[:, 2].max() <= 160 and boxes[:, 3].max() <= 120
    assert [0, 0, 160, 120] in boxes.tolist()  # the last level: the whole photo


def test_more_strategies_give_more_proposals_and_the_seed_only_reorders():
    image, _ = square_scene(seed=6)
    fast = selective_search(image, SelectiveSearchConfig(max_side=100))
    single = selective_search(image, replace(SelectiveSearchConfig.single(), max_side=100))
    assert len(fast) > len(single)
    again = selective_search(image, SelectiveSearchConfig(max_side=100))
    assert torch.equal(fast, again)  # deterministic for a seed
    other = selective_search(image, SelectiveSearchConfig(max_side=100, seed=1))
    assert not torch.equal(fast, other)
    assert set(map(tuple, fast.tolist())) == set(map(tuple, other.tolist()))


def test_colour_spaces_keep_the_0_255_range():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    rgb[0, 0] = [255, 255, 255]
    rgb[0, 1] = [0, 0, 0]
    for space in ("rgb", "hsv", "lab"):
        out = to_colour_space(rgb, space)
        assert out.shape == (10, 10, 3) and out.min() >= 0 and out.max() <= 255
    lab = to_colour_space(rgb, "lab")
    assert np.allclose(lab[0, 0], [255, 128, 128], atol=1.0) and np.allclose(lab[0, 1], [0, 128, 128], atol=1e-6)
    assert np.allclose(to_colour_space(np.array([[[255, 0, 0]]], dtype=np.uint8), "hsv"), [[[0, 255, 255]]])


def test_bad_and_degenerate_photos():
    assert selective_search(np.zeros((1, 1, 3), dtype=np.uint8)).tolist() == [[0, 0, 1, 1]]
    grey = np.full((9, 12), 128, dtype=np.uint8)  # a grey (H, W) photo: one flat region
    assert selective_search(grey).tolist() == [[0, 0, 12, 9]]
    with pytest.raises(ValueError, match=r"RGB image \(H, W, 3\)"):
        selective_search(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        selective_search(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="colour space 'xyz'"):
        SelectiveSearchConfig(colour_spaces=("xyz",))
    with pytest.raises(ValueError, match="similarity set"):
        SelectiveSearchConfig(similarities=(("shape",),))
