"""Checkpoints: a plain dict that rebuilds its own model.

    {"model": state_dict, "config": dict, "epoch": int, "iteration": int,
     "optimizer": state_dict, "scheduler": state_dict, "metrics": dict, "class_names": list}

Written atomically (temporary file, then rename), so a crash or Ctrl-C during a save
never destroys the previous checkpoint. Loaded with `weights_only=True`: no pickled code.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from facedet.config import MODEL_CONFIGS, Config, ModelConfig, apply_override, from_dict, validate
from facedet.errors import CheckpointError, ConfigError
from facedet.models import build_model
from facedet.models.detector import Detector, fuse_batchnorm
from facedet.models.sliding_window import detector_from_classifier

# The detectors shipped with the package, one checkpoint each, named by its file's stem
# (model card: facedet/weights/MODEL_CARD.md). The default face detector is what
# facedet.load() and facedet.infer use when no checkpoint is given.
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"
DEFAULT_DETECTOR = "face_default"
SHIPPED_CHECKPOINT = SHIPPED_WEIGHTS / f"{DEFAULT_DETECTOR}.pt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by facedet; a clear error for anything else.

    Only zip archives written by torch.save (its format since PyTorch 1.6, and the only
    one facedet writes) are opened, and unpickled with weights_only=True: tensors and
    plain containers come back, a pickled object that would run code is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a readable facedet checkpoint (the file is empty)")
    if not zipfile.is_zipfile(path):  # also a plain pickle, which torch would try to unpickle
        raise CheckpointError(f"{path}: not a readable facedet checkpoint (not a torch.save archive, or cut short)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable facedet checkpoint ({_load_failure(err)})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a facedet checkpoint (expected keys 'model' and 'config')")
    for key in ("model", "config"):
        if not isinstance(state[key], Mapping):
            kind = type(state[key]).__name__
            raise CheckpointError(f"{path}: not a facedet checkpoint ('{key}' is {kind}, expected a mapping)")
    return state


def _load_failure(err: Exception) -> str:
    """Why torch.load refused a file, in a few words (torch's own message is a paragraph)."""
    text = str(err).strip()
    if "Weights only load failed" in text:
        culprit = re.search(r"GLOBAL (\S+)", text)  # e.g. "GLOBAL posix.system"
        named = f" ({culprit.group(1)})" if culprit else ""
        return (f"it holds pickled Python objects{named}, not only weights; facedet loads with "
                "weights_only=True and never runs code from a checkpoint")
    return text.splitlines()[0][:120] if text else type(err).__name__


def checkpoint_config(state: dict[str, Any], path: str | Path = "checkpoint") -> Config:
    """The run's Config stored in a checkpoint (older flat model sections are accepted)."""
    model = state["config"].get("model")
    name = model.get("name", ModelConfig.name) if isinstance(model, Mapping) else None
    if isinstance(model, Mapping) and name not in MODEL_CONFIGS:
        raise CheckpointError(f"{path}: its config builds no model (model.name {name!r} is not a facedet model; "
                              f"expected one of {', '.join(MODEL_CONFIGS)})")
    try:
        return from_dict(state["config"], source="stored config", lenient_model=True)
    except ConfigError as err:
        raise CheckpointError(f"{path}: stored config is not valid for this facedet ({err})") from None


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path, model_name: str) -> None:
    """Load `state["model"]` into `model`, refusing a checkpoint of another model."""
    stored = state.get("config", {}).get("model", {}).get("name", "?")
    if stored != model_name:
        raise CheckpointError(f"{path}: checkpoint is of model '{stored}', expected '{model_name}'")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{path}: weights do not fit model '{model_name}' ({detail[:160]})") from None


def load_detector(path: str | Path, device: torch.device | str = "cpu", overrides: Sequence[str] = ()) -> Detector:
    """Rebuild the detector a checkpoint was trained as, with its weights, in eval mode.

    `overrides` (`section.key=value`) apply to the stored config first: evaluation and
    inference settings, or data paths; one that changes the architecture fails to load.
    The Detector comes back with its `class_names`, the run's `config`, its `source` path and
    its operating point: the calibrated `min_score` when the checkpoint stores one, else its
    rung's own (set by the builder, as `nms_iou` and `top_k` always are).
    """
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    try:
        detector = build_model(cfg.model)
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config builds no model ({err})") from None
    load_weights(detector.model, state, path, cfg.model.name)
    detector.model.to(device).eval()
    names = state.get("class_names") or [f"class{i}" for i in range(cfg.model.num_classes)]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"{path}: 'class_names' is {names!r:.80}, expected a list of names")
    detector.class_names, detector.config, detector.source = list(names), cfg, str(path)
    point = state.get("operating_point") or {}
    if point:
        score = point.get("min_score")
        if not isinstance(score, float) or not 0.0 <= score <= 1.0:
            raise CheckpointError(f"{path}: 'operating_point.min_score' is {score!r}, expected a number in [0, 1]")
        detector.min_score, detector.calibration = score, dict(point)
    return detector


def list_detectors() -> list[str]:
    """The names of the shipped detectors, the default face detector first.

        facedet.list_detectors()     # ['face_default', 'centernet', 'classifier', ...]
        facedet.load("retinanet")    # any of them by name
    """
    names = sorted(path.stem for path in SHIPPED_WEIGHTS.glob("*.pt"))
    return sorted(names, key=lambda name: name != DEFAULT_DETECTOR)


def resolve_checkpoint(name_or_path: str | Path | None) -> Path:
    """The file behind a checkpoint argument: None -> the default detector, a shipped
    detector's name (see `list_detectors`) -> its file, anything else -> a path."""
    if name_or_path is None:
        name_or_path = DEFAULT_DETECTOR
    path, shipped = Path(name_or_path), list_detectors()
    if path.is_file() or path.suffix or len(path.parts) > 1:  # a file first, even one named like a detector
        return path
    if path.name in shipped:
        return SHIPPED_WEIGHTS / f"{path.name}.pt"
    raise CheckpointError(f"{name_or_path}: neither a checkpoint file nor a shipped detector "
                          f"(shipped: {', '.join(shipped) or 'none'}; or train one: python -m facedet.train "
                          "--config quickstart.yaml, then pass its runs/<name>/best.pt)")


def load(path: str | Path | None = None, device: torch.device | str = "auto", overrides: Sequence[str] = ()) -> Detector:
    """A checkpoint as a ready-to-call detector: the default face detector when `path` is None,
    a shipped detector by name (`list_detectors()`), or a checkpoint file.

        det = facedet.load()
        found = det("photo.jpg")     # Detections, boxes in the photo's pixels
        grid = facedet.load("grid7") # a shipped rung of the ladder

    A classifier checkpoint (rung 1) comes back inside a sliding window (rung 2), so every
    checkpoint can detect. For speed, BatchNorm layers are folded into the convolutions before
    them (`fuse_batchnorm`): use `load_detector` for a model to train or export.
    """
    path = resolve_checkpoint(path)
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    detector = load_detector(path, device, overrides)
    if detector.task == "classification":
        m = detector.config.model
        wrapped = detector_from_classifier(detector, window_sizes=m.window_sizes, stride_fraction=m.window_stride,
                                           image_side=m.window_image_side)
        wrapped.class_names, wrapped.config, wrapped.source = ["face"], detector.config, detector.source
        wrapped.model.to(device)
        detector = wrapped
    fuse_batchnorm(detector.model)  # inference only: one pass per feature map instead of two
    if detector.input_policy == "scalable":  # photo-sized inputs: NHWC weights to match NHWC inputs
        detector.model.to(memory_format=torch.channels_last)
    return detector
