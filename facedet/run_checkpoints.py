"""What a training run writes to runs/<name>/: last.pt after every epoch (and at Ctrl-C), and
best.pt whenever the main validation metric improves (without validation: the training loss).

Each file is facedet/checkpoint.py's plain dict, rebuilt into a Detector by `facedet.load`,
plus what exact resume reads back (facedet/resume.py). Files are written atomically: a kill
mid-save leaves the previous checkpoint whole and a `*.pt*.tmp` leftover, removed at the next
start.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facedet.config import to_dict
from facedet.files import atomic_save
from facedet.resume import rng_state

if TYPE_CHECKING:  # for the annotation only: the trainer imports this module
    from facedet.trainer import Trainer


def remove_leftovers(run_dir: Path) -> None:
    """Delete what saves killed half-way (SIGKILL) left in `run_dir`: `last.pt<random>.tmp` files."""
    for stale in run_dir.glob("*.pt*.tmp"):
        stale.unlink(missing_ok=True)


def training_checkpoint(trainer: Trainer, metrics: dict[str, float], interrupted: bool = False) -> dict[str, Any]:
    """The checkpoint dict of `trainer` as it stands; the optimizer's state only with train.save_optimizer."""
    optimizer = {"optimizer": trainer.optimizer.state_dict()} if trainer.cfg.train.save_optimizer else {}
    return {
        "model": trainer.model.state_dict(),
        "config": to_dict(trainer.cfg),
        "epoch": trainer.epoch,
        "iteration": trainer.iteration,
        "images_seen": trainer.images_seen,
        "batch": trainer.batch,  # steps taken in `epoch` (0 at an epoch's end)
        "epoch_sums": trainer.epoch_sums,
        "rng": rng_state(),
        **optimizer,
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.amp.scaler.state_dict(),
        "best": trainer.best,
        "train_time_s": trainer.train_time,
        "metrics": metrics,
        "history": trainer.history,
        "interrupted": interrupted,
        **trainer.extra_state,
    }


def save_checkpoint(trainer: Trainer, path: Path, metrics: dict[str, float], interrupted: bool = False) -> None:
    """Write `trainer`'s checkpoint to `path`, atomically."""
    atomic_save(training_checkpoint(trainer, metrics, interrupted), path)


def save_epoch(trainer: Trainer, metrics: dict[str, float], validating: bool) -> None:
    """After an epoch: last.pt always; best.pt when the main metric beat `trainer.best` (which is
    raised), or when the run has none yet. Only validated epochs compete when `validating`."""
    improved = False
    if not validating or trainer.main_metric in metrics:
        score = metrics[trainer.main_metric] if validating else -trainer.history[-1]["loss"]
        # NaN never compares greater, but a run always ends with some best.pt
        improved = score > trainer.best or not (trainer.run_dir / "best.pt").exists()
        if improved and not math.isnan(score):
            trainer.best = score
    save_checkpoint(trainer, trainer.run_dir / "last.pt", metrics)  # after `best` is updated: resume sees it
    if improved:
        save_checkpoint(trainer, trainer.run_dir / "best.pt", metrics)
