"""SSD300: priors, model shapes, VGG16 decimation, MultiBoxLoss (worked numbers and oracles)."""
import math

import pytest
import torch

from facedet.boxes import box_convert, box_iou, encode
from facedet.errors import CheckpointError, ConfigError
from facedet.models.ssd import (
    PRIORS_PER_CELL,
    SSD300,
    L2Norm,
    MultiBoxLoss,
    build_ssd300,
    make_priors,
)
from facedet.models.losses import sigmoid_focal_loss
from facedet.models.vgg_weights import VGG16_CONV_INDICES, decimate, load_vgg16_base

from conftest import target

MAP_SIZES = (38, 19, 10, 5, 3, 1)


@pytest.fixture(scope="module")
def priors():
    return make_priors()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SSD300(num_classes=2).eval()


# ----------------------------------------------------------------------------- priors


def test_prior_counts_per_map(priors):
    counts = [s * s * k for s, k in zip(MAP_SIZES, PRIORS_PER_CELL)]
    assert counts == [5776, 2166, 600, 150, 36, 4]
    assert priors.shape == (8732, 4)
    assert priors.min() >= 0 and priors.max() <= 1


def test_priors_hand_computed(priors):
    r2 = math.sqrt(2.0)
    expected = {
        0: (0.5 / 38, 0.5 / 38, 0.1, 0.1),  # conv4_3, first cell, ratio 1
        1: (0.5 / 38, 0.5 / 38, math.sqrt(0.1 * 0.2), math.sqrt(0.1 * 0.2)),  # extra prior
        2: (0.5 / 38, 0.5 / 38, 0.1 * r2, 0.1 / r2),  # ratio 2: wide
        3: (0.5 / 38, 0.5 / 38, 0.1 / r2, 0.1 * r2),  # ratio 1/2: tall
        4: (1.5 / 38, 0.5 / 38, 0.1, 0.1),  # next cell to the right (row by row)
        4 * 38: (0.5 / 38, 1.5 / 38, 0.1, 0.1),  # first cell of the second row
        5776: (0.5 / 19, 0.5 / 19, 0.2, 0.2),  # conv7
        5777: (0.5 / 19, 0.5 / 19, math.sqrt(0.2 * 0.375), math.sqrt(0.2 * 0.375)),
        5779: (0.5 / 19, 0.5 / 19, 0.2 * math.sqrt(3), 0.2 / math.sqrt(3)),  # ratio 3
        5781: (0.5 / 19, 0.5 / 19, 0.2 / math.sqrt(3), 0.2 * math.sqrt(3)),  # ratio 1/3
        8692: (1 / 6, 1 / 6, 0.725, 0.725),  # conv10_2 first cell
        8693: (1 / 6, 1 / 6, math.sqrt(0.725 * 0.9), math.sqrt(0.725 * 0.9)),
        8728: (0.5, 0.5, 0.9, 0.9),  # conv11_2
        8729: (0.5, 0.5, 1.0, 1.0),  # extra prior of the last map: scale 1
        8730: (0.5, 0.5, 1.0, 0.9 / r2),  # 0.9 * sqrt(2) = 1.27 clamped to 1
        8731: (0.5, 0.5, 0.9 / r2, 1.0),
    }
    for index, value in expected.items():
        torch.testing.assert_close(priors[index], torch.tensor(value), msg=f"prior {index}")


# ----------------------------------------------------------------------------- model


def test_output_shapes_and_feature_maps(model):
    images = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        conv4_3, conv7 = model.base(images)
        aux = model.aux(conv7)
        pred_locs, pred_scores = model.pred([model.l2norm(conv4_3), conv7, *aux])
    sizes = [f.shape[-1] for f in (conv4_3, conv7, *aux)]
    assert sizes == list(MAP_SIZES)
    assert [f.shape[1] for f in (conv4_3, conv7, *aux)] == [512, 1024, 512, 256, 256, 256]
    assert pred_locs.shape == (1, 8732, 4)
    assert pred_scores.shape == (1, 8732, 3)  # 2 object classes + background


def test_parameter_count():
    # VGG convs 14,714,688 + conv6 4,719,616 + conv7 1,049,600 + aux 2,459,520 + L2Norm 512
    # + loc convs 534,648 + class convs for 21 scores 2,806,902 (the tutorial's VOC model)
    model = SSD300(num_classes=20)
    assert sum(p.numel() for p in model.parameters()) == 26_285_486


