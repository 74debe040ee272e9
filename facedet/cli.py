"""Small helpers shared by the command-line entry points."""
from __future__ import annotations

import random
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch

from facedet.data.labels import DataWarning
from facedet.errors import ConfigError, FacedetError


def select_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA when present, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not a device name (expected auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available here; use device=cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A DataWarning (a skipped image, dropped boxes) is for the user: one line, no source line."""
    if issubclass(category, DataWarning):
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


_default_format_warning = warnings.formatwarning


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run `main`, turning a FacedetError into one line on stderr and exit status 2."""
    warnings.formatwarning = _format_warning
    try:
        return main(argv) or 0
    except FacedetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
