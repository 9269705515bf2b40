"""The CNN canvas of NeRV-family models (SPEC 4.2): kernel counts, exactness, the reference rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xinc_bench.canvas.ablation  # noqa: F401  (registers the ablation tracer)
import xinc_bench.canvas.cnn as cnn
import xinc_bench.inrs.mlp  # noqa: F401  (registers ffn-paper)
from xinc_bench.canvas.canvas import Canvas
from xinc_bench.canvas.compute import compute_canvas
from xinc_bench.data.signal import Signal
from xinc_bench.errors import XincError
from xinc_bench.inrs.base import create_inr, render_output
from xinc_bench.inrs.nerv import NeRV, nerv_paper
from xinc_bench.registry import TRACERS

SHAPE = (3, 32, 64)


def small_nerv(output_activation: str = "tanh") -> NeRV:
    """A narrow NeRV (kernels: block1 768, block2 120, block3 80, head 12) for fast canvases."""
    torch.manual_seed(1)
    model = NeRV(*SHAPE, stem_width=8, widths=(6, 5, 4), output_activation=output_activation)
    return model.eval()


def random_signal() -> Signal:
    return Signal(torch.rand(*SHAPE, 3, generator=torch.Generator().manual_seed(0)), "noise")


@pytest.fixture(scope="module")
def paper_canvas() -> tuple[NeRV, Canvas]:
    """A randomly initialised nerv-paper at 32x64 over 3 frames and its float32 canvas (in memory)."""
    torch.manual_seed(0)
    model = nerv_paper(num_frames=SHAPE[0], height=SHAPE[1], width=SHAPE[2])
    return model, compute_canvas(model, random_signal(), "cnn")


def test_kernel_counts_of_the_paper_model_in_network_order() -> None:
    model = create_inr("nerv-paper", num_frames=30, height=128, width=256)
    counts = TRACERS.get("cnn").layers(model, (30, 128, 256))
    assert counts == {"block1": 18_352, "block2": 3_224, "block3": 2_288, "head": 66}
    assert list(counts) == ["block1", "block2", "block3", "head"]


def test_exactness_checks_hold_on_a_random_paper_model(paper_canvas) -> None:
    model, canvas = paper_canvas
    checks = canvas.metadata["checks"]
    assert set(checks) == {
        "block1_gelu_sum_max_abs_error",
        "block2_gelu_sum_max_abs_error",
        "block3_gelu_sum_max_abs_error",
        "head_sum_max_rel_error",
    }
    assert checks["head_sum_max_rel_error"] <= 1e-5
    assert all(checks[f"block{j}_gelu_sum_max_abs_error"] <= 1e-4 for j in (1, 2, 3))
    assert canvas.layer_names == ["block1", "block2", "block3", "head"]
    assert canvas.layer("block1").shape == (18_352, *SHAPE)


def test_head_canvas_sums_to_the_pre_activation_output(paper_canvas) -> None:
    model, canvas = paper_canvas
    with torch.no_grad():
        trace = model.trace(torch.arange(SHAPE[0]))
    head = canvas.layer("head").reshape(22, 3, *SHAPE).sum(dim=0)  # [RGB, T, H, W]
    torch.testing.assert_close(head.permute(1, 0, 2, 3), trace.head_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(canvas.recon, trace.output.permute(0, 2, 3, 1))


def reference_last_block(x: torch.Tensor, conv: torch.nn.Conv2d, r: int) -> torch.Tensor:
    """The reference's last-block rule for one frame: ``[C_in, C_conv, H, W]``.

    Per input channel conv (bias split over inputs), PixelShuffle, repeat the shuffled maps r^2
    times, interleave them so channel c * r^2 + s is a copy of shuffled channel c, zero every
    pixel off sub-lattice s, GELU, 3x3 mean filter.
    """
    c_in, c_conv = conv.in_channels, conv.out_channels
    per_input = torch.stack(
        [F.conv2d(x[None, i : i + 1], conv.weight[:, i : i + 1], conv.bias / c_in, padding=1)[0] for i in range(c_in)]
    )
    shuffled = F.pixel_shuffle(per_input, r)
    height, width = shuffled.shape[-2:]
    repeated = shuffled.repeat(1, r * r, 1, 1).view(c_in, r * r, c_conv // (r * r), height, width)
    repeated = repeated.transpose(1, 2).reshape(c_in, c_conv, height, width)
    lattice = (torch.arange(height)[:, None] % r) * r + torch.arange(width)[None, :] % r
    on_lattice = lattice[None, None] == (torch.arange(c_conv) % (r * r))[None, :, None, None]
    return F.avg_pool2d(F.gelu(torch.where(on_lattice, repeated, 0.0)), 3, stride=1, padding=1)


def test_last_block_matches_the_reference_algorithm(paper_canvas) -> None:
    model, canvas = paper_canvas
    block3 = canvas.layer("block3").reshape(26, 88, *SHAPE)
    with torch.no_grad():
        inputs = model.trace(torch.arange(SHAPE[0])).inputs[2]
        for t in range(SHAPE[0]):
            expected = reference_last_block(inputs[t], model.blocks[2].conv, 2)
            torch.testing.assert_close(block3[:, :, t], expected, atol=2e-6, rtol=1e-5)


def direct_kernel_contribution(model: NeRV, block: int, i: int, o: int, t: int) -> torch.Tensor:
    """SPEC 4.2 for one kernel, written out with torch's own PixelShuffle, pooling and upsampling."""
    conv = model.blocks[block].conv
    r = model.blocks[block].upscale
    x = model.trace(torch.tensor([t])).inputs[block][0, i]
    weight, bias = conv.weight[o : o + 1, i : i + 1], conv.bias[o : o + 1] / conv.in_channels
    kernel_map = F.conv2d(x[None, None], weight, bias, padding=1)
    conv_output = torch.zeros(1, conv.out_channels, *x.shape)
    conv_output[0, o] = kernel_map[0, 0]
    maps = F.gelu(F.pixel_shuffle(conv_output, r)[:, o // (r * r) : o // (r * r) + 1])
    for later in model.blocks[block + 1 :]:
        maps = F.gelu(F.interpolate(F.avg_pool2d(maps, 3, 1, 1), scale_factor=later.upscale, mode="nearest"))
    return F.avg_pool2d(maps, 3, 1, 1)[0, 0]


@pytest.mark.parametrize(
    ("layer", "block", "kernels"),
    [("block1", 0, [(0, 0), (5, 17), (36, 495)]), ("block2", 1, [(3, 50), (30, 103)])],
)
def test_inner_blocks_follow_the_carry_rule(
    paper_canvas, layer: str, block: int, kernels: list[tuple[int, int]]
) -> None:
    model, canvas = paper_canvas
    conv_channels = model.blocks[block].conv.out_channels
    values = canvas.layer(layer)
    with torch.no_grad():
        for i, o in kernels:
            for t in (0, 2):
                expected = direct_kernel_contribution(model, block, i, o, t)
                torch.testing.assert_close(values[i * conv_channels + o, t], expected, atol=2e-6, rtol=1e-5)


def test_canvas_streams_into_a_float16_file(tmp_path: Path) -> None:
    model = small_nerv()
    in_memory = compute_canvas(model, random_signal(), "cnn")
    on_disk = compute_canvas(model, random_signal(), "cnn", out=tmp_path / "c.safetensors", dtype=torch.float16)
    assert on_disk.layer_names == ["block1", "block2", "block3", "head"]
    assert on_disk.metadata["tracer"] == "cnn" and on_disk.metadata["dtype"] == "float16"
    assert on_disk.metadata["checks"]["head_sum_max_rel_error"] <= 1e-5
    for name, count in {"block1": 768, "block2": 120, "block3": 80, "head": 12}.items():
        stored = on_disk.layer(name)
        assert stored.shape == (count, *SHAPE)
        torch.testing.assert_close(stored, in_memory.layer(name), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(on_disk.recon, in_memory.recon)


def test_chunking_does_not_change_the_canvas() -> None:
    model = small_nerv()
    layers = TRACERS.get("cnn").layers(model, SHAPE)
    results = []
    for tracer, chunk_size in [(cnn.CNNTracer(), 16384), (cnn.CNNTracer(max_chunk_values=20_000), 1)]:
        arrays = {name: np.empty((count, *SHAPE), np.float32) for name, count in layers.items()}
        tracer.trace(model, SHAPE, arrays, np.empty((*SHAPE, 3), np.float32), chunk_size)
        results.append(arrays)
    for name in layers:
        np.testing.assert_allclose(results[1][name], results[0][name], atol=1e-6, rtol=0)


def test_hnerv_gets_the_same_layers_and_exact_checks() -> None:
    torch.manual_seed(0)
    model = create_inr("hnerv-small", num_frames=SHAPE[0], height=SHAPE[1], width=SHAPE[2]).eval()
    signal = random_signal()
    model.set_frames(signal.frames)
    model.canvas_layers = ["block3", "head"]
    canvas = compute_canvas(model, signal, "cnn")
    assert canvas.layer_names == ["block3", "head"]
    assert canvas.layer("block3").shape == (2_288, *SHAPE)
    assert canvas.metadata["checks"]["head_sum_max_rel_error"] <= 1e-5
    assert canvas.metadata["checks"]["block3_gelu_sum_max_abs_error"] <= 1e-4


def test_head_canvas_agrees_with_ablation_on_an_identity_output() -> None:
    """With an identity output map, zeroing head input channel i removes sum_o W[o, i] * z_i from the
    RGB sum: ablation[i] = sum_o C[i, o] - sum_o b[o] / C_in."""
    model = small_nerv(output_activation="identity")
    exact = compute_canvas(model, random_signal(), "cnn").layer("head").reshape(4, 3, *SHAPE)
    ablation = np.empty((4, *SHAPE), np.float32)
    TRACERS.get("ablation").trace(model, SHAPE, {"head": ablation}, np.empty((*SHAPE, 3), np.float32), 1 << 16)
    bias_share = float(model.head.bias.detach().sum()) / 4
    torch.testing.assert_close(torch.from_numpy(ablation), exact.sum(dim=1) - bias_share, atol=1e-5, rtol=1e-4)


def test_models_without_a_conv_decoder_are_refused() -> None:
    with pytest.raises(XincError, match="ablation"):
        TRACERS.get("cnn").layers(create_inr("ffn-paper"), (1, 32, 32))


@pytest.mark.parametrize(("model", "tracer"), [("small-nerv", "cnn"), ("ffn-paper", "mlp"), ("ffn-paper", "linear")])
def test_tracers_report_progress_in_output_pixels(model: str, tracer: str) -> None:
    signal = random_signal()
    net = small_nerv() if model == "small-nerv" else create_inr(model, height=signal.height, width=signal.width)
    if model == "ffn-paper":
        signal = Signal(signal.frames[:1], name="one frame")
    ticks: list[int] = []
    compute_canvas(net, signal, tracer, chunk_size=signal.height * signal.width // 2 or 1, progress=ticks.append)
    assert len(ticks) >= 2 and sum(ticks) == signal.num_pixels  # one tick per chunk, every pixel counted once


def apply_phases(phases: cnn.PhaseFilter, signal: torch.Tensor) -> torch.Tensor:
    """``phases`` on a 1-D ``signal`` (zero outside it), straight from the definition of its taps."""
    before, after = phases.reach
    padded = F.pad(signal, (before, after))
    length = len(signal)
    out = torch.zeros(phases.upscale * length, dtype=signal.dtype)
    for phase, taps in enumerate(phases.taps):
        for shift, weight in taps:
            out[phase :: phases.upscale] += weight * padded[before + shift : before + shift + length]
    return out


def box_sum(signal: torch.Tensor, size: int) -> torch.Tensor:
    return F.conv1d(signal[None, None], torch.ones(1, 1, size, dtype=signal.dtype), padding=size // 2)[0, 0]


@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [1, 3, 5])
def test_phase_filters_are_placement_or_upsampling_then_a_box(upscale: int, size: int) -> None:
    signal = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(upscale * 10 + size))
    expected = box_sum(signal.repeat_interleave(upscale), size)
    torch.testing.assert_close(apply_phases(cnn.upsample_box(upscale, size), signal), expected)
    for offset in range(upscale):
        placed = torch.zeros(upscale * len(signal), dtype=torch.float64)
        placed[offset::upscale] = signal
        torch.testing.assert_close(apply_phases(cnn.sublattice_box(upscale, offset, size), signal), box_sum(placed, size))


def reference_canvas(model: NeRV, num_frames: int) -> dict[str, torch.Tensor]:
    """SPEC 4.2 for every kernel of every layer, written with torch's own ops: one grouped conv, the
    pixel-shuffle placement, GELU, then mean pooling and nearest upsampling per downstream block."""
    with torch.no_grad():
        trace = model.trace(torch.arange(num_frames))
        canvas = {}
        for layer, x in zip(cnn.canvas_convs(model), trace.inputs):
            conv = layer.conv
            inputs, channels, size = conv.in_channels, conv.out_channels, conv.kernel_size[0]
            weight = conv.weight.transpose(0, 1).reshape(inputs * channels, 1, size, size)  # n = i * C_conv + o
            maps = F.conv2d(x, weight, (conv.bias / inputs).repeat(inputs), padding=size // 2, groups=inputs)
            if layer.activation:
                r = layer.upscale
                batch, kernels, height, width = maps.shape
                offsets = torch.arange(kernels) % channels % (r * r)
                placed = maps.new_zeros(batch, kernels, height * r, width * r)
                for offset in range(r * r):
                    chosen = offsets == offset
                    placed[:, chosen, offset // r :: r, offset % r :: r] = F.gelu(maps[:, chosen])
                maps = placed
                for box, upscale in layer.carry:
                    maps = F.gelu(F.interpolate(F.avg_pool2d(maps, box, 1, box // 2), scale_factor=upscale, mode="nearest"))
                maps = F.avg_pool2d(maps, layer.head_box, 1, layer.head_box // 2)
            canvas[layer.name] = maps.transpose(0, 1)
    return canvas


def unusual_decoder(name: str) -> NeRV:
    torch.manual_seed(3)
    small = {"stem_width": 4, "widths": (3, 3, 2)}
    if name == "upscales 4, 2, 2 (block 1 reads one tap: a table gather)":
        return NeRV(2, 32, 64, upscales=(4, 2, 2), **small).eval()
    if name == "upscales 2, 2, 2 (phases read one or two taps)":
        return NeRV(2, 16, 32, upscales=(2, 2, 2), **small).eval()
    if name == "5x5 kernels, upscales 3, 1, 2":
        return NeRV(2, 24, 48, upscales=(3, 1, 2), kernel_size=5, **small).eval()
    if name == "1x1 kernels (every stage only moves samples)":
        return NeRV(2, 16, 32, upscales=(2, 2, 2), kernel_size=1, **small).eval()
    model = NeRV(2, 16, 32, upscales=(2, 2, 2), **small).eval()  # a 1x1 block 3: block 1 carries a box of 1
    model.blocks[2].conv = torch.nn.Conv2d(3, 2 * 4, 1)
    return model


@pytest.mark.parametrize("name", [
    "upscales 4, 2, 2 (block 1 reads one tap: a table gather)",
    "upscales 2, 2, 2 (phases read one or two taps)",
    "5x5 kernels, upscales 3, 1, 2",
    "1x1 kernels (every stage only moves samples)",
    "a 1x1 block between 3x3 ones (a stage that only moves samples mid-way)",
])
def test_every_kernel_follows_the_rule_written_with_torch_ops(name: str) -> None:
    model = unusual_decoder(name)
    shape = (2, model.height, model.width)
    layers = TRACERS.get("cnn").layers(model, shape)
    for tracer, chunk_size in [(cnn.CNNTracer(), 1 << 16), (cnn.CNNTracer(max_chunk_values=700), 1)]:
        arrays = {layer: np.full((count, *shape), np.nan, np.float32) for layer, count in layers.items()}
        tracer.trace(model, shape, arrays, np.empty((*shape, 3), np.float32), chunk_size)
        for layer, expected in reference_canvas(model, shape[0]).items():
            torch.testing.assert_close(torch.from_numpy(arrays[layer]), expected, atol=2e-6, rtol=1e-5)


def test_block1_of_the_paper_model_is_one_gather_and_block2_is_not() -> None:
    """The fast path of the paper's largest layer: its placement and the next box read one sample each."""
    model = nerv_paper(num_frames=1, height=128, width=256)
    block1, block2 = cnn.canvas_convs(model)[:2]
    for offset in range(16):
        stages = cnn.carry_stages(block1, offset)
        assert stages[0].copies and not stages[1].copies
        assert cnn.SingleTap.of(tuple(stages[:2]), (8, 16), stages[2].cols.reach) is not None
    for offset in range(4):
        stages = cnn.carry_stages(block2, offset)
        assert cnn.SingleTap.of(tuple(stages[:1]), (32, 64), stages[1].cols.reach) is None


def test_workers_trace_the_same_canvas_as_one_thread() -> None:
    model = small_nerv()
    layers = TRACERS.get("cnn").layers(model, SHAPE)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            arrays = {name: np.empty((count, *SHAPE), np.float32) for name, count in layers.items()}
            checks = cnn.CNNTracer(max_chunk_values=5_000).trace(model, SHAPE, arrays, np.empty((*SHAPE, 3), np.float32), 1)
            assert torch.get_num_threads() == threads  # the workers' one thread each is undone
            results.append((arrays, checks))
    finally:
        torch.set_num_threads(previous)
    (one, one_checks), (two, two_checks) = results
    for name in layers:
        np.testing.assert_array_equal(two[name], one[name])
    assert two_checks.keys() == one_checks.keys() and all(two_checks[k] <= 1e-4 for k in two_checks)


@pytest.mark.parametrize("layer", ["block1", "block2", "block3", "head"])
def test_batched_kernel_ablation_equals_one_full_forward_per_kernel(layer: str) -> None:
    # from the layer on, in batches, against zeroing each kernel's weight and bias share in the model
    model = small_nerv()
    with torch.no_grad():
        base = render_output(model, SHAPE)
    count = {conv.name: conv.num_kernels for conv in cnn.canvas_convs(model)}[layer]
    kernels = torch.randperm(count, generator=torch.Generator().manual_seed(2))[:7]
    fast = cnn.kernel_ablation_maps(model, layer, kernels, base, batch=3)  # batches of 3, 3 and 1
    slow = torch.stack([(base - cnn.kernel_ablated_output(model, layer, k, SHAPE)).sum(dim=-1) for k in kernels])
    assert fast.shape == (7, *SHAPE) and float(slow.abs().max()) > 1e-4  # the kernels matter
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