def test_batch_norm_option():
    model = SSD300(num_classes=1, batch_norm=True)
    bns = [m for m in model.base.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 15  # 13 VGG convs + conv6 + conv7


def test_l2norm_scale_init_and_norm():
    layer = L2Norm(8)
    assert torch.equal(layer.scale.data, torch.full((8,), 20.0))
    x = torch.randn(2, 8, 3, 3)
    norms = layer(x).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((2, 3, 3), 20.0))


def test_aux_and_pred_xavier_init(model):
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)); biases zero
    conv = model.aux.conv8_2[0]  # 256 -> 512, 3x3
    bound = math.sqrt(6.0 / (256 * 9 + 512 * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(conv.bias) == 0


# ----------------------------------------------------------------------------- VGG weights


def test_decimate_matches_slicing():
    t = torch.randn(8, 5, 7, 7)
    assert torch.equal(decimate(t, [4, None, 3, 3]), t[::4, :, ::3, ::3])
    assert torch.equal(decimate(t, [None, 2]), t[:, ::2])


def fake_vgg16(fc6, fc7, fc_bias):
    """A torchvision-shaped VGG16 state dict: random convs, given fc6/fc7 (may be expanded)."""
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state = {}
    for i, index in enumerate(VGG16_CONV_INDICES):
        state[f"features.{index}.weight"] = torch.randn(channels[i + 1], channels[i], 3, 3)
        state[f"features.{index}.bias"] = torch.randn(channels[i + 1])
    state["classifier.0.weight"], state["classifier.0.bias"] = fc6, fc_bias
    state["classifier.3.weight"], state["classifier.3.bias"] = fc7, fc_bias
    return state


def test_load_vgg16_base_decimation():
    model = SSD300(num_classes=1)
    # columns numbered 0..25087 (= channel * 49 + row * 7 + col of pool5), no 400 MB allocation
    fc6 = torch.arange(25088, dtype=torch.float32).expand(4096, -1)
    fc7 = torch.arange(4096, dtype=torch.float32).expand(4096, -1)
    bias = torch.arange(4096, dtype=torch.float32)
    state = fake_vgg16(fc6, fc7, bias)
    load_vgg16_base(model, state)
    base = model.base
    for name, index in zip([n for n, _ in base.CONVS], VGG16_CONV_INDICES):
        assert torch.equal(getattr(base, name)[0].weight, state[f"features.{index}.weight"]), name
    conv6, conv7 = base.conv6[0], base.conv7[0]
    assert conv6.weight.shape == (1024, 512, 3, 3) and conv7.weight.shape == (1024, 1024, 1, 1)
    c, i, j = torch.meshgrid(torch.arange(512), torch.arange(3), torch.arange(3), indexing="ij")
    expected = (c * 49 + 3 * i * 7 + 3 * j).float()  # every 3rd kernel tap: rows/cols 0, 3, 6
    assert torch.equal(conv6.weight[0], expected) and torch.equal(conv6.weight[1023], expected)
    assert torch.equal(conv6.bias, torch.arange(0, 4096, 4).float())  # every 4th filter
    assert torch.equal(conv7.weight[5, :, 0, 0], torch.arange(0, 4096, 4).float())
    assert torch.equal(conv7.bias, torch.arange(0, 4096, 4).float())

    # rows numbered: filter o of conv6/conv7 is fc filter 4 * o
    rows = torch.arange(4096, dtype=torch.float32)[:, None]
    load_vgg16_base(model, fake_vgg16(rows.expand(-1, 25088), rows.expand(-1, 4096), bias))
    assert torch.equal(conv6.weight[:, 7, 2, 1], torch.arange(0, 4096, 4).float())
    assert torch.equal(conv7.weight[:, 9, 0, 0], torch.arange(0, 4096, 4).float())


def test_load_vgg16_base_errors(tmp_path):
    model = SSD300(num_classes=1)
    with pytest.raises(CheckpointError, match="not found"):
        load_vgg16_base(model, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="classifier.0.weight"):
        load_vgg16_base(model, {f"features.{i}.{p}": torch.zeros(1)
                                for i in VGG16_CONV_INDICES for p in ("weight", "bias")})


def test_pretrained_torchvision_without_torchvision():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="torchvision"):
            load_vgg16_base(SSD300(num_classes=1), "torchvision")
    else:
        pytest.skip("torchvision installed: would download weights")


# ----------------------------------------------------------------------------- loss

# Two priors, the left and right halves of the image ("cxcywh").
TWO_PRIORS = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]])


