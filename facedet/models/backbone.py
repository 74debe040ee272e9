"""The small shared backbone: one MobileNet-style base that every rung can stand on.

The seed rungs each bring their own network (a 67 M-parameter classifier, 413 M-parameter grid
and YOLO models, VGG16 for SSD), so when two rungs differ in accuracy it is
hard to say how much of the gap is the rung's *idea* and how much is its size. The
same-backbone ladder (`model.backbone: small`, benchmarks/train_same_backbone.sh) puts every
rung's head on this one base, trained on the same data for the same number of images, so
that only the idea changes. FaceSSD (rung 5), RetinaNet (rung 6, `backbone: small`) and
CenterNet (rung 7) were built on it from the start. Reading order:

    conv_bn, conv_dw   the two blocks (plain conv + BN + ReLU; depthwise-separable)
    SmallBackbone      images -> feature maps at strides 4, 8, 16, 32
    TopDown            a feature pyramid's top-down path over some of those maps
    GridFeatures       the backbone read as an S x S grid (the grid and YOLO heads)
    yolo_face_features, feature_size   the seed's YOLO-face stack, shared by its grid and YOLO models
    LEGACY_KEYS        checkpoints saved before this module existed still load
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from facedet.errors import ConfigError


def conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """kernel x kernel convolution -> BatchNorm -> ReLU (no conv bias: BatchNorm has one)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def conv_dw(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Depthwise-separable block (MobileNet v1): 3x3 per-channel conv, then 1x1 mixing conv.

    c_in * 9 + c_in * c_out weights instead of c_in * c_out * 9: about 8x cheaper for
    c_out >= 64, which is what makes a 40 x 40 stride-8 map affordable on a CPU.
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        conv_bn(c_in, c_out, kernel=1),
    )


