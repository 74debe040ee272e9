"""Tests for facedet.data.transforms: boxes must follow the pixels through every transform.

The main trick: paint a white rectangle on black at the box, transform, and check that the
box still matches the white pixels. For the crop, pixel values encode their own coordinates,
so the crop window can be read back from the output.
"""

import math

import pytest
import torch

from facedet.data.transforms import (
    Compose,
    Normalize,
    PhotometricDistort,
    RandomHorizontalFlip,
    RandomMinIoUCrop,
    RandomZoomOut,
    Resize,
    ToFractional,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    eval_transforms,
    hsv_to_rgb,
    rgb_to_hsv,
    train_transforms,
)
from facedet.errors import ConfigError

from conftest import iou_oracle

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# ---------------------------------------------------------------- helpers and oracles


def make_target(boxes, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    labels = torch.arange(n) if labels is None else torch.tensor(labels)
    return {"boxes": boxes, "labels": labels, "difficult": labels % 2 == 0}


def painted(h, w, box):
    """Black (3, h, w) image with a white rectangle covering the integer box [x1, y1, x2, y2)."""
    image = torch.zeros(3, h, w)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 1.0
    return image


def white_bbox(image):
    """[x1, y1, x2, y2] (pixel edges) of the pixels brighter than 0.5, or None."""
    mask = image.mean(0) > 0.5
    if not mask.any():
        return None
    ys = mask.any(1).nonzero()[:, 0]
    xs = mask.any(0).nonzero()[:, 0]
    return torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)


def assert_box_on_pixels(image, boxes, tol=1.0):
    assert len(boxes) == 1
    found = white_bbox(image)
    assert found is not None
    assert torch.allclose(boxes[0], found, atol=tol), (boxes[0], found)


