"""One LightningModule that fits any INR to a signal (the INR itself knows nothing of Lightning)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.signal import Signal
from ..errors import XincError
from ..inrs.base import signal_coordinates


class FullBatchPixels(Dataset):
    """``steps`` items, each every pixel of the signal: full-batch training of coordinate INRs.

    Items are ``(coords[P, D], rgb[P, 3])``; the tensors are shared, not copied.
    """

    def __init__(self, signal: Signal, steps: int) -> None:
        self.coords = signal_coordinates(signal.num_frames, signal.height, signal.width)
        self.target = signal.frames.reshape(-1, 3)
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.coords, self.target


class FrameBatches(Dataset):
    """``steps`` items of ``batch_frames`` frames each, cycling through seeded permutations.

    Items are ``(t[B] frame indices, frames[B, 3, H, W])``: frame INRs (NeRV family).
    """

    def __init__(self, signal: Signal, steps: int, batch_frames: int, seed: int) -> None:
        self.frames = signal.frames.permute(0, 3, 1, 2).contiguous()
        self.steps = steps
        self.batch_frames = min(batch_frames, signal.num_frames)
        generator = torch.Generator().manual_seed(seed)
        per_epoch = math.ceil(signal.num_frames / self.batch_frames)
        epochs = math.ceil(steps / per_epoch)
        self.order = torch.cat([torch.randperm(signal.num_frames, generator=generator) for _ in range(epochs + 1)])

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.order[index * self.batch_frames : (index + 1) * self.batch_frames]
        return t, self.frames[t]


class INRFitModule(L.LightningModule):
    """Fits ``model`` to its targets with MSE and Adam.

    Args:
        model: any INR following the contract of :mod:`xinc_bench.inrs.base`.
        lr: Adam learning rate.
        schedule: one of :data:`SCHEDULES`: ``"constant"``; ``"cosine"`` (cosine decay to 0 over
            ``total_steps``); ``"warmup-cosine"`` (the NeRV paper's: linear warm-up from 0.1 x lr
            over the first 10% of the steps, then cosine decay to 0).
        total_steps: number of optimiser steps (for the schedule).
    """

    def __init__(self, model: nn.Module, lr: float, schedule: str = "constant", total_steps: int = 1) -> None:
        super().__init__()
        check_schedule(schedule)
        self.model = model
        self.lr = lr
        self.schedule = schedule
        self.total_steps = total_steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, target = batch
        prediction = self.model(inputs)
        if prediction.shape != target.shape:
            raise XincError(
                f"the INR returned shape {tuple(prediction.shape)} for inputs {tuple(inputs.shape)}; expected "
                f"{tuple(target.shape)}: coordinate INRs map [P, D] -> [P, 3], frame INRs [B] -> [B, 3, H, W]"
            )
        loss = F.mse_loss(prediction, target)
        if not torch.isfinite(loss):
            raise XincError(
                f"training diverged at step {self.global_step}: the loss is {loss.item()} (NaN/inf outputs); "
                "lower the learning rate (--lr) or check the model's initialisation"
            )
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("psnr", -10.0 * torch.log10(loss.detach().clamp(min=1e-12)), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        if self.schedule == "constant":
            return optimizer
        if self.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.total_steps, 1))
        else:
            warmup = round(WARMUP_FRACTION * self.total_steps)
            factor = partial(warmup_cosine_factor, warmup=warmup, total=self.total_steps)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


#: learning-rate schedules of :class:`INRFitModule`
SCHEDULES = ("constant", "cosine", "warmup-cosine")
#: the NeRV paper's warm-up: the first 10% of the steps, rising linearly from 0.1 x lr
WARMUP_FRACTION = 0.1
WARMUP_START_FACTOR = 0.1


def warmup_cosine_factor(step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def check_schedule(schedule: str) -> None:
    """Raise a clear error for a schedule name that is not one of :data:`SCHEDULES`."""
    if schedule not in SCHEDULES:
        raise XincError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
