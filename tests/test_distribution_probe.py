"""The distribution probe on constructed canvases whose answers are known in advance."""

from __future__ import annotations

import math

import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.errors import XincError
from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate
from xinc_bench.probes.base import ProbeResult, load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.distribution import (
    share_floors,
    contribution_threshold,
    gini,
    layer_distribution,
    layer_thresholds,
    streamed_thresholds,
)
from xinc_bench.probes.stats import summarise_null
from accumulating import assert_same_result, feed_blocks, unreadable

N, H, W = 8, 16, 32
METRICS = ["neurons_per_pixel_a0.1", "neurons_per_pixel_a0.5", "pixels_per_neuron", "top_neuron_share", "gini"]


def _result(layer: torch.Tensor, **params: object) -> ProbeResult:
    import matplotlib.pyplot as plt

    canvas = Canvas(layers={"layer": layer}, frames=torch.zeros(layer.shape[1], H, W, 3))
    result = load_task("distribution").run(canvas, **params)
    plt.close("all")
    return result


def _run(layer: torch.Tensor) -> dict[str, float]:
    return _result(layer, null_draws=0).scores


def test_single_neuron_holds_every_pixel() -> None:
    layer = torch.zeros(N, 1, H, W)
    layer[3] = torch.rand(1, H, W) + 0.5
    scores = _run(layer)
    assert scores["top_neuron_share"] == 1.0
    assert scores["gini"] == pytest.approx((N - 1) / N)
    assert scores["neurons_per_pixel_a0.1"] == pytest.approx(1 / N)
    assert scores["pixels_per_neuron"] == 0.0  # 7 of 8 neurons own no pixel
    assert scores["layer/zero_maps"] == N - 1


def test_uniform_canvas_is_fully_distributed() -> None:
    scores = _run(torch.ones(N, 1, H, W))
    assert scores["gini"] == pytest.approx(0.0, abs=1e-6)
    assert scores["top_neuron_share"] == pytest.approx(1 / N)
    assert scores["pixels_per_neuron"] == 0.0  # shares equal 1/N exactly, never above it


