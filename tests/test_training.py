"""Real Lightning training: determinism, fidelity, divergence and shape errors."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn

from xinc_bench.data import load_signal
from xinc_bench.errors import XincError
from xinc_bench.inrs import create_inr
from xinc_bench.training import fidelity, fit, render


@pytest.fixture(scope="module")
def signal():
    return load_signal("astronaut", (32, 64))


def _fit(signal, seed: int = 0, steps: int = 30):
    L.seed_everything(seed, verbose=False)
    model = create_inr("ffn-paper", height=32, width=64)
    return model, fit(model, signal, steps=steps, seed=seed, progress_bar=False)


def test_training_reduces_loss_and_reports_fidelity(signal) -> None:
    L.seed_everything(0, verbose=False)
    untrained = render(create_inr("ffn-paper", height=32, width=64), signal)
    _, result = _fit(signal)
    assert len(result.loss_history) == 30
    assert result.loss_history[-1] < 0.5 * result.loss_history[0]
    psnr, ssim = fidelity(result.recon, signal.frames)
    assert result.psnr == pytest.approx(psnr) and result.ssim == pytest.approx(ssim)
    assert result.psnr > fidelity(untrained, signal.frames)[0] + 3.0


def test_training_is_deterministic_on_cpu(signal) -> None:
    model_a, result_a = _fit(signal, seed=3, steps=10)
    model_b, result_b = _fit(signal, seed=3, steps=10)
    assert result_a.loss_history == result_b.loss_history
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)


def test_divergence_names_the_step(signal) -> None:
    class Explodes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 3)
            self.calls = 0

        def forward(self, coords: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            out = self.linear(coords)
            return out * float("nan") if self.calls > 3 else out

    with pytest.raises(XincError, match="training diverged at step 3"):
        fit(Explodes(), signal, steps=10, progress_bar=False)


def test_wrong_output_shape_is_reported(signal) -> None:
    with pytest.raises(XincError, match=r"returned shape \(2048, 4\).*expected \(2048, 3\)"):
        fit(nn.Linear(2, 4), signal, steps=2, progress_bar=False)


def test_warmup_cosine_schedule_follows_the_nerv_paper() -> None:
    """0.1 x lr at step 0, rising linearly to lr at 10% of the steps, then cosine decay to 0."""
    from xinc_bench.training.module import INRFitModule

    module = INRFitModule(nn.Linear(2, 3), lr=1e-3, schedule="warmup-cosine", total_steps=100)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-4)
    assert rates[5] == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert rates[10] == pytest.approx(1e-3)
    assert rates[55] == pytest.approx(0.5e-3)
    assert rates[99] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 89 / 90)))
    with pytest.raises(XincError, match="unknown learning-rate schedule 'linear'.*warmup-cosine"):
        INRFitModule(nn.Linear(2, 3), lr=1e-3, schedule="linear")


def test_frame_batches_and_schedule_are_recorded_with_the_checkpoint(tmp_path) -> None:
    import json

    from xinc_bench.data import parse_frames
    from xinc_bench.runs.stages import fit_run

    summary = fit_run("hnerv-small", "synthetic-moving", (16, 32), out=tmp_path / "run", frames=parse_frames("0:4"),
                      steps=6, schedule="warmup-cosine", batch_frames=2, progress_bar=False)
    training = json.loads((tmp_path / "run" / "model.json").read_text())["training"]
    assert (training["schedule"], training["batch_frames"], training["steps"]) == ("warmup-cosine", 2, 6)
    assert summary.psnr > 0
