"""The ``clustering`` probe (SPEC 5.7, after the XINC reference): kinds of neurons, and what
groups pixels in video canvases.

**Neuron clustering** (ref). The pixels are cut into ``pixel_clusters`` (32) k-means clusters of
their Gabor responses. Each neuron with a nonzero map is min-max normalised over its pixels and
described by its mean normalised ``|C|`` in each pixel cluster; these vectors are clustered into
``neuron_clusters`` (6) groups by k-means (fixed seed) or FINCH (``method: finch``, needs the
``finch-clust`` package; the FINCH partition whose cluster count is closest to
``neuron_clusters`` is used). ``silhouette`` is the silhouette score of that clustering (NaN with
fewer than two clusters or fewer than three neurons). :func:`seed_mixing` measures, over canvases
of several seeds, how evenly seeds mix within clusters.

**Motion clustering** (video canvases; ``motion: false`` skips it). The pixels ``(t, p)`` of
frames ``t >= 1`` with ``S > 0`` (at most ``max_pixels``, drawn with the seed) are clustered into
``motion_clusters`` (8) groups by their share vectors ``f(t, p) = |C(t, p)| / S(t, p)``.
``motion_ami`` is the adjusted mutual information of these clusters with binned motion (static
below ``motion_threshold`` px, else ``flow_magnitude_bins`` quantile bins of the speed times
``flow_direction_bins`` direction sectors) and ``object_ami`` with the masks;
``motion_dominance = motion_ami - object_ami``. Image canvases report no motion scores.

Layers are read in frame chunks. The sampled share vectors are held in memory (``max_pixels x N``
float32, and k-means works on float64 copies of them, about 8x that at its peak), so
``max_share_values`` caps the sample of a layer of N neurons at ``max_share_values // N`` pixels
(the task sets 2^28: layers up to 4,096 neurons keep all ``max_pixels``; the paper NeRV's block 1,
18,352 kernels, gets 14,627 pixels and about 10 GiB). Unset, there is no cap.

**Nulls** (no further pass over the canvas):

* ``spatial_shuffle`` (``silhouette``): every neuron's map permuted over the pixels of each frame,
  independently of the other neurons (the spatial-shuffle control, ``D`` times), and the neuron
  vectors, their clustering and its silhouette recomputed. Drawn in the pass that builds the
  vectors (each neuron's values summed over its own permuted pixel labels); the clustering is
  redone per draw on the ``[N', K]`` vectors, never on the canvas. It asks whether the neuron kinds
  come from *where* the neurons act, not just from their value distributions (which alone make
  k-means find some clusters).
* ``label_permutation`` (``motion_ami``, ``object_ami``, ``motion_dominance``): the motion and
  object labels of a layer's sampled pixels permuted together over those pixels (one permutation
  per draw; layers with the same sample size get the same permutations). A permutation keeps both
  labellings' marginals, so the expected mutual information and the entropies of the adjusted
  score are computed once and a draw costs one contingency table. AMI is adjusted for chance: its
  null mean is about 0 and the draws give its spread.

Scores that a canvas leaves undefined are NaN and also listed in ``ProbeResult.absent`` with the
reason (image canvases and ``motion: false`` list the motion scores there).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import PROBES
from .base import ProbeResult
from .canvas_reading import layer_extrema, layer_total, magnitude_chunks
from .image_features import GABOR_BANKS
from .inputs import choice, require_flow, require_masks
from .kmeans import kmeans_centres, kmeans_labels, nearest_centre
from .nulls import generator, permutations
from .numerics import finite_mean, group_sums
from .pixel_partitions import gabor_clusters
from .plotting import pyplot
from .scores import collect_scores
from .stats import collect_null_draws

METHODS = ("kmeans", "finch")
MOTION_METRICS = ("motion_ami", "object_ami", "motion_dominance")
#: null seed streams: spatial shuffles of the neuron maps (one per draw and frame), pixel labels
_SHUFFLE_STREAM, _PIXEL_STREAM, _STREAMS = 1, 2, 2
_REASONS = {
    "silhouette": "fewer than two distinct neuron clusters, or fewer than three neurons with a nonzero map",
    "motion": "no pixel of frames t >= 1 has any contribution",
    "image": "motion clustering needs a video canvas",
    "off": "motion clustering is switched off (motion: false)",
}


def neuron_vectors(
    canvas: Canvas,
    name: str,
    pixel_labels: torch.Tensor,
    num_clusters: int,
    shuffles: int = 0,
    null_seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference neuron vectors ``[N', K]`` of layer ``name``'s neurons with a nonzero map, their
    indices, and the vectors of ``shuffles`` spatial-shuffle draws ``[shuffles, N', K]``.

    Each map ``|C_n|`` is min-max normalised over all its pixels (a constant map becomes zero),
    then averaged over the pixels of each cluster of ``pixel_labels[T, H, W]``. Two passes over
    the layer's frame chunks: the per-neuron extrema, then the sums of the normalised maps (in
    float32, as a whole-layer normalisation, accumulated in float64).

    A spatial-shuffle draw permutes every neuron's map over the pixels of each frame independently
    of the other neurons (as :func:`~xinc_bench.probes.controls.shuffle_canvas` does) before the
    averaging; the extrema, hence the normalisation, are unchanged by a permutation. It is
    computed in the same pass: each neuron's normalised map is summed over its own permuted copy of
    the pixel labels (one label gather and scatter-add per draw and frame, no further read). Draw
    ``d`` of frame ``t`` uses the generator of stream ``(d, t)`` of ``null_seed``, so the draws do not
    depend on how the layer is chunked.
    """
    low, high = layer_extrema(canvas, name)
    span = (high - low)[:, None]
    scale = torch.where(span > 0, span, 1.0)
    frame_labels = pixel_labels.reshape(pixel_labels.shape[0], -1)
    num_neurons, frame_pixels = low.numel(), frame_labels.shape[1]
    sums = torch.zeros(num_neurons, num_clusters, dtype=torch.float64)
    null_sums = torch.zeros(shuffles, num_neurons, num_clusters, dtype=torch.float64)
    for start, mags in magnitude_chunks(canvas, name):
        stop = start + mags.shape[1] // frame_pixels
        normalised = torch.where(span > 0, (mags - low[:, None]) / scale, 0.0)
        chunk_labels = frame_labels[start:stop]
        sums += group_sums(normalised, chunk_labels.reshape(-1), num_clusters)
        values = normalised.double().reshape(num_neurons, stop - start, frame_pixels)
        for draw in range(shuffles):
            for offset, frame in enumerate(range(start, stop)):
                gen = generator(null_seed, _SHUFFLE_STREAM + (draw * canvas.shape[0] + frame) * _STREAMS)
                order = torch.rand(num_neurons, frame_pixels, generator=gen).argsort(dim=1)
                own_labels = chunk_labels[offset][order]  # [N, H * W]: each neuron's own permuted labels
                null_sums[draw].scatter_add_(1, own_labels, values[:, offset])
    alive = torch.nonzero(high > 0).reshape(-1)
    areas = torch.bincount(pixel_labels.reshape(-1), minlength=num_clusters).double()
    return sums[alive] / areas, alive, null_sums[:, alive] / areas


