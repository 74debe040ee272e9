"""Optimizer with per-group options, and learning-rate schedules counted in iterations."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from facedet.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over two groups: weights, and biases + norm parameters.

    Biases get `lr * bias_lr_factor` (the SSD paper's doubled bias learning rate) and,
    like normalisation scales, no weight decay: shrinking them does not regularise.
    """
    weights, others = [], []
    for param in model.parameters():
        if param.requires_grad:
            (weights if param.ndim > 1 else others).append(param)
    groups = [
        {"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": others, "lr": cfg.lr * cfg.bias_lr_factor, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


# A warm-up never takes more than this share of the run: a 48-step run with the configs' 100
# warm-up steps would otherwise never reach its learning rate, let alone decay it. Goyal et al.
# (2017) warm up for 5 of 90 epochs; a tenth leaves short runs most of their steps at full rate.
MAX_WARMUP_SHARE = 0.1


def warmup_steps(cfg: TrainConfig, total_iters: int) -> int:
    """train.warmup_iters, clipped to MAX_WARMUP_SHARE of a run of `total_iters` steps."""
    return min(cfg.warmup_iters, int(MAX_WARMUP_SHARE * total_iters))


def warmup_note(cfg: TrainConfig, total_iters: int) -> str | None:
    """The log line of a clipped warm-up (None when train.warmup_iters fits the run)."""
    steps = warmup_steps(cfg, total_iters)
    if steps == cfg.warmup_iters:
        return None
    return (f"note: warm-up clipped to {steps} of the run's {total_iters} steps (train.warmup_iters={cfg.warmup_iters}, "
            f"at most {MAX_WARMUP_SHARE:.0%} of a run), so the learning rate reaches its peak and decays")


def lr_factor(cfg: TrainConfig, iteration: int, total_iters: int) -> float:
    """Multiplier of the base learning rate at `iteration` (0-based) of a run of `total_iters` steps."""
    warmup = warmup_steps(cfg, total_iters)
    if warmup and iteration < warmup:
        # linear warm-up from 1% of the rate, as in Goyal et al. (2017)
        return 0.01 + 0.99 * iteration / warmup
    if cfg.schedule == "step":
        return cfg.gamma ** (iteration // cfg.step_size)
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(iteration >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        progress = min(1.0, iteration / max(1, total_iters))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_iters: Callable[[], int]):
    """A LambdaLR stepped once per iteration; `total_iters()` is the run's length at each step
    (train.minutes sets it after the first steps, see facedet/time_budget.py)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(cfg, it, total_iters())
    )
