"""The faithfulness probe on a model whose canvas and ablations are known in advance.

``StripINR`` paints a 16 x 32 image in 8 vertical strips: a fixed (untraced) encoding turns a
pixel's coordinates into the one-hot code of its strip, and one ``nn.Linear(8, 3)`` maps each
code to the strip's colour. Its neurons (the Linear's inputs) each own one strip, so the linear
canvas equals the ablation canvas exactly, and zeroing a strip's neuron blanks that strip only.
"""

from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import xinc_bench.canvas.hooks  # noqa: F401  (registers the linear tracers)
import xinc_bench.canvas.mlp  # noqa: F401  (registers the mlp tracers)
import xinc_bench.inrs.mlp  # noqa: F401  (registers the MLP zoo)
from xinc_bench.canvas import Canvas, compute_canvas
from xinc_bench.data.signal import Signal
from xinc_bench.errors import XincError
from xinc_bench.inrs.base import create_inr, signal_coordinates
from xinc_bench.probes.accumulator import run_accumulator
from xinc_bench.probes.base import ProbeResult, load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.faithfulness import deletion_region
from xinc_bench.probes.stats import summarise_null
from accumulating import assert_same_result, unreadable

H, W, STRIPS = 16, 32, 8


class StripINR(nn.Module):
    """``coords[P, 2] -> rgb[P, 3]``: one-hot strip code, then a Linear holding the colours."""

    input_kind = "coords"

    def __init__(self, colours: torch.Tensor) -> None:
        super().__init__()
        self.head = nn.Linear(STRIPS, 3)
        with torch.no_grad():
            self.head.weight.copy_(colours.T)
            self.head.bias.zero_()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        column = torch.round((coords[:, 1] / 2 + 0.5) * (max(H, W) - 1))
        strip = (column // (W // STRIPS)).long().clamp(0, STRIPS - 1)
        return self.head(nn.functional.one_hot(strip, STRIPS).float())


def _colours() -> torch.Tensor:
    colours = 0.3 + 0.2 * torch.rand(STRIPS, 3, generator=torch.Generator().manual_seed(0))
    colours[5] = 0.95  # the strip with the largest total mass, not the one under test
    return colours


def _setup(strip: int = 3) -> tuple[StripINR, Canvas]:
    model = StripINR(_colours()).eval()
    with torch.no_grad():
        frames = model(signal_coordinates(1, H, W)).reshape(1, H, W, 3)
    masks = torch.zeros(1, H, W, dtype=torch.int32)
    masks[0, :, strip * (W // STRIPS) : (strip + 1) * (W // STRIPS)] = 1
    canvas = compute_canvas(model, Signal(frames, "strips", masks=masks), "linear")
    return model, canvas


def _result(canvas: Canvas, model: nn.Module, **params: object) -> ProbeResult:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("faithfulness").run(canvas, model=model, **params)
    assert set(result.figures) == {"canvas_vs_ablation", "deletion"}
    plt.close("all")
    return result


def _run(canvas: Canvas, model: nn.Module, **params: object) -> dict[str, float]:
    return _result(canvas, model, null_draws=0, **params).scores


def _effect(result: ProbeResult, null: str, name: str) -> float | None:
    return summarise_null(result.scores[name], result.nulls[null][name], null).effect_size


def test_exact_canvas_agrees_with_ablation_and_deletes_locally() -> None:
    model, canvas = _setup()
    scores = _run(canvas, model, deletion_fraction=1 / STRIPS)
    assert scores["ablation_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ablation_neuron_correlation"] == pytest.approx(1.0, abs=1e-6)
    strip = _colours()[3]
    blanked_psnr = -10 * math.log10(float((strip**2).mean()))
    assert scores["head/drop_outside"] == pytest.approx(0.0, abs=1e-9)
    assert scores["head/drop_inside"] == pytest.approx(100.0 - blanked_psnr, rel=1e-4)  # from the MSE floor
    assert scores["deletion_contrast"] == scores["head/drop_inside"]


def test_shuffled_control_deletes_the_wrong_neuron() -> None:
    model, canvas = _setup()
    scores = _run(shuffle_canvas(canvas, seed=0), model, deletion_fraction=1 / STRIPS)
    assert abs(scores["ablation_neuron_correlation"]) < 0.3
    assert scores["deletion_contrast"] < 0  # the bright strip 5 holds the most shuffled mass


def test_centre_region_without_masks() -> None:
    model, canvas = _setup()
    canvas.masks = None
    region = deletion_region(canvas, "auto")
    assert int(region.sum()) == (H // 2) * (W // 2) and bool(region[0, H // 2, W // 2])
    scores = _run(canvas, model, deletion_fraction=2 / STRIPS)
    # the block holds rows 4-11 of strips 2-5; the bright strip 5 and one more go, over all rows:
    # half of the block's pixels are blanked against a sixth of the outside's
    assert scores["deletion_contrast"] == pytest.approx(10 * math.log10(3), rel=1e-5)


def test_mlp_canvas_layers_map_to_the_model_linears() -> None:
    torch.manual_seed(0)
    model = create_inr("ffn-paper", num_frames=1, height=8, width=16).eval()
    with torch.no_grad():
        frames = model(signal_coordinates(1, 8, 16)).clamp(0, 1).reshape(1, 8, 16, 3)
    canvas = compute_canvas(model, Signal(frames, "ffn"), "mlp")
    scores = _run(canvas, model)
    assert scores["layer3/ablation_correlation"] == pytest.approx(1.0, abs=1e-4)  # the last layer is exact
    signed = _run(canvas, model, tracer="mlp-signed")
    assert signed["layer3/ablation_correlation"] == pytest.approx(1.0, abs=1e-4)
    assert set(signed) == set(scores)


def test_missing_model_and_bad_region_are_clear_errors() -> None:
    model, canvas = _setup()
    with pytest.raises(XincError, match="needs the model"):
        load_task("faithfulness").run(canvas)
    with pytest.raises(XincError, match="region"):
        load_task("faithfulness").run(canvas, model=model, region="corner")
    renamed = Canvas(layers={"strips": canvas.layer("head")}, frames=canvas.frames)
    with pytest.raises(XincError, match="layer_map"):
        load_task("faithfulness").run(renamed, model=model)
    assert _run(renamed, model, layer_map={"strips": "head"})["ablation_correlation"] == pytest.approx(1.0, abs=1e-6)


def _nerv_canvas(output_activation: str) -> tuple[nn.Module, Canvas]:
    from xinc_bench.inrs.nerv import NeRV

    torch.manual_seed(1)
    model = NeRV(3, 16, 32, stem_width=8, widths=(6, 5, 4), output_activation=output_activation).eval()
    frames = torch.rand(3, 16, 32, 3, generator=torch.Generator().manual_seed(0))
    return model, compute_canvas(model, Signal(frames, "noise"), "cnn")


def test_kernel_canvas_of_a_linear_head_equals_its_kernel_ablation() -> None:
    """With an identity output map the head is the last linear step: zeroing kernel (i, o) removes
    exactly its canvas map, so the head's canvas and its kernel ablation agree exactly."""
    model, canvas = _nerv_canvas("identity")
    scores = _run(canvas, model, max_neurons=7)  # a sample of 7 of the 12 head kernels
    assert scores["head/signed_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert scores["head/ablation_neuron_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert all(math.isfinite(scores[f"{layer}/ablation_correlation"]) for layer in ("block1", "block2", "block3"))
    assert math.isfinite(scores["deletion_contrast"])


def test_kernel_ablation_zeroes_weight_and_bias_share_and_restores_the_model() -> None:
    from xinc_bench.canvas.cnn import kernel_ablated_output
    from xinc_bench.inrs.base import render_output

    model, canvas = _nerv_canvas("identity")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    kernels = torch.tensor([0, 5, 11])  # head kernels (i, o) = (0, 0), (1, 2), (3, 2)
    ablated = kernel_ablated_output(model, "head", kernels, (3, 16, 32))
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    removed = canvas.layer("head")[kernels]  # [3, T, H, W] maps of those kernels, channels 0, 2, 2
    change = render_output(model, (3, 16, 32)) - ablated
    assert torch.allclose(change[..., 0], removed[0], atol=1e-5)
    assert torch.allclose(change[..., 1], torch.zeros_like(change[..., 1]), atol=1e-6)
    assert torch.allclose(change[..., 2], removed[1] + removed[2], atol=1e-5)
    with pytest.raises(XincError, match="out of range"):
        kernel_ablated_output(model, "head", torch.tensor([12]), (3, 16, 32))


def test_scores_and_null_draws_do_not_depend_on_the_frame_chunk_size() -> None:
    import dataclasses

    model, canvas = _nerv_canvas("tanh")
    params = {"max_neurons": 16, "null_draws": 6, "deletion_null_draws": 2}
    whole = _result(canvas, model, **params)
    frame_by_frame = _result(dataclasses.replace(canvas, chunk_bytes=1), model, **params)
    assert frame_by_frame.scores.keys() == whole.scores.keys()
    for name, value in whole.scores.items():
        assert frame_by_frame.scores[name] == pytest.approx(value, rel=1e-9, nan_ok=True), name
    assert whole.nulls.keys() == frame_by_frame.nulls.keys() == {"neuron_permutation", "random_neurons"}
    for null, scores in whole.nulls.items():
        assert scores.keys() == frame_by_frame.nulls[null].keys()
        for name, draws in scores.items():
            assert frame_by_frame.nulls[null][name] == pytest.approx(draws, rel=1e-9, nan_ok=True), name
    assert len(whole.nulls["neuron_permutation"]["head/ablation_neuron_correlation"]) == 6
    assert len(whole.nulls["random_neurons"]["deletion_contrast"]) == 2


def test_accumulator_scores_do_not_depend_on_block_order_and_never_read_layers() -> None:
    """Blocks of every frame window (3 frames, or 1) interleaving the 4 kernel layers, or one frame
    layer by layer fed by hand to an accumulator whose canvas has unreadable layers: the same result."""
    import dataclasses

    from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate

    model, canvas = _nerv_canvas("tanh")
    task = load_task("faithfulness")
    params = {"model": model, "max_neurons": 6, "null_draws": 3, "deletion_null_draws": 1}
    by_window, by_frame = (
        accumulate(c, [AccumulatorGroup([task.accumulator(c, **params)])])[0][0].result
        for c in (canvas, dataclasses.replace(canvas, chunk_bytes=1))
    )
    plt.close("all")
    assert set(by_window.nulls) == {"neuron_permutation", "random_neurons"}
    assert_same_result(by_frame, by_window)

    acc = task.accumulator(unreadable(canvas), **params)
    assert acc.passes == 1
    for name in canvas.layer_names:  # layer-major, one frame per block
        for start in range(canvas.shape[0]):
            acc.update(name, start, canvas.layer_frames(name, start, start + 1), 0)
    acc.end_pass(0)
    assert_same_result(acc.compute(), by_window)
    plt.close("all")

    # a canvas under test traced from the model needs no block of the probed canvas
    torch.manual_seed(0)
    mlp = create_inr("ffn-paper", num_frames=1, height=8, width=16).eval()
    with torch.no_grad():
        frames = mlp(signal_coordinates(1, 8, 16)).clamp(0, 1).reshape(1, 8, 16, 3)
    mlp_canvas = compute_canvas(mlp, Signal(frames, "ffn"), "mlp")
    hidden = unreadable(mlp_canvas)
    traced = task.accumulator(hidden, model=mlp, tracer="mlp-signed", null_draws=0)
    assert traced.passes == 0
    assert run_accumulator(traced, hidden).scores["layer3/ablation_correlation"] == pytest.approx(1.0, abs=1e-4)
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# nulls


class WaveINR(nn.Module):
    """``coords[P, 2] -> rgb[P, 3]``: 16 fixed (untraced) random plane waves, then ``nn.Linear(16, 3)``.

    The head's linear canvas is its ablation canvas exactly (zeroing wave n removes exactly its
    term), and different waves are different maps: the pairing of a map with its own ablation is
    what the neuron-permutation null destroys.
    """

    input_kind = "coords"

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("directions", 3 * torch.randn(2, 16, generator=generator))
        self.register_buffer("phases", 6.3 * torch.rand(16, generator=generator))
        self.head = nn.Linear(16, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(0.2 * torch.rand(3, 16, generator=generator) + 0.05)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cos(coords @ self.directions + self.phases))


def test_canvas_identical_to_the_ablation_beats_every_re_pairing() -> None:
    model = WaveINR().eval()
    with torch.no_grad():
        frames = model(signal_coordinates(1, H, W)).clamp(0, 1).reshape(1, H, W, 3)
    canvas = compute_canvas(model, Signal(frames, "waves"), "linear")
    result = _result(canvas, model, region="centre")
    assert result.scores["ablation_neuron_correlation"] == pytest.approx(1.0, abs=1e-6)
    draws = result.nulls["neuron_permutation"]["ablation_neuron_correlation"]
    assert len(draws) == 20 and max(draws) < 0.9
    assert _effect(result, "neuron_permutation", "ablation_neuron_correlation") > 5
    assert _effect(result, "neuron_permutation", "ablation_correlation") > 5
    assert len(result.nulls["random_neurons"]["deletion_contrast"]) == 5  # deletion_null_draws of the task
    assert load_task("faithfulness").run(canvas, model=model, region="centre").nulls == result.nulls  # seeded
    assert _result(canvas, model, null_draws=0, region="centre").nulls == {}


def test_random_neurons_blank_strips_outside_the_region() -> None:
    """Deleting a random strip's neuron blanks the region (strip 3) only if it hits strip 3; any other
    strip drops the PSNR outside, not inside: the contrast of random deletions lies far below."""
    model, canvas = _setup()
    result = _result(canvas, model, deletion_fraction=1 / STRIPS, deletion_null_draws=8, null_draws=6)
    draws = result.nulls["random_neurons"]["deletion_contrast"]
    assert len(draws) == 6  # deletion_null_draws capped by null_draws
    observed = result.scores["deletion_contrast"]
    assert all(draw < 0 or draw == pytest.approx(observed) for draw in draws)
    assert sum(draw < 0 for draw in draws) >= 4
    assert draws == result.nulls["random_neurons"]["head/deletion_contrast"]


def test_region_covering_every_pixel_leaves_deletion_absent_with_its_reason() -> None:
    model, canvas = _setup()
    canvas.masks = torch.ones_like(canvas.masks)
    result = _result(canvas, model)
    for name in ("deletion_contrast", "head/deletion_contrast", "drop_inside", "head/drop_outside"):
        assert "covers every pixel" in result.absent[name]
        assert math.isnan(result.scores[name])
    assert "random_neurons" not in result.nulls
    assert result.scores["ablation_correlation"] == pytest.approx(1.0, abs=1e-6)


def test_null_pairings_are_the_correlations_of_the_re_paired_maps() -> None:
    """The Gram-matrix shortcut gives exactly the scores of :func:`agreement` on re-ordered ablation maps."""
    from xinc_bench.probes.faithfulness import agreement, permuted_agreement

    generator = torch.Generator().manual_seed(0)
    tested = torch.randn(12, 2, 9, 11, generator=generator) + torch.arange(12.0)[:, None, None, None]
    truth = tested + 0.8 * torch.randn(12, 2, 9, 11, generator=generator)
    truth[4] = 3.0  # a constant ablation map: left out of the per-neuron median
    shuffled = [torch.randperm(12, generator=generator) for _ in range(2)]
    orders = torch.stack([torch.arange(12), *shuffled])
    for draw, order in zip(permuted_agreement(tested, truth, orders), orders):
        direct = agreement(tested, truth[order])
        for name in ("ablation_correlation", "ablation_neuron_correlation"):
            assert draw[name] == pytest.approx(direct[name], abs=1e-12), name


def test_agreement_merged_from_blocks_is_the_agreement_of_the_whole_maps() -> None:
    """The probe merges the maps' moments block by block instead of keeping the maps: the
    correlations and their null pairings are those of the whole maps."""
    from xinc_bench.probes.faithfulness import MapAgreement, agreement, permuted_agreement
    from xinc_bench.probes.numerics import finite_median, pearson, pearson_rows

    generator = torch.Generator().manual_seed(3)
    tested = torch.randn(6, 5, 7, 9, generator=generator) * torch.arange(1.0, 7.0)[:, None, None, None] + 4.0
    truth = -tested + 0.5 * torch.randn(6, 5, 7, 9, generator=generator)
    truth[2] = 1.5  # constant: left out of the per-neuron median
    orders = torch.stack([torch.randperm(6, generator=generator) for _ in range(3)])
    merged = MapAgreement(6)
    for start, stop in ((0, 1), (1, 4), (4, 5)):
        merged.add(tested[:, start:stop], truth[:, start:stop])
    whole = agreement(tested, truth)
    x, y = tested.abs().reshape(6, -1), truth.abs().reshape(6, -1)
    assert whole == pytest.approx({  # the two-pass definitions
        "ablation_correlation": pearson(x, y),
        "ablation_neuron_correlation": finite_median(pearson_rows(x, y)),
        "signed_correlation": pearson(tested, truth),
    }, rel=1e-12, abs=1e-14)
    assert merged.scores() == pytest.approx(whole, rel=1e-12, abs=1e-14)
    assert whole["signed_correlation"] < -0.5 < 0.5 < whole["ablation_correlation"]
    for got, expected in zip(merged.null_scores(orders), permuted_agreement(tested, truth, orders)):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_ablation_maps_on_evenly_spaced_frames_score_exactly_those_frames() -> None:
    import numpy as np

    from xinc_bench.canvas.cnn import kernel_ablation_maps
    from xinc_bench.inrs.base import render_output
    from xinc_bench.probes.faithfulness import frame_sample
    from xinc_bench.probes.nulls import neuron_sample

    assert frame_sample(30, 8).tolist() == [0, 4, 8, 12, 17, 21, 25, 29]
    assert frame_sample(3, 8).tolist() == frame_sample(3, None).tolist() == [0, 1, 2]
    with pytest.raises(XincError, match="max_frames"):
        frame_sample(3, 0)
    model, canvas = _nerv_canvas("tanh")
    sampled = _run(canvas, model, max_neurons=16, max_frames=2)  # frames 0 and 2 of 3
    every = _run(canvas, model, max_neurons=16, max_frames=None)
    assert _run(canvas, model, max_neurons=16, max_frames=3) == every  # every frame fits
    neurons = neuron_sample(canvas.layer_shape("block2")[0], 16)
    truth = kernel_ablation_maps(model, "block2", neurons, render_output(model, canvas.shape), torch.tensor([0, 2]))
    tested = canvas.layer("block2")[neurons][:, [0, 2]]
    expected = np.corrcoef(tested.abs().double().flatten(), truth.abs().double().flatten())[0, 1]
    assert sampled["block2/ablation_correlation"] == pytest.approx(expected, rel=1e-6)
    assert sampled["block2/ablation_correlation"] != pytest.approx(every["block2/ablation_correlation"], rel=1e-6)
