"""Optimizer with per-group options, and learning-rate schedules counted in iterations."""
from __future__ import annotations

import math

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


def lr_factor(cfg: TrainConfig, iteration: int, total_iters: int) -> float:
    """Multiplier of the base learning rate at `iteration` (0-based)."""
    if cfg.warmup_iters and iteration < cfg.warmup_iters:
        # linear warm-up from 1% of the rate, as in Goyal et al. (2017)
        return 0.01 + 0.99 * iteration / cfg.warmup_iters
    if cfg.schedule == "step":
        return cfg.gamma ** (iteration // cfg.step_size)
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(iteration >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        progress = min(1.0, iteration / max(1, total_iters))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_iters: int):
    """A LambdaLR stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(cfg, it, total_iters)
    )