def cluster_neurons(vectors: np.ndarray, num_clusters: int, method: str, seed: int) -> np.ndarray:
    """Cluster label of each neuron vector ``[N', D]``: ``[N']`` int64."""
    if vectors.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if method == "finch":
        return _finch(vectors, num_clusters)
    return kmeans_labels(vectors, num_clusters, seed)


def silhouette(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score (Euclidean); NaN unless ``2 <= clusters <= neurons - 1``."""
    from sklearn.metrics import silhouette_score

    count = len(np.unique(labels))
    if count < 2 or count > vectors.shape[0] - 1:
        return math.nan
    return float(silhouette_score(vectors, labels))


def silhouette_null_draws(
    null_vectors: torch.Tensor, num_clusters: int, method: str, seed: int
) -> list[float]:
    """Silhouette of the neuron clustering of each spatial-shuffle draw's vectors ``[D, N', K]``.

    Each draw is clustered as the canvas is (:func:`cluster_neurons`, same method and seed), so a
    draw answers: how distinct would the neuron kinds look if every neuron kept its values but
    not where they lie? NaN draws where the silhouette is undefined.
    """
    scores = []
    for vectors in null_vectors.numpy():
        labels = cluster_neurons(vectors, num_clusters, method, seed)
        scores.append(silhouette(vectors, labels))
    return scores


def ami_null_draws(truth: np.ndarray, clusters: np.ndarray, order: torch.Tensor) -> np.ndarray:
    """Adjusted mutual information (arithmetic normalisation) of ``truth[order[d]]`` with ``clusters``.

    The value of :func:`sklearn.metrics.adjusted_mutual_info_score` for each row of ``order[D, P]``
    (a permutation of the ``P`` labels). A permutation keeps both marginals, so the expected mutual
    information and the entropies are computed once; each draw adds one contingency table.

    Returns:
        ``[D]`` float64.
    """
    from sklearn.metrics.cluster import contingency_matrix, expected_mutual_information

    draws = order.shape[0]
    rows = np.unique(truth, return_inverse=True)[1].reshape(-1)
    columns = np.unique(clusters, return_inverse=True)[1].reshape(-1)
    num_rows, num_columns = int(rows.max()) + 1, int(columns.max()) + 1
    if num_rows == num_columns == 1:
        return np.ones(draws)
    if num_rows == 1 or num_columns == 1:
        return np.zeros(draws)
    samples = rows.size
    expected = expected_mutual_information(contingency_matrix(rows, columns), samples)
    row_sums = np.bincount(rows).astype(np.float64)
    column_sums = np.bincount(columns).astype(np.float64)
    normaliser = (_entropy(row_sums) + _entropy(column_sums)) / 2
    cells = num_rows * num_columns
    offsets = (torch.arange(draws) * cells)[:, None]
    joint = torch.from_numpy(rows)[order] * num_columns + torch.from_numpy(columns) + offsets  # [D, P]
    table = torch.bincount(joint.reshape(-1), minlength=draws * cells).reshape(draws, num_rows, num_columns).double()
    outer = torch.from_numpy(np.outer(row_sums, column_sums))
    terms = torch.where(table > 0, table / samples * torch.log(table * samples / outer), 0.0)
    information = terms.sum(dim=(1, 2)).clamp(min=0.0).numpy()
    eps = np.finfo(np.float64).eps
    denominator = normaliser - expected
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    numerator = information - expected
    numerator = np.where(numerator < 0, np.minimum(numerator, -eps), np.maximum(numerator, eps))
    return numerator / denominator


def motion_labels(flow: torch.Tensor, threshold: float, magnitude_bins: int, direction_bins: int) -> torch.Tensor:
    """Binned motion of each flow vector ``[..., 2]``: 0 = static, else 1 + speed bin x direction bin."""
    speed = torch.linalg.vector_norm(flow, dim=-1)
    moving = speed > threshold
    levels = np.linspace(0, 1, magnitude_bins + 1)[1:-1]
    edges = np.quantile(speed[moving].double().numpy(), levels) if bool(moving.any()) else np.zeros(0)
    speed_bin = torch.bucketize(speed.double(), torch.from_numpy(np.asarray(edges, dtype=np.float64)), right=True)
    angle = torch.atan2(flow[..., 1], flow[..., 0]) % (2 * math.pi)
    direction_bin = (angle / (2 * math.pi) * direction_bins).long().clamp(max=direction_bins - 1)
    return torch.where(moving, 1 + speed_bin * direction_bins + direction_bin, 0)


def pixel_sample(total: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Indices of at most ``limit`` pixels with ``total > 0``, drawn with ``seed`` (sorted)."""
    candidates = torch.nonzero(total > 0).reshape(-1)
    if candidates.numel() <= limit:
        return candidates
    chosen = torch.randperm(candidates.numel(), generator=torch.Generator().manual_seed(seed))[:limit]
    return candidates[chosen].sort().values