def test_loss_two_priors_worked_numbers():
    criterion = MultiBoxLoss(TWO_PRIORS)
    # the object is exactly the left prior: prior 0 positive (label 0 -> class 1), prior 1 background
    targets = [target([[0.0, 0.0, 0.5, 1.0]], [0])]
    pred_locs = torch.tensor([[[0.5, 0.0, 0.0, 2.0], [9.0, 9.0, 9.0, 9.0]]])
    pred_scores = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    terms = criterion((pred_locs, pred_scores), targets)
    # Smooth L1 against zero offsets: 0.5^2 / 2 + (2 - 0.5) = 1.625; prior 1 is ignored
    torch.testing.assert_close(terms["loc"], torch.tensor(1.625))
    # CE: positive log 2, the one negative (mined: 1 <= 3 * 1) log(1 + 3); divided by 1 positive
    torch.testing.assert_close(terms["conf"], torch.tensor(math.log(2) + math.log(4)))
    # with no negatives kept, only the positive's CE remains
    terms = MultiBoxLoss(TWO_PRIORS, neg_pos_ratio=0)((pred_locs, pred_scores), targets)
    torch.testing.assert_close(terms["conf"], torch.tensor(math.log(2)))


def test_loss_encoded_target_worked_numbers():
    criterion = MultiBoxLoss(TWO_PRIORS)
    # top-left quarter: IoU 0.5 with the left prior. Offsets: cx 0, cy (0.25-0.5)/(1*0.1) = -2.5,
    # w log(1)/0.2 = 0, h log(0.5)/0.2 = -3.4657
    labels, loc_targets = criterion.encode_targets([target([[0.0, 0.0, 0.5, 0.5]], [2])])
    assert labels.tolist() == [[3, 0]]  # object class 2 -> SSD class 3
    torch.testing.assert_close(loc_targets[0, 0], torch.tensor([0.0, -2.5, 0.0, math.log(0.5) / 0.2]))
    terms = criterion((torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)), [target([[0.0, 0.0, 0.5, 0.5]], [2])])
    torch.testing.assert_close(terms["loc"], torch.tensor(2.0 + (-math.log(0.5) / 0.2 - 0.5)))


def test_loss_image_without_objects(priors):
    criterion = MultiBoxLoss(priors)
    pred = (torch.randn(2, 8732, 4, requires_grad=True), torch.randn(2, 8732, 3))
    empty = target([], [])
    terms = criterion(pred, [empty, empty])
    assert terms["loc"].item() == 0.0
    assert torch.isfinite(terms["conf"])
    terms["loc"].backward()  # still differentiable
    # one empty image next to one with an object: finite, and the empty one adds no negatives
    terms = criterion(pred, [empty, target([[0.1, 0.1, 0.4, 0.5]], [1])])
    assert torch.isfinite(terms["loc"]) and torch.isfinite(terms["conf"]) and terms["loc"] > 0


def test_hard_negatives_count_and_hardness(priors):
    torch.manual_seed(0)
    criterion = MultiBoxLoss(priors)
    targets = [target([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8]], [0, 1]),
               target([[0.3, 0.2, 0.6, 0.9]], [0]),
               target([], [])]
    labels, _ = criterion.encode_targets(targets)
    positives = labels > 0
    ce = torch.rand(3, 8732)
    hard = criterion.hard_negatives(ce, positives)
    assert not (hard & positives).any()
    num_pos = positives.sum(dim=1)
    assert num_pos[0] > 0 and num_pos[1] > 0 and num_pos[2] == 0
    assert hard.sum(dim=1).tolist() == (3 * num_pos).tolist()
    for i in range(2):  # the kept negatives are the hardest ones
        negatives = ~positives[i]
        assert ce[i][hard[i]].min() >= ce[i][negatives & ~hard[i]].max()


def test_hard_negatives_capped_by_available_negatives():
    criterion = MultiBoxLoss(TWO_PRIORS, neg_pos_ratio=3)
    hard = criterion.hard_negatives(torch.tensor([[1.0, 2.0]]), torch.tensor([[True, False]]))
    assert hard.tolist() == [[False, True]]


def test_forced_match_of_small_object(priors):
    criterion = MultiBoxLoss(priors)
    tiny = [0.40, 0.40, 0.41, 0.45]  # overlaps every prior by less than 0.5
    iou = box_iou(torch.tensor([tiny]), box_convert(priors, "cxcywh", "xyxy"))[0]
    assert iou.max() < 0.5
    labels, _ = criterion.encode_targets([target([tiny], [0])])
    assert labels[0].nonzero().flatten().tolist() == [int(iou.argmax())]
    assert labels[0, iou.argmax()] == 1


