"""The clustering probe on constructed canvases whose answers are known in advance."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.errors import XincError
from xinc_bench.probes.accumulator import run_accumulator
from xinc_bench.probes.base import load_task
from xinc_bench.probes.clustering import (
    NeuronVectorSums,
    ami_null_draws,
    motion_labels,
    pixel_sample,
    sample_limit,
    seed_mixing,
    share_vectors,
)
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.nulls import generator, permutations
from xinc_bench.probes.stats import NullSummary, summarise_null
from accumulating import assert_same_result, feed_blocks, unreadable

N, T, H, W = 16, 3, 32, 64


def _frames(num_frames: int = 1) -> torch.Tensor:
    """Smooth grey on the left half, vertical stripes on the right half."""
    frames = torch.full((num_frames, H, W, 3), 0.5)
    frames[:, :, W // 2 :: 2] = 0.9
    frames[:, :, W // 2 + 1 :: 2] = 0.1
    return frames


def _halves(left: int, right: int, num_frames: int = 1) -> torch.Tensor:
    """``left`` neurons active on the left half, ``right`` on the right half (own scales)."""
    layer = torch.zeros(left + right, num_frames, H, W)
    layer[:left, :, :, : W // 2] = 1.0
    layer[left:, :, :, W // 2 :] = 1.0
    weights = torch.rand(left + right, generator=torch.Generator().manual_seed(0)) + 0.5
    return layer * weights[:, None, None, None]


def _scatter(num_frames: int, groups: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, groups + 1, (num_frames, H, W), generator=generator, dtype=torch.int32)


def _run(canvas: Canvas, **params: object) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("clustering").run(canvas, **params)
    plt.close("all")
    return result.scores


def test_two_neuron_kinds_are_perfectly_separated() -> None:
    scores = _run(Canvas(layers={"layer": _halves(8, 8)}, frames=_frames()))
    assert scores["clusters"] == 2  # six requested, two distinct neuron vectors
    assert scores["silhouette"] == pytest.approx(1.0)
    assert "motion_ami" not in scores  # image canvas: no motion clustering


def test_shuffled_control_has_no_neuron_kinds() -> None:
    canvas = Canvas(layers={"layer": _halves(8, 8)}, frames=_frames())
    assert _run(shuffle_canvas(canvas, seed=0))["silhouette"] < 0.5


def test_seed_mixing_is_one_for_shared_kinds_and_zero_for_disjoint_kinds() -> None:
    shared = [Canvas(layers={"layer": _halves(8, 8)}, frames=_frames()) for _ in range(2)]
    assert seed_mixing(shared, {}) == pytest.approx(1.0)
    disjoint = [Canvas(layers={"layer": _halves(left, 16 - left)}, frames=_frames()) for left in (16, 0)]
    assert seed_mixing(disjoint, {}) == pytest.approx(0.0)


def test_seed_mixing_needs_several_matching_canvases() -> None:
    canvas = Canvas(layers={"layer": _halves(8, 8)}, frames=_frames())
    with pytest.raises(XincError, match="two or more"):
        seed_mixing([canvas], {})
    with pytest.raises(XincError, match="share none"):
        seed_mixing([canvas, Canvas(layers={"other": _halves(8, 8)}, frames=_frames())], {})


def _motion_canvas(shares_follow: str) -> Canvas:
    """Left half moves right by 2 px per frame; masks scatter 3 segments independently of it.

    The canvas's share vectors are constant per half (``shares_follow="motion"``) or per
    segment (``"objects"``).
    """
    flow = torch.zeros(T, H, W, 2)
    flow[1:, :, : W // 2, 0] = 2.0
    masks = _scatter(T, 3, seed=4)
    region = torch.zeros(T, H, W, dtype=torch.long)
    region[:, :, W // 2 :] = 1
    if shares_follow == "objects":
        region = masks.long() - 1
    shares = torch.full((3, 4), 0.1)
    shares[torch.arange(3), torch.arange(3)] = 0.7
    layer = shares[region].permute(3, 0, 1, 2).contiguous() * 2.0
    return Canvas(layers={"layer": layer}, frames=_frames(T), masks=masks, flow=flow)


def test_pixel_clusters_following_motion_dominate() -> None:
    scores = _run(_motion_canvas("motion"))
    assert scores["motion_ami"] == pytest.approx(1.0)
    assert abs(scores["object_ami"]) < 0.05
    assert scores["motion_dominance"] > 0.9


def test_pixel_clusters_following_objects_do_not() -> None:
    scores = _run(_motion_canvas("objects"))
    assert scores["object_ami"] == pytest.approx(1.0)
    assert scores["motion_dominance"] < -0.9


def test_share_vectors_of_a_sample_are_gathered_from_one_frame_chunks() -> None:
    canvas = _motion_canvas("motion")
    canvas.layers = {"layer": torch.rand(5, T, H, W, generator=torch.Generator().manual_seed(2))}
    canvas.chunk_bytes = 1  # one frame per chunk
    total = canvas.layer("layer").abs().sum(dim=0, dtype=torch.float64)[1:].reshape(-1)
    chosen = pixel_sample(total, 300, seed=0)
    mags = canvas.layer("layer")[:, 1:].reshape(5, -1).abs()
    expected = (mags[:, chosen].double() / total[chosen]).T.float()
    assert torch.equal(share_vectors(canvas, "layer", chosen, total), expected)


def test_max_share_values_caps_the_sample_of_wide_layers_only() -> None:
    settings = {"max_pixels": 1000, "max_share_values": 40_000}
    assert sample_limit(settings, 8) == 1000 and sample_limit(settings, 100) == 400
    assert sample_limit({**settings, "max_share_values": None}, 100) == 1000
    scores = _run(_motion_canvas("motion"), max_share_values=4 * 500)  # 500 of 4,096 pixels
    assert scores["motion_ami"] == pytest.approx(1.0)


def test_motion_bins_separate_static_speed_and_direction() -> None:
    flow = torch.tensor([[0.1, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 3.0], [-3.0, 0.0]])
    labels = motion_labels(flow, threshold=0.5, magnitude_bins=2, direction_bins=4)
    assert labels[0] == 0  # static
    assert len(set(labels[1:].tolist())) == 4  # slow right, fast right, fast down, fast left


def test_motion_clustering_needs_flow_unless_disabled() -> None:
    canvas = Canvas(layers={"layer": _halves(8, 8, T)}, frames=_frames(T))
    with pytest.raises(XincError, match="flow"):
        load_task("clustering").run(canvas)
    scores = _run(canvas, motion=False)
    assert "motion_ami" not in scores and scores["silhouette"] == pytest.approx(1.0)


@pytest.mark.skipif(importlib.util.find_spec("finch") is not None, reason="finch-clust is installed")
def test_finch_without_the_package_is_a_clear_error() -> None:
    with pytest.raises(XincError, match="finch-clust"):
        load_task("clustering").run(Canvas(layers={"layer": _halves(8, 8)}, frames=_frames()), method="finch")


def test_degenerate_inputs_are_defined() -> None:
    zero = _run(Canvas(layers={"layer": torch.zeros(N, 1, H, W)}, frames=_frames()))
    assert math.isnan(zero["silhouette"])
    flat_image = torch.full((1, H, W, 3), 0.2)
    assert _run(Canvas(layers={"layer": torch.rand(N, 1, H, W)}, frames=flat_image))["clusters"] >= 2
    uniform = _run(Canvas(layers={"layer": torch.ones(N, 1, H, W)}, frames=flat_image))
    assert math.isnan(uniform["silhouette"]) and uniform["clusters"] == 1  # every neuron vector is the same
    single = _run(Canvas(layers={"layer": torch.rand(1, 1, H, W)}, frames=_frames()))
    assert math.isnan(single["silhouette"])
    still = _motion_canvas("motion")
    still.layers = {"layer": torch.zeros(4, T, H, W)}
    assert math.isnan(_run(still)["motion_ami"])


def _result(canvas: Canvas, **params: object):
    result = load_task("clustering").run(canvas, **params)
    plt.close("all")
    return result


def _evidence(canvas: Canvas, metric: str, model: str) -> NullSummary:
    result = _result(canvas)
    return summarise_null(result.scores[metric], result.nulls[model][metric], model)


def test_well_separated_neuron_kinds_lie_far_above_their_spatial_shuffles() -> None:
    canvas = Canvas(layers={"layer": _halves(16, 16)}, frames=_frames())
    evidence = _evidence(canvas, "silhouette", "spatial_shuffle")
    assert evidence.draws == 20 and evidence.effect_size > 5
    assert evidence.mean < 0.5 and evidence.p_value == pytest.approx(1 / 21)


def test_silhouette_of_maps_constant_within_frames_equals_its_every_shuffle_draw() -> None:
    # a map constant within each frame is unchanged by a within-frame shuffle: every draw is the score
    levels = torch.rand(12, T, generator=torch.Generator().manual_seed(3))
    canvas = Canvas(layers={"layer": levels[:, :, None, None].expand(12, T, H, W).clone()}, frames=_frames(T))
    result = _result(canvas, motion=False)
    assert result.nulls["spatial_shuffle"]["silhouette"] == pytest.approx([result.scores["silhouette"]] * 20)


def test_shuffled_control_lies_within_its_own_spatial_shuffle_null() -> None:
    canvas = Canvas(layers={"layer": _halves(16, 16)}, frames=_frames())
    shuffled = _result(shuffle_canvas(canvas, seed=0))
    evidence = summarise_null(shuffled.scores["silhouette"], shuffled.nulls["spatial_shuffle"]["silhouette"], "s")
    assert abs(evidence.effect_size) < 3


def test_ami_draws_are_scikit_learns_ami_of_the_permuted_labels() -> None:
    from sklearn.metrics import adjusted_mutual_info_score

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 6, 3000)
    clusters = np.where(truth < 2, 0, rng.integers(0, 4, 3000))  # partly tied to the truth
    order = torch.cat([torch.arange(3000)[None], permutations(3000, 5, generator(0))])
    draws = ami_null_draws(truth, clusters, order)
    expected = [adjusted_mutual_info_score(truth[row], clusters) for row in order.numpy()]
    assert draws == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert draws[0] > 0.1 and np.abs(draws[1:]).max() < 0.01
    assert ami_null_draws(truth, np.zeros(3000, dtype=np.int64), order).tolist() == [0.0] * 6  # one cluster
    assert ami_null_draws(np.zeros(3000), np.zeros(3000), order).tolist() == [1.0] * 6  # as scikit-learn


def test_pixel_clusters_following_motion_lie_far_above_the_permuted_labels() -> None:
    result = _result(_motion_canvas("motion"))
    nulls = result.nulls["label_permutation"]
    motion = summarise_null(result.scores["motion_ami"], nulls["motion_ami"], "label_permutation")
    objects = summarise_null(result.scores["object_ami"], nulls["object_ami"], "label_permutation")
    assert motion.effect_size > 5 and abs(motion.mean) < 0.01  # AMI is adjusted: its null mean is ~0
    assert abs(objects.effect_size) < 3  # the clusters ignore the objects
    assert summarise_null(result.scores["motion_dominance"], nulls["motion_dominance"], "m").effect_size > 5


def test_null_draws_are_reproducible_and_chunk_free() -> None:
    canvas = _motion_canvas("motion")
    canvas.layers = {"layer": torch.rand(12, T, H, W, generator=torch.Generator().manual_seed(2))}
    small = {"pixel_clusters": 8, "max_pixels": 1000}  # a sample of the pixels, quicker k-means
    nulls = _result(canvas, **small).nulls
    assert set(nulls) == {"spatial_shuffle", "label_permutation"}
    assert all(len(draws) == 20 for model in nulls.values() for draws in model.values())
    assert _result(canvas, **small).nulls == nulls
    canvas.chunk_bytes = 1  # one frame per chunk
    chunked = _result(canvas, **small).nulls
    for model, draws in nulls.items():
        for name, values in draws.items():
            assert chunked[model][name] == pytest.approx(values, rel=1e-9, abs=1e-12), name


def test_null_draws_follow_the_seed_and_are_absent_without_draws() -> None:
    canvas = Canvas(layers={"layer": _halves(8, 8)}, frames=_frames())
    nulls = _result(canvas).nulls
    assert set(nulls) == {"spatial_shuffle"}  # an image canvas: no motion clustering
    assert _result(canvas, null_seed=1).nulls != nulls
    assert _result(canvas, null_draws=0).nulls == {}


def test_image_canvases_list_the_motion_scores_as_absent() -> None:
    result = _result(Canvas(layers={"layer": _halves(8, 8)}, frames=_frames()))
    assert set(result.absent) == {"motion_ami", "object_ami", "motion_dominance"}
    assert "video" in result.absent["motion_ami"]
    off = _result(Canvas(layers={"layer": _halves(8, 8, T)}, frames=_frames(T)), motion=False)
    assert "motion: false" in off.absent["motion_dominance"]
    zero = _result(Canvas(layers={"layer": torch.zeros(N, 1, H, W)}, frames=_frames()))
    assert "neuron clusters" in zero.absent["silhouette"]


def _two_layer_video() -> Canvas:
    """The motion canvas with two random layers (one with an all-zero map) in place of its own."""
    canvas = _motion_canvas("motion")
    gen = torch.Generator().manual_seed(5)
    second = torch.randn(7, T, H, W, generator=gen) * (torch.rand(7, T, H, W, generator=gen) > 0.4)
    second[3] = 0.0
    canvas.layers = {"first": torch.rand(12, T, H, W, generator=gen), "second": second}
    return canvas


QUICK = {"pixel_clusters": 8, "max_pixels": 1000, "null_draws": 5}


def test_blocks_of_any_size_give_the_same_scores_and_null_draws() -> None:
    canvas, task = _two_layer_video(), load_task("clustering")
    results = []
    for chunk_bytes in (1, 4 * 12 * H * W * 2, 1 << 30):  # one, two and every frame per block
        blocks = dataclasses.replace(canvas, chunk_bytes=chunk_bytes)
        results.append(run_accumulator(task.accumulator(blocks, **QUICK), blocks))
        plt.close("all")
    assert set(results[0].nulls) == {"spatial_shuffle", "label_permutation"}
    for result in results[1:]:
        assert_same_result(result, results[0])
        assert result.figures.keys() == results[0].figures.keys()


@pytest.mark.parametrize("covered", [True, False])
def test_the_shuffled_control_in_one_pass_scores_what_its_own_two_passes_score(covered: bool) -> None:
    canvas, task = _two_layer_video(), load_task("clustering")  # 40 % zeros: some pixels of "second" have S = 0
    if covered:  # one neuron of every layer nonzero everywhere: S > 0 at every pixel of any shuffle
        canvas.layers["second"][0] = torch.rand(T, H, W, generator=torch.Generator().manual_seed(6)) + 0.5
    canvas = dataclasses.replace(canvas, chunk_bytes=4 * 12 * H * W)  # one frame per block
    trained = task.accumulator(canvas, **QUICK)
    run_accumulator(trained, canvas)
    shuffled = shuffle_canvas(canvas, seed=3)
    control, own = trained.for_control(shuffled), task.accumulator(shuffled, **{**QUICK, "null_draws": 0})
    assert control.passes == own.passes == 2  # at most two, until the first pass shows whether S > 0 everywhere
    by_control, by_own = run_accumulator(control, shuffled), run_accumulator(own, shuffled)
    plt.close("all")
    assert (control.passes, own.passes) == ((1, 2) if covered else (2, 2))  # some pixel has S = 0 otherwise
    assert_same_result(by_control, by_own)
    finite = [{name: value for name, value in result.scores.items() if math.isfinite(value)}
              for result in (by_control, by_own)]
    assert finite[0] == finite[1] and "second/motion_ami" in finite[0]  # the same values, not just close


def test_the_accumulator_takes_the_layers_from_its_blocks_only() -> None:
    canvas, task = _two_layer_video(), load_task("clustering")
    fed = feed_blocks(task.accumulator(unreadable(canvas), **QUICK), canvas, frames=2)
    plt.close("all")
    expected = _result(canvas, **QUICK)
    assert_same_result(fed, expected)
    assert fed.figures.keys() == expected.figures.keys()


def test_figure_frames_of_large_layers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer whose frame exceeds FIGURE_ENTRIES keeps frame 0 of a seeded sample of its neurons
    and the motion figure's frame on a coarser pixel grid; the scores do not change."""
    from xinc_bench.probes import clustering

    canvas, task = _two_layer_video(), load_task("clustering")
    expected = run_accumulator(task.accumulator(canvas, **QUICK), canvas)
    monkeypatch.setattr(clustering, "FIGURE_ENTRIES", 5 * H * W)
    accumulator = task.accumulator(canvas, **QUICK)
    result = run_accumulator(accumulator, canvas)
    plt.close("all")
    assert_same_result(result, expected)
    assert result.figures.keys() == expected.figures.keys()
    assert accumulator.first_frames["first"].shape == (5, H, W)  # 5 of the 12 neurons
    assert accumulator.figure_strides == {"first": 2, "second": 2}  # 12 (7) maps of 16 x 32 pixels
    for frames in (accumulator.first_frames, accumulator.motion_frames):
        assert all(frame.numel() <= 5 * H * W for frame in frames.values())
    sample = clustering.figure_sample(12, H * W, seed=0)
    assert len(sample) == 5 and torch.equal(sample, sample.unique())  # distinct, sorted


