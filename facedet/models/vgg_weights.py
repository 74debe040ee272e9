"""Pretrained ImageNet VGG16 weights for SSD300's base, with fc6/fc7 turned into convs.

torchvision's `vgg16-*.pth` state dict holds the 13 convs as `features.N.weight/bias`
and the classifier as `classifier.0` (fc6, 4096 x 25088), `classifier.3` (fc7, 4096 x 4096),
`classifier.6` (fc8, unused). fc6 reads the 7x7x512 pool5 map, so it *is* a 7x7 conv with
4096 filters; fc7 is a 1x1 conv. SSD keeps a quarter of their filters and, for conv6, every
third kernel tap (7x7 -> 3x3, with dilation 6 to span the same area): "decimation".
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from facedet.errors import CheckpointError, ConfigError

# indices of VGG16's 13 convs in torchvision's `features` Sequential (ReLUs and pools between)
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def decimate(tensor: Tensor, steps: Sequence[int | None]) -> Tensor:
    """Keep every `steps[d]`-th element along each dimension d (None = keep all).

    decimate(t, [4, None, 3, 3]) == t[::4, :, ::3, ::3]
    """
    for dim, step in enumerate(steps):
        if step is not None:
            index = torch.arange(0, tensor.shape[dim], step, device=tensor.device)
            tensor = tensor.index_select(dim, index)
    return tensor


def vgg16_to_ssd_base(state_dict: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
    """(weight, bias) of SSD's 15 base convs, conv1_1 ... conv5_3, conv6, conv7, in order.

    conv6: fc6 (4096, 25088) -> (4096, 512, 7, 7) -> every 4th filter, every 3rd tap
           -> (1024, 512, 3, 3);  conv7: fc7 (4096, 4096) -> (4096, 4096, 1, 1)
           -> every 4th filter and every 4th input channel -> (1024, 1024, 1, 1).
    """
    def get(key: str) -> Tensor:
        if key not in state_dict:
            raise CheckpointError(f"VGG16 weights: key {key!r} missing; expected a torchvision "
                                  "vgg16 state dict (features.N.*, classifier.0/3.*)")
        return state_dict[key]

    convs = [(get(f"features.{i}.weight"), get(f"features.{i}.bias")) for i in VGG16_CONV_INDICES]
    fc6_w = get("classifier.0.weight").reshape(4096, 512, 7, 7)
    fc7_w = get("classifier.3.weight").reshape(4096, 4096, 1, 1)
    convs.append((decimate(fc6_w, [4, None, 3, 3]), decimate(get("classifier.0.bias"), [4])))
    convs.append((decimate(fc7_w, [4, 4, None, None]), decimate(get("classifier.3.bias"), [4])))
    return convs


def torchvision_vgg16_state_dict() -> dict[str, Tensor]:
    """Download (or read from torchvision's cache) the ImageNet VGG16 weights."""
    try:
        from torchvision.models import VGG16_Weights
    except ImportError as exc:
        raise ConfigError("model.pretrained='torchvision' needs torchvision; install it or "
                          "give the path of a vgg16-*.pth file") from exc
    return VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)


def load_vgg16_base(model: nn.Module, source: Mapping[str, Tensor] | str | Path) -> None:
    """Copy pretrained VGG16 weights into `model.base` (an SSD300's VGGBase) in place.

    source: a torchvision VGG16 state dict, the path of a saved one (`vgg16-397923af.pth`),
    or "torchvision" to fetch it through torchvision. BatchNorm layers, if any, are left as
    they are (the pretrained VGG16 has none).
    """
    if isinstance(source, (str, Path)):
        if str(source) == "torchvision":
            source = torchvision_vgg16_state_dict()
        else:
            path = Path(source)
            if not path.is_file():
                raise CheckpointError(f"{path}: pretrained VGG16 weights file not found")
            try:
                source = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises several types for a corrupt file
                raise CheckpointError(f"{path}: cannot read VGG16 weights ({exc})") from exc
    convs = [m for m in model.base.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv, (weight, bias) in zip(convs, vgg16_to_ssd_base(source), strict=True):
            if conv.weight.shape != weight.shape:
                raise CheckpointError(f"VGG16 weights: shape {tuple(weight.shape)} does not fit "
                                      f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