def match_oracle(boxes, labels, priors, threshold=0.5):
    """sgrvinod's per-image matching, one image at a time, loops over objects."""
    priors_xyxy = box_convert(priors, "cxcywh", "xyxy")
    if len(boxes) == 0:
        return torch.zeros(len(priors), dtype=torch.int64), torch.zeros(len(priors), 4)
    iou = box_iou(boxes, priors_xyxy)  # (n, P)
    overlap, obj = iou.max(dim=0)
    for o in range(len(boxes)):
        best = int(iou[o].argmax())
        obj[best] = o
        overlap[best] = 1.0
    prior_labels = labels[obj] + 1
    prior_labels[overlap < threshold] = 0
    offsets = encode(box_convert(boxes[obj], "xyxy", "cxcywh"), priors)
    return prior_labels, offsets


def test_batched_matching_equals_per_image_oracle(priors):
    g = torch.Generator().manual_seed(1)
    targets = []
    for n in (3, 0, 1, 5):
        xy = torch.rand(n, 2, generator=g) * 0.6
        wh = 0.05 + torch.rand(n, 2, generator=g) * 0.35
        boxes = torch.cat([xy, xy + wh], dim=1)
        targets.append({"boxes": boxes, "labels": torch.randint(0, 3, (n,), generator=g)})
    criterion = MultiBoxLoss(priors)
    labels, loc_targets = criterion.encode_targets(targets)
    for i, t in enumerate(targets):
        want_labels, want_offsets = match_oracle(t["boxes"], t["labels"], priors)
        assert torch.equal(labels[i], want_labels)
        pos = want_labels > 0
        torch.testing.assert_close(loc_targets[i][pos], want_offsets[pos])


def test_focal_loss_worked_numbers():
    logits = torch.tensor([0.0, 0.0, 2.0])
    targets = torch.tensor([1.0, 0.0, 1.0])
    # x = 0: p_t = 0.5, (1 - p_t)^2 = 0.25, -log p_t = log 2; alpha_t 0.25 (positive) / 0.75
    # x = 2, t = 1: p_t = sigmoid(2) = 0.880797, (0.119203)^2 = 0.0142094, -log p_t = 0.126928
    p = 1 / (1 + math.exp(-2.0))
    expected = torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2),
                             0.25 * (1 - p) ** 2 * -math.log(p)])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)
    # gamma 0 and alpha 0.5 is half the binary cross-entropy
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=0.5, gamma=0.0), bce / 2)


def test_multibox_focal_two_priors():
    criterion = MultiBoxLoss(TWO_PRIORS, loss="focal")
    targets = [target([[0.0, 0.0, 0.5, 1.0]], [0])]
    # column 0 (background) is ignored by the focal loss, whatever its value
    pred_scores = torch.tensor([[[5.0, 0.0], [-7.0, 0.0]]])
    terms = criterion((torch.zeros(1, 2, 4), pred_scores), targets)
    expected = 0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)  # one positive, one negative
    torch.testing.assert_close(terms["conf"], torch.tensor(expected))
    assert terms["loc"].item() == 0.0


def test_unknown_loss_refused(priors):
    with pytest.raises(ConfigError, match="focal"):
        MultiBoxLoss(priors, loss="l2")


# ----------------------------------------------------------------------------- builder


def test_build_ssd300():
    from types import SimpleNamespace

    cfg = SimpleNamespace(num_classes=1, image_size=300, pretrained="", batch_norm=True,
                          neg_pos_ratio=3.0, loss="focal", focal_alpha=0.25, focal_gamma=2.0)
    detector = build_ssd300(cfg)
    assert detector.model.pred.cls[0].bias[0].item() == pytest.approx(-math.log(99))
    assert detector.criterion.loss == "focal" and detector.postprocess.score == "sigmoid"
    assert detector.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ConfigError, match="300"):
        build_ssd300(SimpleNamespace(num_classes=1, image_size=224))


# ----------------------------------------------------------------------------- training