def test_spatial_shuffle_draws_have_the_mean_and_covariance_of_permuted_maps() -> None:
    # the moments the draws are built from are those of real permutations of every map in every frame
    gen = torch.Generator().manual_seed(11)
    frames, height, width, clusters, draws = 2, 8, 16, 4, 4000
    maps = torch.rand(3, frames, height, width, generator=gen) ** 3  # skewed values
    maps[1, :, :, : width // 2] = 0.0  # a map active on half the frame
    labels = torch.randint(0, clusters, (frames, height, width), generator=gen)
    sums = NeuronVectorSums(3, labels, clusters, shuffles=draws, null_seed=0)
    mags = maps.reshape(3, -1)
    sums.add_extrema(mags)
    sums.end_extrema()
    sums.add_sums(0, mags)
    _, _, drawn = sums.result()  # [D, 3, K]
    normalised = (mags - sums.low[:, None]) / sums.scale
    values = normalised.reshape(3, frames, -1)
    flat_labels = labels.reshape(frames, -1)
    exact = torch.zeros(draws, 3, clusters, dtype=torch.float64)
    for frame in range(frames):
        order = torch.rand(draws, 3, height * width, generator=gen).argsort(dim=2)
        permuted = flat_labels[frame][order]  # each neuron's own permuted labels, per draw
        exact.scatter_add_(2, permuted, values[:, frame].double().expand(draws, -1, -1).contiguous())
    exact /= torch.bincount(labels.reshape(-1), minlength=clusters).double()
    spread = exact.std(dim=0)
    assert torch.allclose(drawn.mean(dim=0), exact.mean(dim=0), atol=float(5 * spread.max() / math.sqrt(draws)))
    for neuron in range(3):
        drawn_cov = torch.cov(drawn[:, neuron].T)
        exact_cov = torch.cov(exact[:, neuron].T)
        assert torch.allclose(drawn_cov, exact_cov, rtol=0.15, atol=0.15 * float(exact_cov.diagonal().max()))


def test_silhouette_null_agrees_with_the_silhouette_of_real_spatial_shuffles() -> None:
    # the probe's draws against the silhouette of the shuffled control itself, ten seeds
    canvas = Canvas(layers={"layer": _halves(16, 16)}, frames=_frames())
    result = _result(canvas)
    drawn = np.array(result.nulls["spatial_shuffle"]["silhouette"])
    shuffled = np.array([_run(shuffle_canvas(canvas, seed=seed), null_draws=0)["silhouette"] for seed in range(10)])
    spread = max(drawn.std(), shuffled.std())
    assert abs(drawn.mean() - shuffled.mean()) < 3 * spread / math.sqrt(10) + 0.02
    assert result.scores["silhouette"] > shuffled.max() and result.scores["silhouette"] > drawn.max()
