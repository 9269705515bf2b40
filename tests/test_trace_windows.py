"""Tracing a window of frames: every tracer computes frames [a, b) alone, equal to the whole trace's slice."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from xinc_bench.errors import XincError  # (importing xinc_bench registers every tracer and preset)
from xinc_bench.inrs.base import create_inr
from xinc_bench.inrs.nerv import HNeRV, NeRV
from xinc_bench.registry import TRACERS

HEIGHT, WIDTH = 8, 16
#: chunk sizes (output pixels) whose seams fall inside frames or across windows
CHUNK_SIZES = {"mlp": 100, "mlp-signed": 100, "linear": 100, "linear-signed": 100, "ablation": 2048, "cnn": 2 * HEIGHT * WIDTH}


def ffn_image() -> nn.Module:
    torch.manual_seed(0)
    return create_inr("ffn-paper", height=HEIGHT, width=WIDTH, mapping_size=16, hidden_width=12).eval()


def ffn_video() -> nn.Module:
    torch.manual_seed(0)
    return create_inr("ffn-video", mapping_size=16, hidden_width=12).eval()


def small_nerv() -> nn.Module:
    """A narrow NeRV at 8x16 (16-d encoding of t, stem 1x2, three x2 blocks)."""
    torch.manual_seed(1)
    return NeRV(5, HEIGHT, WIDTH, encoding_levels=8, stem_width=8, widths=(6, 5, 4), upscales=(2, 2, 2)).eval()


def small_hnerv() -> nn.Module:
    """A narrow HNeRV at 8x16: its frame index picks an embedding, so absolute time matters."""
    torch.manual_seed(2)
    model = HNeRV(5, HEIGHT, WIDTH, encoder_widths=(4, 4, 4), downscales=(2, 2, 2), stem_width=8, widths=(6, 5, 4),
                  upscales=(2, 2, 2)).eval()
    model.set_frames(torch.rand(5, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(3)))
    model.cache_embeddings()
    return model


#: model name -> (factory, number of frames, tracers that apply)
MODELS: dict[str, tuple[Callable[[], nn.Module], int, list[str]]] = {
    "ffn-image": (ffn_image, 1, ["mlp", "mlp-signed", "linear", "linear-signed", "ablation"]),
    "ffn-video": (ffn_video, 4, ["mlp", "mlp-signed", "linear", "linear-signed", "ablation"]),
    "nerv": (small_nerv, 5, ["cnn", "linear", "linear-signed", "ablation"]),
    "hnerv": (small_hnerv, 5, ["cnn"]),
}
CASES = [(model, tracer) for model, (_, _, tracers) in MODELS.items() for tracer in tracers]


def test_every_registered_tracer_is_covered() -> None:
    assert {tracer for _, tracer in CASES} == set(TRACERS.names())


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: factory() for name, (factory, _, _) in MODELS.items()}


def trace(
    tracer: str, model: nn.Module, shape: tuple[int, int, int], frames: tuple[int, int] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any], int]:
    """``tracer``'s canvas arrays, recon, checks and reported pixels over ``frames`` (None: all)."""
    implementation = TRACERS.get(tracer)
    first, stop = frames if frames is not None else (0, shape[0])
    window = (stop - first, *shape[1:])
    arrays = {name: np.full((count, *window), np.nan, np.float32) for name, count in implementation.layers(model, shape).items()}
    recon = np.full((*window, 3), np.nan, np.float32)
    pixels: list[int] = []
    checks = implementation.trace(model, shape, arrays, recon, CHUNK_SIZES[tracer], pixels.append, frames=frames)
    return arrays, recon, checks, sum(pixels)


def windows(num_frames: int) -> list[tuple[int, int]]:
    """``[0, 2), [2, 3), [3, T)`` (the one window ``[0, 1)`` of an image)."""
    return [(0, 1)] if num_frames == 1 else [(0, 2), (2, 3), (3, num_frames)]


