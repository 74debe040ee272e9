"""Exact resume: a run stopped anywhere continues as if it had never stopped.

Three things make it exact:
* each epoch's shuffling and augmentation depend only on (seed, epoch): `seed_epoch`;
* a run stopped mid-epoch stores its position (`batch`, the steps taken in the epoch) and its
  loss sums so far (`epoch_sums`); the resumed run skips the batches already taken:
  `rest_of_epoch`;
* torch's random state (dropout) is stored with them and put back just before the next
  batch: `rng_state`, `restore_rng`.
`resume` reads a checkpoint that facedet/run_checkpoints.py wrote back into a Trainer.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from facedet import distributed as dist
from facedet.checkpoint import load_checkpoint, load_weights
from facedet.errors import CheckpointError

if TYPE_CHECKING:  # for the annotation only: the trainer imports this module
    from facedet.trainer import Trainer


def seed_epoch(loader: Iterable, seed: int, epoch: int, batch: int, batch_size: int) -> None:
    """Seed epoch `epoch` of `loader` from (seed, epoch) alone; resuming at `batch` (> 0), its
    sampler (when it can skip) starts at that batch. batch_size is per rank under DDP."""
    torch.manual_seed(seed + epoch)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if batch and hasattr(sampler, "skip"):
        sampler.skip(batch * batch_size)
    generator = getattr(loader, "generator", None)
    if generator is not None:
        generator.manual_seed(seed + epoch)


def rest_of_epoch(loader: Iterable, batch: int) -> tuple[Iterator, int]:
    """The epoch's batches from `batch` on, and the epoch's length in batches (for the progress
    bar). A sampler that can skip already starts there (`seed_epoch`); any other loader is read
    past the batches already taken."""
    batches, total = iter(loader), len(loader)
    if hasattr(getattr(loader, "sampler", None), "skip"):
        total += batch
    else:
        for _ in itertools.islice(batches, batch):
            pass
    return batches, total


def rng_state() -> dict[str, Any]:
    """torch's random state, CPU and every GPU: what a mid-epoch checkpoint stores."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict[str, Any]) -> None:
    """Put back a state saved by `rng_state` (the GPUs' only where there are GPUs and it holds theirs)."""
    torch.set_rng_state(state["cpu"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


def resume(trainer: Trainer, path: str) -> None:
    """Continue `trainer` from checkpoint `path`: weights, optimizer, schedule, loss scaler,
    position (epoch, iteration, batch, epoch_sums), random state, best score, history, time."""
    state = load_checkpoint(path)
    load_weights(trainer.model, state, path, trainer.cfg.model.name)
    try:
        if "optimizer" in state:
            trainer.optimizer.load_state_dict(state["optimizer"])
        elif dist.is_main():
            print(f"warning: {path} holds no optimizer state (train.save_optimizer=false): "
                  f"{trainer.cfg.train.optimizer}'s state starts afresh, so this run is not an exact continuation")
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.amp.scaler.load_state_dict(state.get("scaler", {}))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot resume the optimizer ({err})") from None
    trainer.epoch, trainer.iteration = state["epoch"], state["iteration"]
    trainer.batch, trainer.epoch_sums = int(state.get("batch", 0)), dict(state.get("epoch_sums", {}))
    trainer.resume_rng = state.get("rng") if trainer.batch else None  # at an epoch's end, seed_epoch suffices
    trainer.best, trainer.history = state.get("best", -math.inf), list(state.get("history", []))
    trainer.train_time = float(state.get("train_time_s", 0.0))
    sized = state["config"].get("train", {}).get("max_iters", 0)
    if trainer.budget is not None and sized:  # train.minutes sized the interrupted run: keep its length
        trainer.budget = None
        trainer.set_length(int(sized))
    if dist.is_main():
        at = f", batch {trainer.batch}" if trainer.batch else ""
        print(f"resumed from {path} at epoch {trainer.epoch + 1}{at} (iteration {trainer.iteration})")
