"""Checkpoints: a plain dict that rebuilds its own model.

    {"model": state_dict, "config": dict, "epoch": int, "iteration": int,
     "optimizer": state_dict, "scheduler": state_dict, "metrics": dict, "class_names": list}

Written atomically (temporary file, then rename), so a crash or Ctrl-C during a save
never destroys the previous checkpoint. Loaded with `weights_only=True`: no pickled code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from facedet.config import Config, apply_override, from_dict, validate
from facedet.errors import CheckpointError, ConfigError


def atomic_save(state: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; a checkpoint is not a secret
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


save_checkpoint = atomic_save


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by facedet; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable facedet checkpoint ({reason[:120]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a facedet checkpoint (expected keys 'model' and 'config')")
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path = "checkpoint") -> Config:
    try:
        return from_dict(state["config"], source=f"{path} (stored config)")
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


def load_detector(path: str | Path, device: torch.device | str = "cpu", overrides: Sequence[str] = ()):
    """Rebuild the detector a checkpoint was trained as, with its weights, in eval mode.

    `overrides` (`section.key=value`) apply to the stored config first: evaluation and
    inference settings, or data paths; one that changes the architecture fails to load.
    Returns (detector, config, class_names).
    """
    from facedet.models import build_model  # models import nothing from here; keep it lazy

    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    detector = build_model(cfg.model)
    load_weights(detector.model, state, path, cfg.model.name)
    detector.model.to(device).eval()
    names = list(state.get("class_names") or [f"class{i}" for i in range(cfg.model.num_classes)])
    return detector, cfg, names


def load_for_detection(path: str | Path, device: torch.device | str = "cpu", overrides: Sequence[str] = ()):
    """Like `load_detector`, but a classifier (rung 1) comes back inside a sliding window
    (rung 2), so every checkpoint can detect. Returns (detector, config, class_names)."""
    detector, cfg, names = load_detector(path, device, overrides)
    if detector.task == "classification":
        from facedet.models.sliding_window import detector_from_classifier

        m = cfg.model
        detector = detector_from_classifier(detector, window_sizes=m.window_sizes, stride_fraction=m.window_stride,
                                            image_side=m.window_image_side)
        names = ["face"]
    return detector, cfg, names