def test_heads_overfit_one_batch():
    """20 Adam steps on two images drive the loss down. The VGG base (most of the compute:
    ~5 s per full step of batch 2 on a CPU) is run once with batch_norm and frozen; L2Norm, the
    auxiliary and prediction convs and the whole loss are trained."""
    torch.manual_seed(0)
    model = SSD300(num_classes=1, batch_norm=True)
    priors = make_priors()
    criterion = MultiBoxLoss(priors)
    images = torch.randn(2, 3, 300, 300)
    targets = [target([[0.1, 0.2, 0.5, 0.7]], [0]),
               target([[0.3, 0.3, 0.6, 0.6], [0.7, 0.1, 0.95, 0.4]], [0, 0])]
    with torch.no_grad():
        conv4_3, conv7 = model.base.eval()(images)
    params = [*model.l2norm.parameters(), *model.aux.parameters(), *model.pred.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-4)
    losses = []
    for _ in range(20):
        outputs = model.pred([model.l2norm(conv4_3), conv7, *model.aux(conv7)])
        terms = criterion(outputs, targets)
        loss = terms["loc"] + terms["conf"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses  # 8.1 -> 3.5


def test_full_model_step_lowers_loss():
    """One SGD step through the whole network (base included, batch_norm) lowers the loss
    on the same batch, and every parameter gets a gradient."""
    torch.manual_seed(0)
    model = SSD300(num_classes=1, batch_norm=True)
    criterion = MultiBoxLoss(make_priors())
    images = torch.randn(1, 3, 300, 300)
    targets = [target([[0.1, 0.2, 0.5, 0.7]], [0])]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.0)
    model.train()
    terms = criterion(model(images), targets)
    loss = terms["loc"] + terms["conf"]
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    optimizer.step()
    with torch.no_grad():
        after = criterion(model(images), targets)
    assert after["loc"] + after["conf"] < loss.item()


# ----------------------------------------------------------------------------- rules the paper fixes


def test_pool5_is_3x3_stride_1_so_conv5_keeps_19x19_and_one_activation_spreads_to_9():
    from facedet.models.ssd import VGGBase

    pool5 = VGGBase().pool5
    x = torch.full((1, 1, 19, 19), -1.0)
    x[0, 0, 9, 9] = 1.0
    y = pool5(x)
    assert y.shape[-2:] == (19, 19)
    assert (y == 1.0).sum() == 9 and bool((y[0, 0, 8:11, 8:11] == 1.0).all())  # a 3x3 max, not 1x1


def test_conv10_2_is_a_valid_3x3_convolution_with_stride_1():
    """The paper's conv10_2: 5x5 -> 3x3 by a 3x3 conv without padding (stride 1), so every output
    sees 3x3 inputs of the 5x5 map; stride 2 with padding 1 would also give 3x3 but skip rows."""
    from facedet.models.ssd import AuxiliaryConvs

    conv = AuxiliaryConvs().conv10_2[0]
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (0, 0)


def test_predictions_are_flattened_in_the_priors_order():
    """Each prediction conv is replaced by one that writes its cell's centre into the offsets:
    after flattening, prediction p must carry prior p's centre."""
    from torch import nn

    from facedet.models.ssd import PRIORS_PER_CELL, PredictionConvs

    class CellCentres(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, f):
            n, _, h, w = f.shape
            cy, cx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
            per_prior = torch.stack([cx, cy, torch.zeros_like(cx), torch.zeros_like(cx)])  # (4, H, W)
            return per_prior.repeat(self.k, 1, 1)[None].expand(n, -1, -1, -1)  # (N, k*4, H, W)

    heads = PredictionConvs(num_scores=2)
    heads.loc = nn.ModuleList(CellCentres(k) for k in PRIORS_PER_CELL)
    features = [torch.zeros(1, c, s, s) for c, s in zip(PredictionConvs.CHANNELS, (38, 19, 10, 5, 3, 1))]
    locs, _ = heads(features)
    torch.testing.assert_close(locs[0, :, :2], make_priors()[:, :2], rtol=0, atol=1e-6)


def test_a_prior_at_exactly_the_matching_threshold_is_positive():
    """SSD: priors with IoU >= 0.5 are positives (the paper's "higher than a threshold (0.5)" is
    implemented with >= in the reference code)."""
    from facedet.boxes import match_priors

    # binary fractions, so the IoU is exactly 0.5 in floating point: 0.125 / 0.25
    priors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25], [0.75, 0.75, 1.0, 1.0]])
    gt = torch.tensor([[[0.0, 0.0, 0.5, 0.25]]])  # IoU 0.5 exactly with prior 0, 1.0 with prior 1
    labels, _ = match_priors(gt, torch.tensor([[0]]), torch.tensor([[True]]), priors, threshold=0.5)
    assert labels.tolist() == [[1, 1, 0]]