@pytest.mark.parametrize(("model_name", "tracer"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_windows_concatenate_to_the_whole_trace(models: dict[str, nn.Module], model_name: str, tracer: str) -> None:
    num_frames = MODELS[model_name][1]
    shape = (num_frames, HEIGHT, WIDTH)
    whole, whole_recon, whole_checks, whole_pixels = trace(tracer, models[model_name], shape)
    assert whole_pixels == num_frames * HEIGHT * WIDTH
    parts = []
    for first, stop in windows(num_frames):
        arrays, recon, checks, pixels = trace(tracer, models[model_name], shape, (first, stop))
        assert pixels == (stop - first) * HEIGHT * WIDTH
        assert set(checks) == set(whole_checks)
        for key, value in checks.items():
            if isinstance(value, float):  # an exact check holds on every window (NeRV's tanh breaks the linear one)
                assert np.isfinite(value) and (value < 1e-4 or whole_checks[key] >= 1e-4), (key, value)
            else:
                assert value == whole_checks[key], key
        parts.append((arrays, recon))
    for name, array in whole.items():
        stitched = np.concatenate([arrays[name] for arrays, _ in parts], axis=1)
        torch.testing.assert_close(torch.from_numpy(stitched), torch.from_numpy(array), rtol=1e-5, atol=1e-6, msg=name)
    stitched_recon = np.concatenate([recon for _, recon in parts], axis=0)
    torch.testing.assert_close(torch.from_numpy(stitched_recon), torch.from_numpy(whole_recon), rtol=1e-5, atol=1e-6)


def test_only_the_window_reaches_the_model(models: dict[str, nn.Module], monkeypatch: pytest.MonkeyPatch) -> None:
    nerv, video = models["nerv"], models["ffn-video"]
    seen_frames: list[int] = []
    seen_times: list[float] = []
    nerv_trace, video_trace = nerv.trace, video.trace
    monkeypatch.setattr(nerv, "trace", lambda t: seen_frames.extend(t.tolist()) or nerv_trace(t))
    monkeypatch.setattr(video, "trace", lambda coords: seen_times.extend(coords[:, 0].tolist()) or video_trace(coords))
    trace("cnn", nerv, (5, HEIGHT, WIDTH), (2, 4))
    trace("mlp", video, (4, HEIGHT, WIDTH), (3, 4))
    assert sorted(set(seen_frames)) == [2, 3]
    assert set(seen_times) == {1.0}  # the last of 4 frames, t spaced over [-1, 1]


@pytest.mark.parametrize("frames", [(-1, 2), (2, 2), (3, 1), (0, 6)])
@pytest.mark.parametrize("tracer", ["cnn", "linear", "ablation"])
def test_a_window_outside_the_signal_is_refused(models: dict[str, nn.Module], tracer: str, frames: tuple[int, int]) -> None:
    arrays = {"head": np.empty((4, 1, HEIGHT, WIDTH), np.float32)}
    with pytest.raises(XincError, match=rf"frame window \[{frames[0]}, {frames[1]}\) .* 5 frames"):
        TRACERS.get(tracer).trace(models["nerv"], (5, HEIGHT, WIDTH), arrays, np.empty((1, HEIGHT, WIDTH, 3)), 64,
                                  frames=frames)


def test_an_image_has_one_frame_to_window(models: dict[str, nn.Module]) -> None:
    with pytest.raises(XincError, match=r"frame window \[0, 2\) .* 1 frame; .* 0 <= a < b <= 1"):
        trace("mlp", models["ffn-image"], (1, HEIGHT, WIDTH), (0, 2))


def test_arrays_of_the_whole_signal_are_refused_for_a_window(models: dict[str, nn.Module]) -> None:
    shape = (5, HEIGHT, WIDTH)
    arrays = {"head": np.empty((12, *shape), np.float32)}
    with pytest.raises(XincError, match=r"\[N, 2, 8, 16\] canvas arrays .* head \(12, 5, 8, 16\)"):
        TRACERS.get("cnn").trace(models["nerv"], shape, arrays, np.empty((2, HEIGHT, WIDTH, 3)), 64, frames=(1, 3))