def coordinate_image(h, w):
    """(3, h, w) where channel 0 holds x / w and channel 1 holds y / h: a crop reveals its window."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([xs / w, ys / h, torch.zeros(h, w)])


# ---------------------------------------------------------------- flip


def test_flip_hand_values_and_pixels():
    image = painted(50, 100, (10, 20, 30, 40))
    out, target = RandomHorizontalFlip(p=1.0)(image, make_target([[10, 20, 30, 40]]))
    assert target["boxes"].tolist() == [[70.0, 20.0, 90.0, 40.0]]  # x' = 100 - x
    assert_box_on_pixels(out, target["boxes"], tol=0)


def test_flip_p0_is_identity_and_p1_twice_is_identity():
    image, target = torch.rand(3, 8, 12), make_target([[1, 2, 5, 7], [0, 0, 12, 8]])
    same, t0 = RandomHorizontalFlip(p=0.0)(image, target)
    assert same is image and torch.equal(t0["boxes"], target["boxes"])
    flip = RandomHorizontalFlip(p=1.0)
    back, t2 = flip(*flip(image, target))
    assert torch.equal(back, image) and torch.equal(t2["boxes"], target["boxes"])


# ---------------------------------------------------------------- resize


def test_resize_hand_values_and_pixels():
    image = painted(60, 80, (20, 15, 60, 45))
    out, target = Resize((120, 40))(image, make_target([[20, 15, 60, 45]]))
    assert out.shape == (3, 120, 40)
    # x scaled by 40/80 = 0.5, y by 120/60 = 2
    assert torch.allclose(target["boxes"], torch.tensor([[10.0, 30.0, 30.0, 90.0]]))
    assert_box_on_pixels(out, target["boxes"])


def test_the_one_resize_averages_when_it_shrinks():
    """Antialiased bilinear: halving a row gives each output pixel the triangle-weighted mean of
    four input pixels, weights (1/8, 3/8, 3/8, 1/8); one bright pixel (x = 3 of 8) therefore
    reaches two outputs, 3/8 and 1/8 (plain bilinear would read only pixels 2 and 3: 1/2, then 0)."""
    from facedet.data.transforms import resize_image

    row = torch.zeros(1, 1, 8)
    row[..., 3] = 1.0
    assert resize_image(row, (1, 4)).flatten().tolist() == [0.0, 0.375, 0.125, 0.0]


def test_resize_int_is_square_and_keeps_range():
    out, _ = Resize(33)(torch.rand(3, 100, 70), make_target([]))
    assert out.shape == (3, 33, 33)
    assert out.min() >= 0 and out.max() <= 1


# ---------------------------------------------------------------- zoom-out


def test_zoom_out_keeps_box_on_pixels_and_fills_canvas():
    g = torch.Generator().manual_seed(0)
    zoom = RandomZoomOut(p=1.0, max_scale=4.0, fill=(0.25, 0.25, 0.25), generator=g)
    sizes = set()
    for _ in range(20):
        image = painted(30, 40, (5, 10, 25, 20))
        out, target = zoom(image, make_target([[5, 10, 25, 20]]))
        h, w = out.shape[-2:]
        assert 30 <= h <= 120 and 40 <= w <= 160
        sizes.add((h, w))
        assert_box_on_pixels(out, target["boxes"], tol=0)
        # the canvas outside the pasted image is the fill
        x1, y1 = (target["boxes"][0, :2] - torch.tensor([5.0, 10.0])).long().tolist()
        canvas = out.clone()
        canvas[:, y1 : y1 + 30, x1 : x1 + 40] = 0.25
        assert torch.all(canvas == 0.25)
    assert len(sizes) > 1


def test_zoom_out_p0_is_identity():
    image, target = torch.rand(3, 10, 10), make_target([[1, 1, 4, 4]])
    out, t = RandomZoomOut(p=0.0)(image, target)
    assert out is image and t is target


# ---------------------------------------------------------------- min-IoU crop


def crop_window(original_hw, out):
    """[x1, y1, x2, y2] of the crop, read back from a coordinate image."""
    h, w = original_hw
    x1 = round(out[0, 0, 0].item() * w)
    y1 = round(out[1, 0, 0].item() * h)
    return [x1, y1, x1 + out.shape[-1], y1 + out.shape[-2]]


BOXES = [[10, 10, 40, 50], [50, 20, 90, 60], [5, 60, 30, 95], [70, 70, 100, 100], [45, 45, 55, 55]]


@pytest.mark.parametrize("min_iou", [0.0, 0.3, 0.7])
def test_min_iou_crop_matches_loop_oracle(min_iou):
    h, w = 100, 110
    image = coordinate_image(h, w)
    crop = RandomMinIoUCrop(min_ious=(min_iou,), generator=torch.Generator().manual_seed(1))
    for _ in range(30):
        target = make_target(BOXES)
        out, result = crop(image, target)
        win = crop_window((h, w), out)
        cw, ch = win[2] - win[0], win[3] - win[1]
        assert 0.3 * w - 1 <= cw <= w and 0.3 * h - 1 <= ch <= h
        assert 0.5 <= ch / cw <= 2
        assert max(iou_oracle(win, b) for b in BOXES) >= min_iou - 1e-6
        expected_boxes, expected_labels = [], []
        for i, b in enumerate(BOXES):
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            if win[0] < cx < win[2] and win[1] < cy < win[3]:
                clipped = [max(b[0], win[0]), max(b[1], win[1]), min(b[2], win[2]), min(b[3], win[3])]
                expected_boxes.append([clipped[0] - win[0], clipped[1] - win[1], clipped[2] - win[0], clipped[3] - win[1]])
                expected_labels.append(i)
        assert expected_labels, "the crop must keep at least one box"
        assert result["labels"].tolist() == expected_labels
        assert result["difficult"].tolist() == [i % 2 == 0 for i in expected_labels]
        assert torch.allclose(result["boxes"], torch.tensor(expected_boxes, dtype=torch.float32))


def test_min_iou_crop_none_keeps_the_image():
    image, target = torch.rand(3, 20, 20), make_target([[1, 1, 5, 5]])
    out, result = RandomMinIoUCrop(min_ious=(None,))(image, target)
    assert out is image and result is target


def test_min_iou_crop_keeps_box_on_pixels():
    crop = RandomMinIoUCrop(generator=torch.Generator().manual_seed(3))
    for _ in range(30):
        image = painted(80, 80, (20, 30, 60, 50))
        out, target = crop(image, make_target([[20, 30, 60, 50]]))
        assert_box_on_pixels(out, target["boxes"], tol=0)


def test_min_iou_crop_gives_up_when_nothing_fits():
    # a 2 x 2 box in a 100 x 100 image never reaches IoU 0.9 with a crop of side >= 30
    image, target = torch.rand(3, 100, 100), make_target([[10, 10, 12, 12]])
    out, result = RandomMinIoUCrop(min_ious=(0.9,), max_rounds=3)(image, target)
    assert out is image and result is target


def test_min_iou_crop_without_boxes_still_crops():
    crop = RandomMinIoUCrop(min_ious=(0.9,), generator=torch.Generator().manual_seed(0))
    out, target = crop(torch.rand(3, 50, 60), make_target([]))
    assert out.shape[-2:] != (50, 60) and target["boxes"].shape == (0, 4)


# ---------------------------------------------------------------- colour


def test_hsv_round_trip_and_hand_values():
    image = torch.rand(3, 16, 16)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    assert torch.allclose(rgb_to_hsv(red).flatten(), torch.tensor([0.0, 1.0, 1.0]))
    assert torch.allclose(adjust_hue(red, 1 / 3).flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # red -> green
    assert torch.allclose(adjust_hue(red, -1 / 3).flatten(), torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)  # red -> blue
    grey = torch.full((3, 2, 2), 0.4)
    assert torch.allclose(adjust_hue(grey, 0.25), grey)  # no hue to turn


def test_colour_adjustments_hand_values():
    image = torch.tensor([0.2, 0.6, 1.0]).reshape(3, 1, 1)
    assert torch.allclose(adjust_brightness(image, 2.0).flatten(), torch.tensor([0.4, 1.0, 1.0]))  # clamped
    luma = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0
    assert torch.allclose(adjust_saturation(image, 0.0).flatten(), torch.full((3,), luma))
    assert torch.allclose(adjust_contrast(image, 0.0).flatten(), torch.full((3,), luma))
    assert torch.allclose(adjust_contrast(image, 1.0), image)


def test_photometric_stays_in_range_and_leaves_boxes():
    g = torch.Generator().manual_seed(0)
    distort = PhotometricDistort(p=1.0, brightness=(0.1, 3.0), contrast=(0.1, 3.0), saturation=(0.0, 3.0), generator=g)
    target = make_target([[1, 2, 3, 4]])
    changed = 0
    for _ in range(20):
        image = torch.rand(3, 12, 12)
        out, t = distort(image, target)
        assert out.min() >= 0 and out.max() <= 1
        assert t["boxes"] is target["boxes"]
        changed += not torch.allclose(out, image)
    assert changed == 20


# ---------------------------------------------------------------- end of the pixel stage


def test_to_fractional_and_normalize_hand_values():
    _, target = ToFractional()(torch.zeros(3, 50, 200), make_target([[20, 10, 100, 50], [-5, 0, 250, 25]]))
    assert torch.allclose(target["boxes"], torch.tensor([[0.1, 0.2, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]]))
    out, _ = Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))(torch.ones(3, 1, 1), {})
    assert out.flatten().tolist() == [2.0, 1.0, 0.5]


# ---------------------------------------------------------------- whole pipelines


def test_geometric_chain_keeps_box_on_pixels():
    g = torch.Generator().manual_seed(5)
    chain = Compose([
        RandomZoomOut(p=0.5, fill=0.0, generator=g),
        RandomMinIoUCrop(generator=g),
        RandomHorizontalFlip(generator=g),
        Resize(64),
    ])
    for _ in range(25):
        out, target = chain(painted(40, 40, (8, 10, 30, 34)), make_target([[8, 10, 30, 34]]))
        assert out.shape == (3, 64, 64)
        assert_box_on_pixels(out, target["boxes"], tol=1.0)


@pytest.mark.parametrize("augment", ["none", "flip", "ssd", "face"])
def test_train_transforms_outputs_contract(augment):
    pipeline = train_transforms(48, MEAN, STD, augment, generator=torch.Generator().manual_seed(0))
    for _ in range(10):
        out, target = pipeline(torch.rand(3, 60, 90), make_target(BOXES))
        assert out.shape == (3, 48, 48) and out.dtype == torch.float32
        boxes = target["boxes"]
        assert boxes.min() >= 0 and boxes.max() <= 1
        assert len(boxes) == len(target["labels"]) == len(target["difficult"]) >= 1
        assert target["difficult"].tolist() == [i % 2 == 0 for i in target["labels"].tolist()]


def test_eval_transforms_hand_values():
    out, target = eval_transforms((30, 40), (0.0, 0.0, 0.0), (0.5, 0.5, 0.5))(
        torch.full((3, 60, 80), 0.25), make_target([[8, 6, 40, 30]])
    )
    assert out.shape == (3, 30, 40) and torch.allclose(out, torch.full_like(out, 0.5))
    assert torch.allclose(target["boxes"], torch.tensor([[0.1, 0.1, 0.5, 0.5]]))


def test_unknown_augment_is_refused():
    with pytest.raises(ConfigError, match="none, flip, ssd"):
        train_transforms(300, MEAN, STD, "mosaic")


def test_seeded_generator_and_global_seed_are_deterministic():
    image = torch.rand(3, 64, 80)
    runs = []
    for _ in range(2):
        pipeline = train_transforms(32, MEAN, STD, "ssd", generator=torch.Generator().manual_seed(7))
        runs.append([pipeline(image, make_target(BOXES)) for _ in range(5)])
    for (a, ta), (b, tb) in zip(*runs):
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    # the five outputs of one run are not all the same
    assert any(not torch.equal(runs[0][0][0], out) for out, _ in runs[0][1:])

    pipeline = train_transforms(32, MEAN, STD, "ssd")  # torch's global RNG
    torch.manual_seed(11)
    first = pipeline(image, make_target(BOXES))
    torch.manual_seed(11)
    second = pipeline(image, make_target(BOXES))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1]["boxes"], second[1]["boxes"])


def test_empty_targets_pass_every_transform():
    g = torch.Generator().manual_seed(0)
    transforms = [
        Resize(20), RandomHorizontalFlip(1.0, g), PhotometricDistort(p=1.0, generator=g),
        RandomZoomOut(1.0, generator=g), RandomMinIoUCrop(generator=g), ToFractional(), Normalize(MEAN, STD),
        train_transforms(24, MEAN, STD, "ssd", generator=g), eval_transforms(24, MEAN, STD),
    ]
    for t in transforms:
        for _ in range(5):
            out, target = t(torch.rand(3, 30, 40), make_target([]))
            assert out.dim() == 3 and torch.isfinite(out).all(), t
            assert target["boxes"].shape == (0, 4), t
            assert target["labels"].shape == (0,) and target["difficult"].shape == (0,), t


def test_untouched_keys_pass_through():
    target = {**make_target([[1, 1, 5, 5]]), "path": "x.jpg", "image_id": 3}
    _, out = train_transforms(16, MEAN, STD, "ssd", generator=torch.Generator().manual_seed(0))(torch.rand(3, 20, 20), target)
    assert out["path"] == "x.jpg" and out["image_id"] == 3
    assert not math.isnan(out["boxes"].sum().item())


# ---------------------------------------------------------------- the face recipe


def test_square_crop_is_square_keeps_box_on_pixels_and_centres_inside():
    from facedet.data.transforms import RandomSquareCrop

    g = torch.Generator().manual_seed(3)
    image = painted(120, 200, (60, 30, 90, 70))
    target = make_target([[60, 30, 90, 70]])
    sides = set()
    for _ in range(40):
        out, t = RandomSquareCrop(0.3, 1.0, generator=g)(image, target)
        h, w = out.shape[-2:]
        assert h == w and 0.3 * 120 - 1 <= h <= 120
        sides.add(h)
        assert len(t["boxes"]) == 1  # the only face's centre is always inside the accepted crop
        box = t["boxes"][0]
        white = white_bbox(out)
        assert white is not None and torch.allclose(box, white)
    assert len(sides) > 10  # the side really varies


def test_square_crop_drops_faces_whose_centres_fall_outside():
    from facedet.data.transforms import RandomSquareCrop

    g = torch.Generator().manual_seed(0)
    image = torch.zeros(3, 100, 400)
    target = make_target([[10, 10, 30, 30], [370, 60, 390, 80]])  # left and right ends of a wide photo
    cropped = 0
    for _ in range(40):
        out, t = RandomSquareCrop(0.3, 1.0, generator=g)(image, target)
        if out.shape[-1] == 400:  # no drawn square held a face centre: the photo is kept whole
            assert len(t["boxes"]) == 2
            continue
        cropped += 1
        # a square of at most 100 px cannot hold both centres (360 px apart): one face stays
        assert out.shape[-1] == out.shape[-2] <= 100 and len(t["boxes"]) == 1
        assert t["labels"].tolist() in ([0], [1]) and t["difficult"].tolist() == [t["labels"].item() % 2 == 0]
    assert cropped > 20


def test_square_crop_without_boxes_still_crops_square():
    from facedet.data.transforms import RandomSquareCrop

    out, t = RandomSquareCrop(generator=torch.Generator().manual_seed(1))(torch.zeros(3, 50, 80), make_target([]))
    assert out.shape[-1] == out.shape[-2] <= 50 and len(t["boxes"]) == 0


def test_square_crop_keeps_a_mostly_visible_face_whole_and_makes_a_cut_one_background():
    """min_visible: a face with at least that share of its area inside stays whole (reaching past
    the crop, in the crop's pixels); a face less visible is dropped, never clipped into a "face"."""
    from facedet.data.transforms import RandomSquareCrop

    crop = RandomSquareCrop(min_visible=0.5)
    crops = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    # a 120 px face, 100 x 100 of it inside (0.69); the same face 100 x 40 inside (0.28)
    boxes = torch.tensor([[-10.0, -10.0, 110.0, 110.0], [-10.0, 60.0, 110.0, 180.0]])
    assert crop.kept(crops, boxes).tolist() == [[True, False]]
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(3, 300, 300)
    big = make_target([[40, 40, 260, 260]])  # a 220 px face on a 300 px photo
    seen_larger_than_crop = 0
    for _ in range(40):
        out, t = RandomSquareCrop(0.3, 1.0, min_visible=0.5, generator=g)(image, big)
        side = out.shape[-1]
        if len(t["boxes"]) == 1:
            box = t["boxes"][0]
            assert torch.allclose(box[2:] - box[:2], torch.tensor([220.0, 220.0]))  # whole, never clipped
            seen_larger_than_crop += bool(side < 220)
    assert seen_larger_than_crop > 0  # the face overflowed the crop and was still a face
    out, t = RandomSquareCrop(0.3, 1.0, generator=torch.Generator().manual_seed(0))(image, big)
    assert (t["boxes"] >= 0).all() and (t["boxes"] <= out.shape[-1]).all()  # the default rule clips


def test_close_up_crops_frame_one_big_face_to_fill_half_to_more_than_the_crop():
    from facedet.data.transforms import RandomSquareCrop

    g = torch.Generator().manual_seed(0)
    image = torch.zeros(3, 600, 800)
    target = make_target([[300, 200, 420, 320], [20, 20, 50, 50]])  # a 120 px face and a 30 px one
    crop = RandomSquareCrop(0.3, 1.0, min_visible=0.5, close_up=1.0, generator=g)
    fills = []
    for _ in range(30):
        framed = crop.close_up_crop(target["boxes"], 800, 600)[0]
        side = float(framed[2] - framed[0])
        assert side == float(framed[3] - framed[1]) and 0 <= framed[0] and framed[2] <= 800
        fills.append(120 / side)
        centre = (360 - float(framed[0])) / side  # where the face's centre lies across the crop
        assert 0.25 - 1e-6 <= centre <= 0.75 + 1e-6
        out, t = crop(image, target)
        assert len(t["boxes"]) >= 1  # a crop always keeps a face
    assert min(fills) >= 0.5 - 0.01 and max(fills) <= 1.4 + 0.05 and max(fills) > 1.0  # it overflows, sometimes
    small = make_target([[20, 20, 50, 50]])  # no face of 60 px or more: no close-up
    assert len(crop.close_up_crop(small["boxes"], 800, 600)) == 0
    with pytest.raises(ConfigError, match="close_up"):
        RandomSquareCrop(close_up=2.0)


def test_whole_faces_stay_whole_through_the_face_recipe():
    from facedet.data.transforms import ToFractional, train_transforms

    image, target = torch.zeros(3, 10, 20), make_target([[-5, 0, 10, 10]])
    assert ToFractional()(image, target)[1]["boxes"][0, 0] == 0  # clipped by default
    assert ToFractional(clip=False)(image, target)[1]["boxes"][0, 0] == -0.25
    whole = train_transforms(64, (0, 0, 0), (1, 1, 1), "face", face_min_visible=0.5)
    assert "min_visible=0.5" in repr(whole) and "ToFractional(clip=False)" in repr(whole)
    assert "ToFractional()" in repr(train_transforms(64, (0, 0, 0), (1, 1, 1), "face"))
    with pytest.raises(ConfigError, match="min_visible"):
        train_transforms(64, (0, 0, 0), (1, 1, 1), "face", face_min_visible=1.5)


def test_drop_small_boxes_by_their_shorter_side():
    from facedet.data.transforms import DropSmallBoxes

    target = make_target([[0, 0, 4, 40], [0, 0, 5, 5], [10, 10, 40, 14.9]])
    _, t = DropSmallBoxes(5)(torch.zeros(3, 50, 50), target)
    assert t["boxes"].tolist() == [[0, 0, 5, 5]] and t["labels"].tolist() == [1]


def test_random_grayscale_gives_three_equal_channels_of_luma():
    from facedet.data.transforms import RandomGrayscale, grayscale

    image = torch.rand(3, 8, 9)
    out, _ = RandomGrayscale(p=1.0)(image, make_target([]))
    assert out.shape == image.shape
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2])
    assert torch.allclose(out[0], grayscale(image)[0])
    same, _ = RandomGrayscale(p=0.0)(image, make_target([]))
    assert same is image


def test_face_recipe_puts_many_faces_in_the_small_range():
    """The point of the recipe: a 60 px face in a 300 x 200 photo (a typical web photo) lands
    at 10-40 px of the 320 input in a good share of the draws, and at 100+ px in others."""
    g = torch.Generator().manual_seed(0)
    pipeline = train_transforms(320, MEAN, STD, "face", generator=g)
    sides = []
    for _ in range(200):
        image, t = pipeline(torch.rand(3, 200, 300), make_target([[120, 70, 180, 130]]))
        assert image.shape == (3, 320, 320)
        b = t["boxes"] * 320
        sides += ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt().tolist()
    sides = torch.tensor(sides)
    assert sides.min() >= 5 - 1e-4  # DropSmallBoxes
    assert ((sides >= 10) & (sides <= 40)).float().mean() > 0.2
    assert (sides >= 100).float().mean() > 0.2
