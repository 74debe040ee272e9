"""A head start: a new model takes every weight of a trained one whose name and shape fit.

    python -m facedet.train --config objects.yaml data.root=FOLDER model.init=retinanet

`model.init` names where the weights come from:

    a shipped detector   facedet.list_detectors(): retinanet, face_default, ssd, centernet, ...
    a checkpoint path    runs/<name>/best.pt of any facedet run
    torchvision          ImageNet weights of a ResNet backbone (model.backbone=resnet18 or resnet50),
                         where torchvision is installed

A tensor is copied when the new model has a tensor of the same name and the same shape: the
backbone of the same rung and width always fits, and the pyramid and subnets of the same rung
do too; the last convolutions, whose shapes count the classes and anchors, stay as they were
initialised. Nothing is copied silently and nothing is refused silently: the run logs how many
tensors of each part were loaded, and which stayed new.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor, nn

from facedet.checkpoint import list_detectors, load_checkpoint, resolve_checkpoint
from facedet.config import ModelConfig
from facedet.errors import CheckpointError, ConfigError

TORCHVISION = "torchvision"
# torchvision's ResNet names -> ResNetBackbone's (facedet/models/retinanet.py): its stem is
# Sequential(conv1, bn1, relu, maxpool, layer1), so conv1 is stem.0, bn1 stem.1, layer1 stem.4
RESNET_NAMES = {"conv1.": "backbone.stem.0.", "bn1.": "backbone.stem.1.", "layer1.": "backbone.stem.4.",
                "layer2.": "backbone.layer2.", "layer3.": "backbone.layer3.", "layer4.": "backbone.layer4."}


def fitting_tensors(target: dict[str, Tensor], source: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """The tensors of `source` that `target` has under the same name and shape, and the names of
    `target` that stay new (absent from `source`, or of another shape there)."""
    fit = {name: tensor for name, tensor in source.items()
           if name in target and tuple(tensor.shape) == tuple(target[name].shape)}
    return fit, [name for name in target if name not in fit]


def source_weights(init: str, cfg: ModelConfig) -> tuple[dict[str, Tensor], str]:
    """The state dict `model.init` names, and the words the log uses for it."""
    if init == TORCHVISION:
        return imagenet_weights(cfg), "torchvision ImageNet"
    try:
        path = resolve_checkpoint(init)
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(f"model.init={init!r}: {err}") from None
    return dict(state["model"]), str(path)


def imagenet_weights(cfg: ModelConfig) -> dict[str, Tensor]:
    """torchvision's ImageNet ResNet weights, renamed to facedet's ResNetBackbone (downloaded once
    into torch's cache by torchvision)."""
    backbone = getattr(cfg, "backbone", None)
    if cfg.name != "retinanet" or backbone not in ("resnet18", "resnet50"):
        raise ConfigError(f"model.init='torchvision': ImageNet weights exist only for model.name=retinanet with "
                          f"model.backbone=resnet18 or resnet50 (this run: {cfg.name}, backbone {backbone}); "
                          "start from a shipped detector instead, e.g. model.init=retinanet")
    try:
        import torchvision  # optional: only this choice needs it
    except Exception as err:  # ImportError, or a torchvision built for another torch failing inside
        raise ConfigError(f"model.init='torchvision' needs torchvision, which does not import here "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}); "
                          "pip install torchvision from your torch's index, or start from a shipped detector: "
                          "model.init=retinanet") from None
    weights = {"resnet18": torchvision.models.ResNet18_Weights, "resnet50": torchvision.models.ResNet50_Weights}
    state = weights[backbone].IMAGENET1K_V1.get_state_dict(progress=True)
    renamed = {}
    for name, tensor in state.items():
        for old, new in RESNET_NAMES.items():
            if name.startswith(old):
                renamed[new + name[len(old):]] = tensor
    return renamed  # fc.* (the ImageNet classifier) has no counterpart and is left out


def init_model(model: nn.Module, init: str, cfg: ModelConfig) -> str:
    """Copy into `model` every tensor of `init` that fits (see the module docstring); return the log line.

    A source where nothing fits (another rung, another width) is an error, not a silent no-op."""
    source, where = source_weights(init, cfg)
    target = model.state_dict()
    fit, new = fitting_tensors(target, source)
    if not fit:
        fitting = [name for name in list_detectors() if fitting_tensors(target, load_checkpoint(
            resolve_checkpoint(name))["model"])[0]]
        raise ConfigError(f"model.init={init!r}: none of its {len(source)} tensors fits this {cfg.name} "
                          f"(another network, backbone or width); shipped detectors that fit: "
                          f"{', '.join(fitting) or 'none'}")
    model.load_state_dict(fit, strict=False)
    total, loaded = Counter(part(n) for n in target), Counter(part(n) for n in fit)
    parts = ", ".join(f"{name} {loaded[name]}/{count}" for name, count in total.items())
    shown = ", ".join(new[:4]) + (f" and {len(new) - 4} more" if len(new) > 4 else "")
    return (f"model.init={init} ({where}): loaded {len(fit)} of {len(target)} tensors ({parts}); "
            f"new: {shown or 'none'}")


def part(name: str) -> str:
    """The top-level module a tensor belongs to: 'backbone.stem.0.weight' -> 'backbone'."""
    return name.split(".", 1)[0]
