"""Fit an INR to a signal with Lightning and measure its fidelity."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ..data.signal import Signal
from ..inrs.base import render_output
from .module import FrameBatches, FullBatchPixels, INRFitModule


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter (accelerators found, tips); its warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        recon: ``[T, H, W, 3]`` reconstruction (unclipped model output).
        psnr: mean over frames of PSNR (dB) of the clipped reconstruction, data range 1.
        ssim: mean over frames of SSIM of the clipped reconstruction.
        seconds_per_step: wall time per optimiser step.
        loss_history: training loss per step.
    """

    recon: torch.Tensor
    psnr: float
    ssim: float
    seconds_per_step: float
    loss_history: list[float]


class _LossHistory(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, *_: Any) -> None:
        self.losses.append(float(outputs["loss"]))


def fit(
    model: nn.Module,
    signal: Signal,
    *,
    steps: int = 1000,
    lr: float = 9e-4,
    schedule: str = "constant",
    seed: int = 0,
    batch_frames: int = 1,
    progress_bar: bool = True,
    logger: Any = False,
    accelerator: str = "cpu",
) -> FitResult:
    """Train ``model`` on ``signal`` for ``steps`` optimiser steps, then measure PSNR and SSIM.

    Coordinate INRs train full batch (every pixel each step, as in the paper); frame INRs train on
    ``batch_frames`` frames per step. Deterministic on CPU for a fixed ``seed``. Models that
    declare ``needs_frames`` (HNeRV) are given the signal's frames first; models that declare
    ``needs_signal`` (the known-answer INRs) are given the whole signal (``set_signal``).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    if getattr(model, "needs_frames", False):
        model.set_frames(signal.frames)  # encoder-based INRs (HNeRV) read the frames they embed
    if getattr(model, "needs_signal", False):
        model.set_signal(signal)  # known-answer INRs read their pixel groups from the signal
    input_kind = getattr(model, "input_kind", "coords")
    if input_kind == "frame":
        dataset = FrameBatches(signal, steps, batch_frames, seed)
    else:
        dataset = FullBatchPixels(signal, steps)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=0)
    module = INRFitModule(model, lr=lr, schedule=schedule, total_steps=steps)
    history = _LossHistory()
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        max_epochs=1,
        logger=logger,
        callbacks=[history],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        deterministic=accelerator == "cpu",
        log_every_n_steps=max(1, min(50, steps)),
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Lightning's own use of an API torch deprecates, printed on every fit; nothing a user can change
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        trainer.fit(module, loader)
    seconds_per_step = (time.perf_counter() - started) / max(steps, 1)
    model.cpu().eval()
    recon = render(model, signal)
    psnr, ssim = fidelity(recon, signal.frames)
    return FitResult(recon, psnr, ssim, seconds_per_step, history.losses)


def render(model: nn.Module, signal: Signal, chunk_size: int = 65536) -> torch.Tensor:
    """The model's output ``[T, H, W, 3]`` on the signal's grid (unclipped)."""
    return render_output(model, (signal.num_frames, signal.height, signal.width), chunk_size)


def fidelity(recon: torch.Tensor, frames: torch.Tensor) -> tuple[float, float]:
    """Mean per-frame PSNR (dB) and SSIM of ``recon`` clipped to [0, 1] against ``frames`` ([T, H, W, 3])."""
    pred = recon.clamp(0.0, 1.0).permute(0, 3, 1, 2)
    target = frames.permute(0, 3, 1, 2)
    psnr = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")
    return float(psnr.mean()), float(ssim.mean())