def test_each_neuron_owns_one_block() -> None:
    layer = torch.zeros(N, 1, H, W)
    for n in range(N):
        layer[n, 0, :, n * (W // N) : (n + 1) * (W // N)] = 1.0
    scores = _run(layer)
    assert scores["top_neuron_share"] == 1.0
    assert scores["pixels_per_neuron"] == pytest.approx(1 / N)
    assert scores["neurons_per_pixel_a0.5"] == 0.0  # the threshold equals every owner's value: none exceed it


def test_all_zero_canvas_is_defined() -> None:
    scores = _run(torch.zeros(N, 2, H, W))
    assert all(value == value for value in scores.values())  # no NaN
    assert scores["gini"] == 0.0 and scores["layer/zero_maps"] == N


def test_threshold_holds_the_requested_mass() -> None:
    values = torch.tensor([5.0, 3.0, 1.0, 1.0]).numpy()
    assert contribution_threshold(values, 0.5) == 5.0  # 5 of 10 reaches half
    assert contribution_threshold(values, 0.1) == 1.0  # 9 of 10 needs 5+3+1


def test_gini_matches_definition() -> None:
    shares = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert float(gini(shares.sort().values)) == pytest.approx(0.75)
    values = torch.tensor([[3.0, 1.0], [2.0, 2.0]])  # scale-free: (3, 1) has shares (3/4, 1/4)
    assert gini(values.sort(dim=1).values).tolist() == pytest.approx([0.25, 0.0])


def _canvas(layer: torch.Tensor, chunk_bytes: int = 1 << 30) -> Canvas:
    return Canvas(layers={"layer": layer}, frames=torch.zeros(layer.shape[1], H, W, 3), chunk_bytes=chunk_bytes)


def test_neuron_order_and_scale_invariance() -> None:
    torch.manual_seed(0)
    layer = torch.rand(N, 1, H, W) ** 4
    base, _ = layer_distribution(_canvas(layer), "layer", [0.1, 0.5])
    permuted, _ = layer_distribution(_canvas(layer[torch.randperm(N)] * 7.5), "layer", [0.1, 0.5])
    for key, value in base.items():
        assert permuted[key] == pytest.approx(value, rel=1e-5, abs=1e-6)


def _threshold_layers() -> dict[str, torch.Tensor]:
    """Random layers ``[N, 6, H, W]`` with ties, zeros, adjacent floats and a heavy tail."""
    generator = torch.Generator().manual_seed(5)
    shape = (N, 6, H, W)
    kept = torch.rand(shape, generator=generator) > 0.2
    ulp = 2.0**-23  # neighbouring float32 values just above 1 differ in their last bit only
    return {
        "ties": torch.randint(0, 5, shape, generator=generator) * 0.25,
        "adjacent floats": 1.0 + torch.randint(0, 4, shape, generator=generator) * ulp,
        "sparse": torch.randn(shape, generator=generator) * (torch.rand(shape, generator=generator) > 0.7),
        "heavy tail": (4 * torch.randn(shape, generator=generator)).exp() * kept,
        "subnormal": torch.rand(shape, generator=generator) * 1e-39,
        "one giant": torch.rand(shape, generator=generator).index_put_((torch.tensor(0),) * 4, torch.tensor(1e30)),
    }


@pytest.mark.parametrize("kind", list(_threshold_layers()))
def test_streamed_threshold_is_the_sorted_one(kind: str) -> None:
    layer = _threshold_layers()[kind]
    alphas = [0.05, 0.1, 0.3, 0.5, 0.9, 0.999, 1.0]  # not 0: the entry reaching the whole total is set by rounding
    expected = {a: contribution_threshold(layer.abs().numpy(), a) for a in alphas}
    streamed = _canvas(layer, chunk_bytes=1)  # one frame per chunk
    assert streamed.frames_per_chunk("layer") < layer.shape[1]
    assert streamed_thresholds(streamed, "layer", alphas) == expected
    assert layer_thresholds(streamed, "layer", alphas) == expected
    assert layer_thresholds(_canvas(layer), "layer", alphas) == expected  # one chunk: sorted


def test_streamed_threshold_of_an_all_zero_layer_is_zero() -> None:
    layer = torch.zeros(N, 3, H, W)
    assert streamed_thresholds(_canvas(layer, chunk_bytes=1), "layer", [0.1, 0.5]) == {0.1: 0.0, 0.5: 0.0}


# ---------------------------------------------------------------------------------------------
# the spatial-shuffle null


def _tiles(noise: float = 0.0) -> torch.Tensor:
    """``[N, 1, H, W]``: neuron n owns the n-th vertical tile (value 1), elsewhere ``noise`` or 0."""
    layer = noise * torch.rand(N, 1, H, W, generator=torch.Generator().manual_seed(1))
    for n in range(N):
        layer[n, 0, :, n * (W // N) : (n + 1) * (W // N)] = 1.0
    return layer


def _effects(result: ProbeResult) -> dict[str, float | None]:
    draws = result.nulls["spatial_shuffle"]
    return {name: summarise_null(result.scores[name], draws[name], "spatial_shuffle").effect_size for name in draws}


def test_tiles_own_their_pixels_far_beyond_the_null() -> None:
    """Each pixel owned by one neuron: shuffled, about 1 - 1/e of a pixel's owners coincide with
    others, so the top share falls from 1 to about 0.75 and the Gini with it."""
    result = _result(_tiles())
    draws = result.nulls["spatial_shuffle"]
    assert len(draws["top_neuron_share"]) == 20 and set(draws) == {*METRICS, *(f"layer/{m}" for m in METRICS)}
    assert result.scores["top_neuron_share"] == 1.0
    assert 0.6 < sum(draws["top_neuron_share"]) / 20 < 0.85
    effects = _effects(result)
    assert effects["top_neuron_share"] > 10
    assert effects["gini"] > 10


def test_tiles_over_noise_dominate_beyond_the_null() -> None:
    """A continuous canvas (no share exactly 0 or 1): the owner of a pixel still stands out."""
    effects = _effects(_result(_tiles(noise=0.2)))
    assert effects["top_neuron_share"] > 10 and effects["gini"] > 10


def test_independent_noise_maps_are_their_own_null() -> None:
    """Maps of independent noise are already a spatial shuffle: every score lies within its null."""
    layer = torch.rand(N, 3, H, W, generator=torch.Generator().manual_seed(2)) ** 3
    result = _result(layer, null_pixels=600)  # fewer than the 1536 pixels: sampled over the frames
    effects = _effects(result)
    assert effects["gini"] is not None and effects["top_neuron_share"] is not None
    for name, effect in effects.items():
        assert effect is None or abs(effect) < 3, (name, effect)


def test_shuffled_control_scores_within_the_null_of_the_canvas() -> None:
    """The null estimates the scores of the shuffled control (whole maps shuffled, not sampled)."""
    canvas = Canvas(layers={"layer": _tiles(noise=0.2)}, frames=torch.zeros(1, H, W, 3))
    result = load_task("distribution").run(canvas)
    control = load_task("distribution").run(shuffle_canvas(canvas), null_draws=0).scores
    for name in ("top_neuron_share", "gini"):
        summary = summarise_null(control[name], result.nulls["spatial_shuffle"][name], "spatial_shuffle")
        assert abs(summary.effect_size) < 3, (name, summary)


def test_null_draws_are_seeded_absent_without_draws_and_chunk_free() -> None:
    layer = torch.rand(N, 4, H, W, generator=torch.Generator().manual_seed(3)) ** 2
    first = _result(layer, null_pixels=700).nulls
    assert _result(layer, null_pixels=700).nulls == first
    assert _result(layer, null_pixels=700, null_seed=1).nulls != first
    assert _result(layer, null_draws=0).nulls == {}
    assert len(_result(layer, null_draws=3).nulls["spatial_shuffle"]["gini"]) == 3
    frame_by_frame = _canvas(layer, chunk_bytes=1)
    assert frame_by_frame.frames_per_chunk("layer") == 1
    chunked = load_task("distribution").run(frame_by_frame, null_pixels=700).nulls
    assert chunked.keys() == first.keys()
    for name, draws in first["spatial_shuffle"].items():
        assert chunked["spatial_shuffle"][name] == pytest.approx(draws, rel=1e-9, abs=1e-12), name


def test_null_of_an_all_zero_layer_is_zero_like_the_layer() -> None:
    draws = _result(torch.zeros(N, 1, H, W), null_draws=2).nulls["spatial_shuffle"]
    assert all(draws[name] == [0.0, 0.0] for name in METRICS)


def test_bad_null_pixels_is_a_clear_error() -> None:
    with pytest.raises(XincError, match="null_pixels"):
        _result(torch.rand(N, 1, H, W), null_pixels=0)


# ---------------------------------------------------------------------------------------------
# the accumulator: blocks in any grouping, layers never read


def _video_canvas(chunk_bytes: int) -> Canvas:
    """Two layers of 5 frames: at ``chunk_bytes`` the small one fits in one chunk (sorted exactly),
    the large one does not (radix selection over two passes, then a third)."""
    generator = torch.Generator().manual_seed(11)
    layers = {
        "small": torch.rand(2, 5, H, W, generator=generator) ** 3,
        "large": torch.randn(N, 5, H, W, generator=generator) * (torch.rand(N, 5, H, W, generator=generator) > 0.3),
    }
    layers["large"][4] = 0.0  # an all-zero map
    return Canvas(layers=layers, frames=torch.zeros(5, H, W, 3), chunk_bytes=chunk_bytes)


#: the small layer's five frames fit in one chunk, one frame of the large layer does not
MIXED_BUDGET = 2 * 5 * H * W * 4


def test_blocks_of_any_size_give_the_same_scores_and_draws() -> None:
    import matplotlib.pyplot as plt

    task = load_task("distribution")
    results = {}
    for budget in (1 << 30, MIXED_BUDGET, 1):  # all sorted, one per frame block; mixed; all streamed
        canvas = _video_canvas(budget)
        accumulator = task.accumulator(canvas, null_pixels=900)
        assert accumulator.passes == (1 if budget == 1 << 30 else 3)
        results[budget] = accumulate(canvas, [AccumulatorGroup([accumulator])])[0][0].result
        assert not any(math.isnan(value) for value in results[budget].scores.values())
        assert len(results[budget].nulls["spatial_shuffle"]["gini"]) == 20
    plt.close("all")
    assert_same_result(results[MIXED_BUDGET], results[1 << 30])
    assert_same_result(results[1], results[1 << 30])


def test_a_control_made_after_the_canvas_takes_its_thresholds_and_one_pass() -> None:
    """The shuffled control has the canvas's entries, so it scores the same with the canvas's tau_a
    (one pass) as with its own (found again: three passes when streamed)."""
    import matplotlib.pyplot as plt

    task = load_task("distribution")
    for budget in (1 << 30, MIXED_BUDGET, 1):
        canvas = _video_canvas(budget)
        shuffled = shuffle_canvas(canvas, seed=4)
        accumulator = task.accumulator(canvas, null_pixels=900)
        before = accumulator.for_control(shuffled)  # the canvas's thresholds are not known yet
        assert before.passes == accumulator.passes
        accumulate(canvas, [AccumulatorGroup([accumulator])])
        after = accumulator.for_control(shuffled)
        assert after.passes == 1
        own, shared = (accumulate(shuffled, [AccumulatorGroup([control])])[0][0].result for control in (before, after))
        assert shared.nulls == {} and not any(math.isnan(value) for value in shared.scores.values())
        assert_same_result(shared, own)
    plt.close("all")


def test_accumulator_reads_no_layer() -> None:
    import matplotlib.pyplot as plt

    canvas = _video_canvas(MIXED_BUDGET)
    task = load_task("distribution")
    fed = feed_blocks(task.accumulator(unreadable(canvas), null_pixels=900), canvas, frames=2)  # not the canvas's own
    assert set(fed.figures) == {"neurons_per_pixel"}
    assert_same_result(fed, task.run(canvas, null_pixels=900))
    plt.close("all")


def test_only_small_layers_are_gathered_and_streamed_ones_score_the_same() -> None:
    """A layer that does not come whole in one block is sorted whole only while the gathered
    copies fit in a quarter of the chunk budget (held until their last block); a larger one
    takes the radix passes, with the same scores."""
    import matplotlib.pyplot as plt

    from xinc_bench.probes.distribution import sorted_layers

    task = load_task("distribution")
    layers = {"small": _video_canvas(1).layer("small")[:1], "large": _video_canvas(1).layer("large")}
    small = 4 * 5 * H * W  # bytes of the whole "small" layer (1 neuron), an eighth of "large"
    results = []
    for budget, sorted_whole in ((1 << 30, {"small", "large"}), (4 * small, {"small"}), (small, set())):
        canvas = Canvas(layers=layers, frames=torch.zeros(5, H, W, 3), chunk_bytes=budget)
        assert sorted_layers(canvas) == sorted_whole
        accumulator = task.accumulator(canvas, null_pixels=900)
        assert accumulator.passes == (1 if len(sorted_whole) == 2 else 3)
        results.append(accumulate(canvas, [AccumulatorGroup([accumulator])])[0][0].result)
    plt.close("all")
    assert_same_result(results[1], results[0])
    assert_same_result(results[2], results[0])


def test_sorted_threshold_is_one_running_sum_taken_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cumulative mass is summed a block at a time as one sequential float64 sum: the thresholds
    are those of the whole cumulative sum, bit for bit."""
    import numpy as np

    from xinc_bench.probes import distribution

    def whole_sum(values: np.ndarray, alpha: float) -> float:
        ordered = np.sort(values, axis=None)[::-1]
        cumulative = np.cumsum(ordered, dtype=np.float64)
        index = int(np.searchsorted(cumulative, (1.0 - alpha) * cumulative[-1]))
        return float(ordered[min(index, ordered.size - 1)])

    monkeypatch.setattr(distribution, "_BLOCK_ELEMENTS", 7)
    for layer in _threshold_layers().values():
        values = layer.abs().numpy()
        if values.max() <= 0:
            continue
        alphas = [0.0, 0.1, 0.5, 0.999, 1.0]
        assert distribution.contribution_thresholds(values, alphas) == {a: whole_sum(values, a) for a in alphas}


# ---------------------------------------------------------------------------------------------
# (d) on a seeded pixel sample of a large layer


def _per_pixel_gini(layer: torch.Tensor) -> torch.Tensor:
    """The Gini coefficient of every pixel of ``layer[N, T, H, W]`` by the definition (mean absolute
    difference over twice the mean), ``[T * H * W]`` float64; NaN where no neuron contributes."""
    values = layer.abs().reshape(layer.shape[0], -1).double().T  # [P, N]
    difference = (values[:, :, None] - values[:, None, :]).abs().mean(dim=(1, 2))
    return difference / (2 * values.mean(dim=1))


def test_gini_on_a_sample_is_the_mean_over_exactly_the_sampled_pixels() -> None:
    from xinc_bench.probes.distribution import gini_sample

    generator = torch.Generator().manual_seed(5)
    layer = torch.rand(N, 3, H, W, generator=generator) ** 4 * (torch.rand(N, 3, H, W, generator=generator) > 0.4)
    pixels = 3 * H * W
    exact = _result(layer, null_draws=0).scores
    sampled = _result(layer, null_draws=0, gini_pixels=300).scores
    per_pixel = _per_pixel_gini(layer)
    mask = torch.from_numpy(gini_sample(pixels, 300, 0, 0))
    assert int(mask.sum()) == 300
    chosen = per_pixel[mask & ~per_pixel.isnan()]
    assert sampled["gini"] == pytest.approx(float(chosen.mean()), rel=1e-9)
    assert exact["gini"] == pytest.approx(float(per_pixel.nanmean()), rel=1e-9)
    assert sampled["gini"] != exact["gini"]  # a heterogeneous layer: the sample is not the whole
    assert abs(sampled["gini"] - exact["gini"]) < 4 * 0.5 / math.sqrt(300)  # the stated bound, 4 standard errors
    for metric in METRICS[:-1]:  # (a)-(c) are taken over every pixel whatever the sample
        assert sampled[metric] == exact[metric], metric
    assert gini_sample(pixels, pixels, 0, 0) is None  # a layer of at most gini_pixels pixels is not sampled
    assert (gini_sample(pixels, 300, 0, 0) == gini_sample(pixels, 300, 0, 0)).all()  # seeded
    assert not (gini_sample(pixels, 300, 1, 0) == gini_sample(pixels, 300, 0, 0)).all()


def test_gini_of_identical_pixels_is_exact_on_any_sample() -> None:
    """Every pixel holds a permutation of the same shares: every pixel's Gini is the same, so any
    sample's mean is the whole layer's, known in advance."""
    shares = torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    order = torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(p)) for p in range(2 * H * W)])
    layer = shares[order].T.reshape(N, 2, H, W)
    expected = float(_per_pixel_gini(shares[:, None, None, None])[0])
    for gini_pixels in (10, 999, 1 << 17):
        assert _result(layer, null_draws=0, gini_pixels=gini_pixels).scores["gini"] == pytest.approx(expected, rel=1e-9)


def test_a_sampled_gini_does_not_depend_on_the_blocks() -> None:
    import matplotlib.pyplot as plt

    task = load_task("distribution")
    results = []
    for budget in (1 << 30, MIXED_BUDGET, 1):  # whole layers, one frame a block, streamed
        canvas = _video_canvas(budget)
        results.append(accumulate(canvas, [AccumulatorGroup([task.accumulator(canvas, null_pixels=900,
                                                                               gini_pixels=1000)])])[0][0].result)
    plt.close("all")
    whole = _result(_video_canvas(1 << 30).layers["large"], null_draws=0).scores  # 5 x 512 = 2,560 pixels, all
    assert results[0].scores["large/gini"] != whole["gini"]  # the sample is in use
    for result in results[1:]:
        assert_same_result(result, results[0])


def test_bad_gini_pixels_is_a_clear_error() -> None:
    with pytest.raises(XincError, match="gini_pixels"):
        _result(torch.rand(N, 1, H, W), gini_pixels=0)


def test_share_floors_count_exactly_the_entries_a_float64_division_puts_above_the_mean_share() -> None:
    """(b) compares each entry with its pixel's float32 floor instead of dividing it by S(p): the same
    entries pass, on the entries next to every floor, on pixels whose neurons all hold 1/N, on tiny
    (subnormal) and on huge totals, and on a float32 canvas's own S(p)."""
    import numpy as np

    gen = np.random.default_rng(0)
    num_neurons = 37
    canvas = gen.random((num_neurons, 500), dtype=np.float32) ** 3
    totals = np.concatenate([
        np.add.reduce(canvas, axis=0, dtype=np.float64),
        gen.random(500) * 10.0 ** gen.integers(-40, 38, 500),  # tiny to near float32's largest
        [num_neurons * 0.1, num_neurons * 1e-45, num_neurons * 3.4e38, 1e300],  # exact 1/N shares; beyond float32
    ])
    floors = share_floors(totals, num_neurons)
    assert floors.dtype == np.float32
    near = np.stack([floors, *(np.nextafter(floors, np.float32(direction)) for direction in (-np.inf, np.inf))])
    with np.errstate(over="ignore"):  # 1e300 / N is beyond float32
        near = np.concatenate([near, (totals / num_neurons).astype(np.float32)[None]])
    near = np.where(np.isfinite(near), near, np.float32(3.4e38))  # entries are finite
    divided = np.divide(near, totals, dtype=np.float64) > 1.0 / num_neurons
    assert np.array_equal(near >= floors, divided)
    assert divided.any() and not divided.all()
    assert np.array_equal(canvas >= floors[:500], np.divide(canvas, totals[:500], dtype=np.float64) > 1.0 / num_neurons)
