"""Mixed precision on CUDA (train.amp): the forward pass in bfloat16, or in float16 with loss
scaling on GPUs without bfloat16; on the CPU, or with train.amp off, everything stays float32.

    amp = MixedPrecision(cfg.train.amp, device)
    with amp.autocast():
        outputs = model(images)
    amp.scaler.scale(loss).backward()     # a pass-through unless float16 needs the scaling
"""
from __future__ import annotations

import contextlib

import torch


class MixedPrecision:
    """`autocast()` for the forward pass and the `scaler` for backward and step."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled and device.type == "cuda"
        # bfloat16 needs no loss scaling; float16 (older GPUs) does
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)
