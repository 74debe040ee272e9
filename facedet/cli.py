"""Small helpers shared by the command-line entry points."""
from __future__ import annotations

import argparse
import random
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch

from facedet.data.labels import DataWarning
from facedet.errors import ConfigError, FacedetError


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's ArgumentDefaultsHelpFormatter, minus the empty defaults: "(default: 0.5)" is
    worth reading, "(default: )" or "(default: None)" is not."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default in (None, "", [], False) or action.default is argparse.SUPPRESS
        if "%(default)" in text or empty or action.option_strings == []:
            return text
        return text + " (default: %(default)s)"


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


def parse_size(text: str) -> int:
    """--size: a number of pixels, or "native" (0)."""
    if text.strip().lower() == "native":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected a number of pixels or 'native'") from None
    if value < 32:
        raise argparse.ArgumentTypeError(f"--size {value}: expected at least 32 pixels, or 'native'")
    return value


def parse_scales(text: str) -> tuple[float, ...]:
    """--scales: comma-separated positive factors, e.g. 0.5,1,2."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: expected comma-separated numbers, e.g. 0.5,1,2") from None
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: every factor must be positive")
    return scales


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