def share_vectors(canvas: Canvas, name: str, pixels: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Share vectors ``f(t, p) = |C(t, p)| / S(t, p)`` of some pixels of frames ``t >= 1``: ``[P', N]`` float32.

    Gathered from the layer's frame chunks; memory ``P' x N x 4`` bytes plus one chunk.

    Args:
        pixels: sorted flat indices ``[P']`` into the pixels ``[(T - 1) H W]`` of frames ``t >= 1``.
        total: ``S`` of those pixels ``[(T - 1) H W]`` (float64, :func:`layer_total`), nonzero at ``pixels``.
    """
    num_neurons, _, height, width = canvas.layer_shape(name)
    flat = pixels + height * width
    shares = torch.empty(pixels.numel(), num_neurons)
    for start, mags in magnitude_chunks(canvas, name):
        offset = start * height * width
        bounds = torch.tensor([offset, offset + mags.shape[1]])
        first, last = torch.searchsorted(flat, bounds).tolist()
        shares[first:last] = mags[:, flat[first:last] - offset].T
    return shares.div_(total[pixels, None])


def sample_limit(settings: dict[str, Any], num_neurons: int) -> int:
    """Most pixels to sample in a layer of ``num_neurons`` neurons.

    ``max_pixels``; when ``max_share_values`` is set, also at most ``max_share_values // N`` (at
    least one), so the share vectors of wide layers stay within a memory budget.
    """
    limit = settings["max_pixels"]
    if settings["max_share_values"] is not None:
        limit = min(limit, max(1, settings["max_share_values"] // num_neurons))
    return limit


def layer_motion_clustering(
    canvas: Canvas, name: str, motion: torch.Tensor, objects: torch.Tensor, settings: dict[str, Any]
) -> tuple[dict[str, float], np.ndarray | None, list[dict[str, float]]]:
    """AMI of share-vector pixel clusters with motion and with objects for layer ``name``.

    ``motion`` and ``objects`` are the flat labels ``[(T - 1) H W]`` of frames ``t >= 1``. The layer
    is read in frame chunks: ``S`` first, then the share vectors of the sampled pixels. Also
    returns the centres (None when no pixel has contribution) for the cluster-map figure, and the
    scores of ``settings["null_draws"]`` label-permutation draws (the motion and object labels of
    the sampled pixels permuted together, generator stream ``_PIXEL_STREAM`` of ``null_seed``).
    """
    from sklearn.metrics import adjusted_mutual_info_score

    draws = settings["null_draws"]
    total = layer_total(canvas, name)[1:].reshape(-1)
    limit = sample_limit(settings, canvas.layer_shape(name)[0])
    chosen = pixel_sample(total, limit, settings["seed"])
    if chosen.numel() == 0:
        undefined = dict.fromkeys(MOTION_METRICS, math.nan)
        return undefined, None, [dict(undefined) for _ in range(draws)]
    shares = share_vectors(canvas, name, chosen, total).numpy()
    centres = kmeans_centres(shares, settings["motion_clusters"], settings["seed"])
    clusters = nearest_centre(shares, centres)
    motion_ami = float(adjusted_mutual_info_score(motion[chosen].numpy(), clusters))
    object_ami = float(adjusted_mutual_info_score(objects[chosen].numpy(), clusters))
    scores = {"motion_ami": motion_ami, "object_ami": object_ami, "motion_dominance": motion_ami - object_ami}
    if not draws:
        return scores, centres, []
    order = permutations(chosen.numel(), draws, generator(settings["null_seed"], _PIXEL_STREAM))
    motion_draws = ami_null_draws(motion[chosen].numpy(), clusters, order)
    object_draws = ami_null_draws(objects[chosen].numpy(), clusters, order)
    null = [
        {"motion_ami": float(m), "object_ami": float(o), "motion_dominance": float(m - o)}
        for m, o in zip(motion_draws, object_draws)
    ]
    return scores, centres, null


def seed_mixing(canvases: Sequence[Canvas], params: dict[str, Any]) -> float:
    """How evenly models trained with different seeds mix within neuron clusters.

    The canvases (one per seed, same signal and layers) are described with the pixel clusters of
    the first canvas's frames; each layer's neurons of all seeds are clustered together. Per
    cluster, the entropy of its neurons' seeds is divided by ``log(number of seeds)``; the
    size-weighted mean over clusters is averaged over layers. 1 = every cluster mixes all seeds
    evenly, 0 = every cluster holds one seed's neurons.

    Args:
        canvases: two or more canvases of the same signal.
        params: ``pixel_clusters``, ``neuron_clusters``, ``method``, ``seed``, ``gabor_bank`` as
            for the probe.
    """
    if len(canvases) < 2:
        raise XincError(f"seed mixing needs canvases of two or more seeds, got {len(canvases)}")
    shape = canvases[0].shape
    if any(c.shape != shape for c in canvases):
        raise XincError(f"seed mixing needs canvases of the same signal; shapes differ: {[c.shape for c in canvases]}")
    layers = [name for name in canvases[0].layer_names if all(name in c.layer_names for c in canvases)]
    if not layers:
        raise XincError("seed mixing needs canvases with layers of the same names; these share none")
    settings = _neuron_settings(params)
    pixel_labels = _pixel_clusters(canvases[0], settings)
    count = int(pixel_labels.max()) + 1
    values = []
    for name in layers:
        per_seed = [neuron_vectors(c, name, pixel_labels, count)[0].numpy() for c in canvases]
        seeds = np.concatenate([np.full(len(v), s) for s, v in enumerate(per_seed)])
        vectors = np.concatenate(per_seed)
        clusters = cluster_neurons(vectors, settings["neuron_clusters"], settings["method"], settings["seed"])
        values.append(_normalised_seed_entropy(clusters, seeds, len(canvases)))
    return finite_mean(values)


@PROBES.register("clustering")
def clustering(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.7 for every layer; headline scores are means over layers.

    Params:
        pixel_clusters (32), neuron_clusters (6), method (``kmeans`` | ``finch``), seed (0),
        gabor_bank (``full`` | ``reference``); video: motion (true), motion_clusters (8),
        motion_threshold (0.5), flow_magnitude_bins (3), flow_direction_bins (8), max_pixels (65536),
        max_share_values (None: no cap; else at most ``max_share_values // N`` pixels per layer);
        null_draws, null_seed: draws of each null (0: none) and their seed.
    """
    settings = _neuron_settings(params)
    draws, null_seed = int(params.get("null_draws", 0)), int(params.get("null_seed", 0))
    pixel_labels = _pixel_clusters(canvas, settings)
    count = int(pixel_labels.max()) + 1
    per_layer: dict[str, dict[str, float]] = {}
    neuron_draws: list[dict[str, dict[str, float]]] = [{} for _ in range(draws)]
    cluster_maps: dict[str, list[torch.Tensor]] = {}
    for name in canvas.layer_names:
        vectors, alive, null_vectors = neuron_vectors(canvas, name, pixel_labels, count, draws, null_seed)
        labels = cluster_neurons(vectors.numpy(), settings["neuron_clusters"], settings["method"], settings["seed"])
        per_layer[name] = {"silhouette": silhouette(vectors.numpy(), labels), "clusters": float(len(np.unique(labels)))}
        null = silhouette_null_draws(null_vectors, settings["neuron_clusters"], settings["method"], settings["seed"])
        for draw, value in zip(neuron_draws, null):
            draw[name] = {"silhouette": value}
        cluster_maps[name] = _cluster_mean_maps(canvas.layer_frames(name, 0, 1)[alive, 0].abs(), labels)
    figures = {"neuron_clusters": _neuron_figure(cluster_maps)}
    nulls = {"spatial_shuffle": collect_null_draws(neuron_draws)} if draws else {}
    absent: dict[str, str] = {}
    if canvas.shape[0] > 1 and bool(params.get("motion", True)):
        motion_scores, figures["motion_clusters"], pixel_draws = _motion_clustering(
            canvas, params, settings["seed"], draws, null_seed
        )
        for name, values in motion_scores.items():
            per_layer[name].update(values)
        if draws:
            nulls["label_permutation"] = collect_null_draws(pixel_draws)
    else:
        reason = _REASONS["image"] if canvas.shape[0] == 1 else _REASONS["off"]
        absent.update(dict.fromkeys(MOTION_METRICS, reason))
    scores = collect_scores(per_layer)
    for name, value in scores.items():
        if math.isnan(value):
            metric = name.rsplit("/", 1)[-1]
            absent[name] = _REASONS["silhouette" if metric == "silhouette" else "motion"]
    return ProbeResult(scores=scores, figures=figures, nulls=nulls, absent=absent)


def _neuron_settings(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "pixel_clusters": int(params.get("pixel_clusters", 32)),
        "neuron_clusters": int(params.get("neuron_clusters", 6)),
        "method": choice(params, "method", METHODS),
        "seed": int(params.get("seed", 0)),
        "gabor_bank": choice(params, "gabor_bank", GABOR_BANKS),
    }


def _pixel_clusters(canvas: Canvas, settings: dict[str, Any]) -> torch.Tensor:
    """Gabor-texture k-means cluster of each pixel: ``[T, H, W]`` int64."""
    return gabor_clusters(canvas.frames, settings["pixel_clusters"], settings["seed"], settings["gabor_bank"])


def _motion_clustering(
    canvas: Canvas, params: dict[str, Any], seed: int, draws: int, null_seed: int
) -> tuple[dict[str, dict[str, float]], Any, list[dict[str, dict[str, float]]]]:
    """Motion-clustering scores of every layer, the cluster-map figure and the label-permutation draws."""
    flow = require_flow(canvas, "clustering (motion clustering; or set motion: false)")
    masks = require_masks(canvas, "clustering (motion clustering; or set motion: false)")
    settings = {
        "motion_clusters": int(params.get("motion_clusters", 8)),
        "max_pixels": int(params.get("max_pixels", 65536)),
        "max_share_values": None if params.get("max_share_values") is None else int(params["max_share_values"]),
        "seed": seed,
        "null_draws": draws,
        "null_seed": null_seed,
    }
    motion = motion_labels(
        flow[1:],
        float(params.get("motion_threshold", 0.5)),
        int(params.get("flow_magnitude_bins", 3)),
        int(params.get("flow_direction_bins", 8)),
    )
    objects = masks[1:]
    scores: dict[str, dict[str, float]] = {}
    null: list[dict[str, dict[str, float]]] = [{} for _ in range(draws)]
    frame = int(torch.linalg.vector_norm(flow[1:], dim=-1).flatten(1).mean(dim=1).argmax()) + 1
    maps: dict[str, np.ndarray] = {}
    for name in canvas.layer_names:
        scores[name], centres, layer_draws = layer_motion_clustering(
            canvas, name, motion.reshape(-1), objects.reshape(-1), settings
        )
        for draw, values in zip(null, layer_draws):
            draw[name] = values
        if centres is not None:
            maps[name] = _frame_clusters(canvas.layer_frames(name, frame, frame + 1)[:, 0], centres)
    return scores, _motion_figure(maps, motion[frame - 1], masks[frame], frame), null


def _frame_clusters(frame: torch.Tensor, centres: np.ndarray) -> np.ndarray:
    """Nearest share-vector centre of each pixel of one frame ``[N, H, W]`` (-1 where S = 0)."""
    mags = frame.abs().reshape(frame.shape[0], -1)
    total = mags.sum(dim=0)
    labels = np.full(total.numel(), -1, dtype=np.int64)
    active = total > 0
    if bool(active.any()):
        labels[active.numpy()] = nearest_centre((mags[:, active] / total[active]).T.numpy(), centres)
    return labels.reshape(frame.shape[1:])


def _finch(vectors: np.ndarray, num_clusters: int) -> np.ndarray:
    try:
        from finch import FINCH
    except ImportError as exc:
        raise XincError(
            "method: finch needs the finch-clust package; install it with `pip install finch-clust`"
        ) from exc
    if vectors.shape[0] < 3:
        return np.zeros(vectors.shape[0], dtype=np.int64)
    partitions, counts, _ = FINCH(vectors, verbose=False)
    best = int(np.argmin(np.abs(np.asarray(counts) - num_clusters)))
    return np.unique(partitions[:, best], return_inverse=True)[1].astype(np.int64).reshape(-1)


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a labelling with these class ``counts`` (all positive)."""
    shares = counts / counts.sum()
    return float(-(shares * np.log(shares)).sum())


def _normalised_seed_entropy(clusters: np.ndarray, seeds: np.ndarray, num_seeds: int) -> float:
    """Size-weighted mean over clusters of the seed entropy divided by ``log(num_seeds)``."""
    if clusters.size == 0:
        return math.nan
    table = np.zeros((int(clusters.max()) + 1, num_seeds))
    np.add.at(table, (clusters, seeds), 1.0)
    sizes = table.sum(axis=1, keepdims=True)
    share = table / sizes
    logs = np.log(np.where(share > 0, share, 1.0))
    entropy = -(share * logs).sum(axis=1) / math.log(num_seeds)
    return float((entropy * sizes[:, 0]).sum() / sizes.sum())


def _cluster_mean_maps(first: torch.Tensor, labels: np.ndarray) -> list[torch.Tensor]:
    """Mean min-max normalised frame-0 map ``[H, W]`` of each neuron cluster, from ``first[N', H, W]``."""
    maps = first.flatten(1)
    low = maps.amin(dim=1, keepdim=True)
    span = maps.amax(dim=1, keepdim=True) - low
    normalised = torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), 0.0)
    index = torch.from_numpy(labels)
    return [normalised[index == k].mean(dim=0).reshape(first.shape[1:]) for k in np.unique(labels)]


def _neuron_figure(cluster_maps: dict[str, list[torch.Tensor]]) -> Any:
    """Rows = layers, columns = neuron clusters: each cluster's mean normalised map (frame 0)."""
    plt = pyplot()
    columns = max([len(maps) for maps in cluster_maps.values()] + [1])
    rows = len(cluster_maps)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 1.8 * rows), squeeze=False)
    for row, (name, maps) in zip(axes, cluster_maps.items()):
        for k, axis in enumerate(row):
            if k < len(maps):
                axis.imshow(maps[k].numpy(), cmap="magma")
                axis.set_title(f"{name} cluster {k}", fontsize=8)
            axis.axis("off")
    fig.tight_layout()
    return fig


def _motion_figure(maps: dict[str, np.ndarray], motion: torch.Tensor, masks: torch.Tensor, frame: int) -> Any:
    """One frame: binned motion, masks, and each layer's share-vector pixel clusters."""
    plt = pyplot()
    panels = [("binned motion", motion.numpy()), ("masks", masks.numpy())]
    panels += [(f"{name}: pixel clusters", labels) for name, labels in maps.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.2), squeeze=False)
    for axis, (title, image) in zip(axes[0], panels):
        axis.imshow(image, cmap="tab20", interpolation="nearest")
        axis.set_title(f"{title} (frame {frame})", fontsize=8)
        axis.axis("off")
    fig.tight_layout()
    return fig
