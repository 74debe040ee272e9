"""Files that are never half-written: write to a temporary file beside the target, then rename.

A crash, a kill or a full disk leaves the previous file (or none), never half a checkpoint,
JSON or image. Used by checkpoints, crops caches, infer's and evaluate's outputs.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from facedet.errors import FacedetError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through `write(file)` into a temporary file beside it, then rename it
    over `path`: a crash, a kill or a full disk leaves the previous file (or none), never
    half a file. A failed write is one error line naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs are not secrets
        os.replace(tmp, path)
    except OSError as err:
        raise FacedetError(f"{path}: cannot write ({err.strerror or err}); the previous file, if any, is kept") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(state: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""

    def write(file: BinaryIO) -> None:
        try:
            torch.save(state, file)
        except RuntimeError as err:  # how torch's zip writer reports a failed write (disk full)
            raise OSError(f"torch.save: {str(err).strip()[:120]}") from None

    atomic_write(path, write)