class SmallBackbone(nn.Module):
    """A slim MobileNet-style base, fully convolutional (any input whose sides are multiples of 32).

    images (N, 3, H, W) -> [f4, f8, f16, f32], strides 4, 8, 16, 32, channels `self.channels`.

    For width w = 32 (163,840 parameters; shapes of one 256 x 256 image); the high-resolution
    layers are kept narrow (w/2 and w channels), where each channel costs the most memory traffic:
        stem    conv_bn 3 -> w/2, stride 2; conv_dw w/2 -> w, stride 2; conv_dw   (w, 64, 64)     f4
        stage3  conv_dw w -> 2w,  stride 2, + 2 blocks                             (2w, 32, 32)    f8
        stage4  conv_dw 2w -> 4w, stride 2, + 2 blocks                             (4w, 16, 16)    f16
        stage5  conv_dw 4w -> 8w, stride 2, + 1 block                              (8w, 8, 8)      f32
    (stage k ends at stride 2^k, ResNet's C_k naming.) Receptive field of an f32 cell: 231 px.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        if width < 2 or width % 2:
            raise ConfigError(f"model.width must be an even number >= 2 (the stem has width / 2 channels), got {width}")
        w = width
        self.channels = (w, 2 * w, 4 * w, 8 * w)
        self.stem = nn.Sequential(conv_bn(3, w // 2, stride=2), conv_dw(w // 2, w, stride=2), conv_dw(w, w))
        self.stage3 = nn.Sequential(conv_dw(w, 2 * w, stride=2), conv_dw(2 * w, 2 * w), conv_dw(2 * w, 2 * w))
        self.stage4 = nn.Sequential(conv_dw(2 * w, 4 * w, stride=2), conv_dw(4 * w, 4 * w), conv_dw(4 * w, 4 * w))
        self.stage5 = nn.Sequential(conv_dw(4 * w, 8 * w, stride=2), conv_dw(8 * w, 8 * w))

    def forward(self, images: Tensor) -> list[Tensor]:
        f4 = self.stem(images)
        f8 = self.stage3(f4)
        f16 = self.stage4(f8)
        return [f4, f8, f16, self.stage5(f16)]


class TopDown(nn.Module):
    """A feature pyramid's top-down path (Lin et al. 2017) that keeps every map's width.

    features [f_0, ..., f_k] (fine to coarse, channels `channels`, each map half the size of
    the one before) -> [p_0, ..., p_k] with p_k = f_k and, going down,
        p_i = conv_dw(f_i + up2(conv_bn 1x1 (p_{i+1}) to f_i's channels))     (nearest upsampling)
    so a fine map, whose own layers have seen only a small window, also carries what the deeper
    layers found around each of its cells (a small face's context, a large face's extent).
    `steps[j]` holds the lateral and smoothing convs of the j-th step down, coarsest first.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(
            nn.ModuleDict({"lateral": conv_bn(channels[i + 1], channels[i], kernel=1),
                           "smooth": conv_dw(channels[i], channels[i])})
            for i in reversed(range(len(channels) - 1))
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        out = [features[-1]]
        for step, f in zip(self.steps, reversed(features[:-1])):
            up = F.interpolate(step["lateral"](out[0]), size=f.shape[-2:], mode="nearest")
            out.insert(0, step["smooth"](f + up))
        return out


class GridFeatures(nn.Module):
    """SmallBackbone read as an S x S grid of cells: images (N, 3, H, W) -> (N, C, S, S).

    A grid cell of an H-pixel input is H / S pixels wide. The map whose stride is closest to
    that without being finer feeds the grid: f32 when H / S >= 32 (S = 7 of 256 px: cells of
    37 px), otherwise the stride-16 map with the top-down path from f32 (S = 14: 18 px cells),
    so the finer grid still sees as far as the coarse one. Adaptive average pooling then cuts
    that map into exactly S x S bins (8 x 8 -> 7 x 7 averages overlapping pairs of cells), and
    a 3x3 depthwise-separable block lets each cell look at its neighbours.
    """

    def __init__(self, width: int, griddim: int, image_size: int) -> None:
        super().__init__()
        self.griddim = griddim
        self.backbone = SmallBackbone(width)
        self.fine = image_size / griddim < SmallBackbone.strides[-1]
        self.top_down = TopDown(self.backbone.channels[2:]) if self.fine else None
        self.channels = self.backbone.channels[2 if self.fine else 3]
        self.context = conv_dw(self.channels, self.channels)

    def forward(self, images: Tensor) -> Tensor:
        f4, f8, f16, f32 = self.backbone(images)
        x = self.top_down([f16, f32])[0] if self.top_down is not None else f32
        return self.context(F.adaptive_avg_pool2d(x, self.griddim))


# --------------------------------------------------------------------------- the seed's YOLO-face stack

# YOLOv1's leaky ReLU slope, also used by the seed.
LEAKY_SLOPE = 0.1


def yolo_face_features() -> nn.Sequential:
    """The seed's YOLO-face convolution stack: images (N, 3, 224, 224) -> (N, 512, 14, 14).

    YOLOFaceCNN's (rung 4) and GridCNNModel's (rung 3, "the more complex extractor").

    1,686,080 parameters. The 1x1 convolutions are YOLOv1's "reduction" layers (borrowed
    from GoogLeNet): they mix channels cheaply before the next 3x3 convolution.
    """
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),    # (N, 64, 112, 112)    9,472
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),                                         # (N, 64, 56, 56)
        nn.Conv2d(64, 192, kernel_size=3, padding=1),            # (N, 192, 56, 56)   110,784
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),                                         # (N, 192, 28, 28)
        nn.Conv2d(192, 128, kernel_size=1),                      # (N, 128, 28, 28)    24,704
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(128, 256, kernel_size=3, padding=1),           # (N, 256, 28, 28)   295,168
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(256, 256, kernel_size=1),                      # (N, 256, 28, 28)    65,792
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(256, 512, kernel_size=3, padding=1),           # (N, 512, 28, 28) 1,180,160
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),                                         # (N, 512, 14, 14)
    )


def feature_size(image_size: int, model: str) -> int:
    """Side of the seed stacks' last feature map: three halvings and a stride-2 conv = /16."""
    if image_size % 16:
        raise ConfigError(f"{model}: model.image_size must be a multiple of 16, got {image_size}")
    return image_size // 16


# FaceSSD's and CenterNet's layer names before SmallBackbone and TopDown were shared (their
# checkpoints, the shipped face detector among them, keep loading): old prefix -> new prefix
LEGACY_KEYS = {"stage1": "backbone.stem", "stage2": "backbone.stage3", "stage3": "backbone.stage4",
               "stage4": "backbone.stage5", "lateral32": "top_down.steps.0.lateral", "smooth16": "top_down.steps.0.smooth",
               "lateral16": "top_down.steps.1.lateral", "smooth8": "top_down.steps.1.smooth",
               "lateral8": "top_down.steps.2.lateral", "smooth4": "top_down.steps.2.smooth"}


def load_legacy_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """A load_state_dict pre-hook (module.register_load_state_dict_pre_hook) applying LEGACY_KEYS."""
    rename_legacy_keys(state_dict, prefix, LEGACY_KEYS)


def rename_legacy_keys(state_dict: dict, prefix: str, renames: Mapping[str, str]) -> None:
    """Rename, in place, the keys `prefix + old...` of a state dict to `prefix + new...`.

    A key matches when it continues with "." after an old prefix (stage1 never renames stage10).
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        for old, new in renames.items():
            if rest.startswith(old + "."):
                state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                break
