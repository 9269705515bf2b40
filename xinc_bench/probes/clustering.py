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

The probe is an accumulator over two passes of the canvas's blocks (:class:`ClusteringProbe`):
pass 0 takes each neuron's extrema and, for motion clustering, each pixel's ``S``; pass 1 sums the
normalised maps per pixel cluster (and their per-frame moments for the spatial-shuffle draws), gathers the share vectors of
the sampled pixels and keeps the two frames the figures show. Its spatial-shuffle control takes
the canvas's extrema (a shuffle within each map keeps them) and sums in its first pass, which is
its only one unless some pixel of the control has ``S = 0`` (see
:meth:`ClusteringProbe.for_control`). The sampled share vectors are held
in memory (``max_pixels x N`` float32 per layer, all layers at once during pass 1, and k-means
works on one float64 copy of one layer's, 3x that at its peak), so ``max_share_values`` caps
the sample of a layer of N neurons at ``max_share_values // N`` pixels (the task sets 2^26:
layers up to 1,024 neurons keep all ``max_pixels``; each of the paper NeRV's three blocks holds
268 MB, block 1's 18,352 kernels on 3,656 pixels, about 0.8 GB at the k-means peak). Unset, there
is no cap.

**Nulls** (no further pass over the canvas):

* ``spatial_shuffle`` (``silhouette``): every neuron's map permuted over the pixels of each frame,
  independently of the other neurons (the spatial-shuffle control, ``D`` times), and the neuron
  vectors, their clustering and its silhouette recomputed. A permutation of a frame's ``P`` values
  over clusters of ``a_k`` pixels gives cluster sums of mean ``a_k mu`` and covariance
  ``s^2 P / (P - 1) (diag(a) - a a^T / P)`` (``mu``, ``s^2``: the map's mean and variance in the
  frame); each draw takes the neuron vectors from the Gaussian with exactly these moments, summed
  over frames (:meth:`NeuronVectorSums.shuffle_draws`). This is the normal limit of sampling
  without replacement (Hajek's finite-population central limit theorem), accurate when each
  cluster covers many pixels of a frame, and it needs each neuron's sum and sum of squares per
  frame only: a draw costs ``O(N T K)`` instead of a permutation of the whole canvas (hours for
  the paper's NeRV at 128x256). The clustering is redone per draw on the ``[N', K]`` vectors. It
  asks whether the neuron kinds come from *where* the neurons act, not just from their value
  distributions (which alone make k-means find some clusters).
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
from .accumulator import ProbeAccumulator, ProbeResult
from .image_features import GABOR_BANKS
from .inputs import choice, require_flow, require_masks
from .kmeans import kmeans_centres, kmeans_labels, nearest_centre
from .nulls import generator, permutations
from .numerics import block_magnitudes, block_neuron_extrema, block_pixel_totals, finite_mean, group_sums, magnitudes
from .pixel_partitions import gabor_clusters
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

METHODS = ("kmeans", "finch")
MOTION_METRICS = ("motion_ami", "object_ami", "motion_dominance")
#: null seed streams: the spatial-shuffle draws (one per draw, odd), the pixel labels' permutations
_SHUFFLE_STREAM, _PIXEL_STREAM, _STREAMS = 1, 2, 2
#: entries of one block of neuron rows taken at once by :meth:`NeuronVectorSums.add_sums`
_ROW_BLOCK = 1 << 22
#: entries of the frames a layer keeps for the figures (64 MB as float32): a larger layer keeps
#: frame 0 of a seeded sample of its neurons (cluster mean maps) and the motion figure's frame on
#: a coarser grid of pixels
FIGURE_ENTRIES = 1 << 24
_REASONS = {
    "silhouette": "fewer than two distinct neuron clusters, or fewer than three neurons with a nonzero map",
    "motion": "no pixel of frames t >= 1 has any contribution",
    "image": "motion clustering needs a video canvas",
    "off": "motion clustering is switched off (motion: false)",
}


class NeuronVectorSums:
    """The neuron vectors of one layer (see :func:`neuron_vectors`), accumulated from its blocks in two passes.

    Pass 0 gives every block to :meth:`add_extrema` (per-neuron minimum and maximum of ``|C|``),
    then :meth:`end_extrema`; pass 1 gives every block to :meth:`add_sums` (the sums of the
    normalised maps over each pixel cluster and, for the spatial-shuffle draws, each neuron's sum
    and sum of squares in each frame). Blocks may come in any frame ranges; the draws, made by
    :meth:`result`, do not depend on them. Memory: ``[N]`` extrema, ``[N, K]`` float64 sums and
    ``[N, T]`` float64 moments.

    Args:
        num_neurons: N of the layer.
        pixel_labels: ``[T, H, W]`` int64 pixel cluster of each pixel, in ``0..num_clusters-1``.
        num_clusters: K.
        shuffles: spatial-shuffle draws (0: none).
        null_seed: their seed.
    """

    def __init__(
        self, num_neurons: int, pixel_labels: torch.Tensor, num_clusters: int, shuffles: int = 0, null_seed: int = 0
    ) -> None:
        self.pixel_labels = pixel_labels
        self.frame_labels = pixel_labels.reshape(pixel_labels.shape[0], -1)
        self.num_clusters, self.shuffles, self.null_seed = num_clusters, shuffles, null_seed
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None
        self.sums = torch.zeros(num_neurons, num_clusters, dtype=torch.float64)
        num_frames = self.frame_labels.shape[0]
        #: per neuron and frame, the sum and the sum of squares of the normalised map (the draws' moments)
        self.frame_sums = torch.zeros(num_neurons, num_frames, dtype=torch.float64)
        self.frame_squares = torch.zeros(num_neurons, num_frames, dtype=torch.float64)

    def add_extrema(self, mags: torch.Tensor) -> None:
        """Pass 0: take ``|C|`` ``[N, t * H * W]`` of some frames into the per-neuron extrema."""
        self.add_range(mags.amin(dim=1), mags.amax(dim=1))

    def add_range(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Pass 0: take the per-neuron minimum and maximum of ``|C|`` over some frames (``[N]`` each)."""
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)

    def end_extrema(self) -> None:
        """End of pass 0: the normalisation of each map (a constant map becomes zero)."""
        self.span = (self.high - self.low)[:, None]
        self.scale = torch.where(self.span > 0, self.span, 1.0)
        self.alive = torch.nonzero(self.high > 0).reshape(-1)

    def clear_sums(self) -> None:
        """Forget what :meth:`add_sums` took (to sum every block again)."""
        for sums in (self.sums, self.frame_sums, self.frame_squares):
            sums.zero_()

    def add_sums(self, start: int, mags: torch.Tensor) -> None:
        """Pass 1: take ``|C|`` ``[N, t * H * W]`` of frames ``start .. start + t - 1`` into the sums.

        The normalised maps (float32, as a whole-layer normalisation) are summed in float64, per
        pixel cluster and, with draws, per frame together with their squares. The neurons are
        taken in blocks of rows of at most ``_ROW_BLOCK`` entries.
        """
        frame_pixels = self.frame_labels.shape[1]
        num_neurons, pixels = mags.shape
        frames = pixels // frame_pixels
        flat_labels = self.frame_labels[start : start + frames].reshape(-1)
        window = slice(start, start + frames)
        step = max(1, _ROW_BLOCK // pixels)
        for first in range(0, num_neurons, step):
            rows = slice(first, min(first + step, num_neurons))
            normalised = torch.where(self.span[rows] > 0, (mags[rows] - self.low[rows, None]) / self.scale[rows], 0.0)
            self.sums[rows] += group_sums(normalised, flat_labels, self.num_clusters)
            if self.shuffles:
                values = normalised.reshape(-1, frames, frame_pixels).numpy()
                self.frame_sums[rows, window] += torch.from_numpy(np.add.reduce(values, axis=2, dtype=np.float64))
                self.frame_squares[rows, window] += torch.from_numpy(
                    np.einsum("ntp,ntp->nt", values, values, dtype=np.float64)
                )

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """After pass 1: the vectors ``[N', K]``, the neurons' indices ``[N']``, the draws' vectors ``[D, N', K]``."""
        areas = torch.bincount(self.pixel_labels.reshape(-1), minlength=self.num_clusters).double()
        return self.sums[self.alive] / areas, self.alive, self.shuffle_draws() / areas

    def shuffle_draws(self) -> torch.Tensor:
        """The cluster sums ``[D, N', K]`` of the neurons with a nonzero map under ``D`` spatial-shuffle draws.

        Under a uniform permutation of a frame's ``P`` values (mean ``mu``, population variance
        ``s^2``) over pixel clusters of ``a_k`` pixels, the cluster sums have mean ``a_k mu`` and
        covariance ``s^2 P / (P - 1) (diag(a) - a a^T / P)``; frames are permuted independently,
        so their sums add up. Each draw takes the Gaussian with exactly that mean and covariance
        (per frame, ``z * sqrt(a)`` minus its total times ``a / P``, ``z`` an ``[N', K]`` standard
        normal from the generator of stream ``d`` of ``null_seed``): the normal limit of sampling
        without replacement, close to the permutation's distribution when every cluster covers
        many pixels of a frame. It needs each neuron's first two moments per frame only, so a draw
        costs ``O(N T K)``, not a permutation of the canvas.
        """
        alive = self.alive
        num_frames, frame_pixels = self.frame_labels.shape
        frame_areas = torch.stack(
            [torch.bincount(labels, minlength=self.num_clusters) for labels in self.frame_labels]
        ).double()  # [T, K]
        mean = self.frame_sums[alive] / frame_pixels  # [N', T]
        variance = (self.frame_squares[alive] / frame_pixels - mean**2).clamp(min=0.0)
        finite_population = frame_pixels / (frame_pixels - 1) if frame_pixels > 1 else 0.0
        spread = (variance * finite_population).sqrt()
        draws = torch.zeros(self.shuffles, len(alive), self.num_clusters, dtype=torch.float64)
        for draw in range(self.shuffles):
            gen = generator(self.null_seed, _SHUFFLE_STREAM + draw * _STREAMS)
            for frame in range(num_frames):
                areas = frame_areas[frame]
                noise = torch.randn(len(alive), self.num_clusters, generator=gen, dtype=torch.float64) * areas.sqrt()
                centred = noise - noise.sum(dim=1, keepdim=True) * (areas / frame_pixels)
                draws[draw] += mean[:, frame, None] * areas + spread[:, frame, None] * centred
        return draws


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
    then averaged over the pixels of each cluster of ``pixel_labels[T, H, W]``. Two reads of the
    layer's frame chunks (:class:`NeuronVectorSums`): the per-neuron extrema, then the sums of the
    normalised maps (in float32, as a whole-layer normalisation, accumulated in float64).

    A spatial-shuffle draw stands for every neuron's map permuted over the pixels of each frame
    independently of the other neurons (as :func:`~xinc_bench.probes.controls.shuffle_canvas`
    does) before the averaging; the extrema, hence the normalisation, are unchanged by a
    permutation. The draws take the permutation's exact mean and covariance of each neuron's
    cluster sums from its per-frame moments, gathered in the second read
    (:meth:`NeuronVectorSums.shuffle_draws`), so they do not depend on how the layer is chunked.
    (The probe accumulates the same from its blocks.)
    """
    state = NeuronVectorSums(canvas.layer_shape(name)[0], pixel_labels, num_clusters, shuffles, null_seed)
    for _, chunk in canvas.frame_chunks(name):
        state.add_extrema(magnitudes(chunk))
    state.end_extrema()
    for start, chunk in canvas.frame_chunks(name):
        state.add_sums(start, magnitudes(chunk))
    return state.result()


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


class ShareSample:
    """The share vectors of some pixels of frames ``t >= 1`` of one layer, gathered from its blocks.

    Memory ``P' x N x 4`` bytes. Blocks may come in any frame ranges (each sampled pixel is taken
    from the block that holds it).

    Args:
        pixels: sorted flat indices ``[P']`` into the pixels ``[(T - 1) H W]`` of frames ``t >= 1``.
        totals: ``S`` of those pixels ``[P']`` (float64), nonzero; ``None``: not known yet (set
            :attr:`totals` before :meth:`vectors`).
        num_neurons: N of the layer.
        frame_pixels: ``H * W``.
    """

    def __init__(self, pixels: torch.Tensor, totals: torch.Tensor | None, num_neurons: int, frame_pixels: int) -> None:
        self.pixels, self.totals, self.frame_pixels = pixels, totals, frame_pixels
        self.flat = pixels + frame_pixels
        self.shares = torch.empty(pixels.numel(), num_neurons)

    def update(self, start: int, mags: torch.Tensor) -> None:
        """Take the sampled pixels of ``|C|`` ``[N, t * H * W]`` of frames ``start .. start + t - 1``."""
        offset = start * self.frame_pixels
        bounds = torch.tensor([offset, offset + mags.shape[1]])
        first, last = torch.searchsorted(self.flat, bounds).tolist()
        self.shares[first:last] = mags[:, self.flat[first:last] - offset].T

    def vectors(self) -> torch.Tensor:
        """Once every block was taken: ``f(t, p) = |C(t, p)| / S(t, p)`` of the pixels, ``[P', N]`` float32.

        Divides the gathered values in place (no second copy of the sample): call it once.
        """
        return self.shares.div_(self.totals[:, None])


def share_vectors(canvas: Canvas, name: str, pixels: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Share vectors ``f(t, p) = |C(t, p)| / S(t, p)`` of some pixels of frames ``t >= 1``: ``[P', N]`` float32.

    Gathered from the layer's frame chunks (:class:`ShareSample`); memory ``P' x N x 4`` bytes plus one chunk.

    Args:
        pixels: sorted flat indices ``[P']`` into the pixels ``[(T - 1) H W]`` of frames ``t >= 1``.
        total: ``S`` of those pixels ``[(T - 1) H W]`` (float64), nonzero at ``pixels``.
    """
    num_neurons, _, height, width = canvas.layer_shape(name)
    sample = ShareSample(pixels, total[pixels], num_neurons, height * width)
    for start, chunk in canvas.frame_chunks(name):
        sample.update(start, magnitudes(chunk))
    return sample.vectors()


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
    sample: ShareSample, motion: torch.Tensor, objects: torch.Tensor, settings: dict[str, Any]
) -> tuple[dict[str, float], np.ndarray | None, list[dict[str, float]]]:
    """AMI of share-vector pixel clusters with motion and with objects for one layer.

    ``sample`` holds the share vectors of the layer's sampled pixels (every block taken);
    ``motion`` and ``objects`` are the flat labels ``[(T - 1) H W]`` of frames ``t >= 1``. Also
    returns the centres (None when no pixel has contribution) for the cluster-map figure, and the
    scores of ``settings["null_draws"]`` label-permutation draws (the motion and object labels of
    the sampled pixels permuted together, generator stream ``_PIXEL_STREAM`` of ``null_seed``).
    """
    from sklearn.metrics import adjusted_mutual_info_score

    draws = settings["null_draws"]
    chosen = sample.pixels
    if chosen.numel() == 0:
        undefined = dict.fromkeys(MOTION_METRICS, math.nan)
        return undefined, None, [dict(undefined) for _ in range(draws)]
    shares = sample.vectors().numpy()
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
class ClusteringProbe(ProbeAccumulator):
    """SPEC 5.7 for every layer; headline scores are means over layers.

    Two passes over the canvas's blocks (the normalisation needs each neuron's extrema over the
    whole layer, the pixel sample needs every pixel's ``S``); usually one on a spatial-shuffle
    control, which takes the extrema from the canvas (:meth:`for_control`):

    * pass 0: per layer, each neuron's minimum and maximum of ``|C|`` (:class:`NeuronVectorSums`)
      and, for motion clustering, ``S(t, p)`` of every pixel (``[T, H, W]`` float64). Its end
      fixes the normalisation and draws the seeded pixel sample of frames ``t >= 1`` (then only
      ``S`` of the sampled pixels is kept);
    * pass 1: per layer, the sums of the normalised maps over the pixel clusters and, for the
      spatial-shuffle draws, their moments per frame, the share vectors of the sampled pixels
      (:class:`ShareSample`), and the two frames the figures show: frame 0 of the neurons with a
      nonzero map (cluster mean maps) and the frame of largest mean flow (pixel cluster maps), each
      within :data:`FIGURE_ENTRIES` (:func:`figure_sample`, :func:`figure_stride`).

    :meth:`compute` clusters the neuron vectors and the share vectors. Memory across the passes:
    per layer ``[N]`` extrema, ``[N, K]`` float64 sums, ``[N, T]`` float64 moments (the
    ``[D, N', K]`` draws at the end), the sampled share vectors
    (all layers' at once; see ``max_share_values``), the two figure frames (at most 64 MB each)
    and, in pass 0 only, ``S`` ``[T, H, W]`` float64. The seeded pixel sample and null draws are
    those of a whole-layer read, whatever the blocks.

    Params:
        pixel_clusters (32), neuron_clusters (6), method (``kmeans`` | ``finch``), seed (0),
        gabor_bank (``full`` | ``reference``); video: motion (true), motion_clusters (8),
        motion_threshold (0.5), flow_magnitude_bins (3), flow_direction_bins (8), max_pixels (65536),
        max_share_values (None: no cap; else at most ``max_share_values // N`` pixels per layer);
        null_draws, null_seed: draws of each null (0: none) and their seed.

    Raises:
        XincError: motion clustering on a video canvas without flow or masks (at construction).
    """

    passes = 2

    @classmethod
    def held_bytes(cls, counts: dict[str, int], shape: tuple[int, int, int], params: dict[str, Any]) -> int:
        """The share vectors of every layer's pixel sample (float32, held from the end of pass 0 on;
        k-means's float64 copy of one layer's comes after the last block); none on images or with
        ``motion: false``."""
        num_frames, height, width = shape
        if num_frames == 1 or not bool(params.get("motion", True)):
            return 0
        settings = {"max_pixels": int(params.get("max_pixels", 65536)),
                    "max_share_values": None if params.get("max_share_values") is None
                    else int(params["max_share_values"])}
        candidates = (num_frames - 1) * height * width
        entries = [count * min(candidates, sample_limit(settings, count)) for count in counts.values()]
        return 4 * sum(entries)

    def __init__(self, canvas: Canvas, params: dict[str, Any],
                 extrema: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        """``extrema``: layer -> each neuron's minimum and maximum of ``|C|`` over the layer, when they
        are known (a spatial-shuffle control's are the canvas's, :meth:`for_control`): pass 0 then
        sums the maps, and is the only pass on an image or when every pixel has ``S > 0``."""
        super().__init__(canvas, params)
        self.settings = _neuron_settings(params)
        self.draws, self.null_seed = int(params.get("null_draws", 0)), int(params.get("null_seed", 0))
        self.motion = _motion_setup(canvas, params, self.settings["seed"], self.draws, self.null_seed)
        pixel_labels = _pixel_clusters(canvas, self.settings)
        count = int(pixel_labels.max()) + 1
        self.neurons = {
            name: NeuronVectorSums(canvas.layer_shape(name)[0], pixel_labels, count, self.draws, self.null_seed)
            for name in canvas.layer_names
        }
        self.totals = (
            {name: torch.zeros(canvas.shape, dtype=torch.float64) for name in canvas.layer_names} if self.motion else {}
        )
        self.samples: dict[str, ShareSample] = {}
        #: frame 0 of the neurons with a nonzero map, ``[N', H, W]`` (the neuron-cluster figure)
        self.first_frames: dict[str, torch.Tensor] = {}
        #: the motion figure's frame of the layers with sampled pixels, ``[N, H', W']`` (every
        #: ``figure_strides[layer]``-th row and column)
        self.motion_frames: dict[str, torch.Tensor] = {}
        #: per layer, the positions among the neurons with a nonzero map whose frame 0 the figure averages
        self.figure_neurons: dict[str, torch.Tensor] = {}
        _, height, width = canvas.shape
        self.figure_strides = {
            name: figure_stride(canvas.layer_shape(name)[0], height, width) for name in canvas.layer_names
        }
        #: pass 0 finds the extrema (and ``S`` of every pixel) before pass 1 sums the maps
        self._finding_extrema = extrema is None
        #: the extrema were given and pass 0 sums the maps with a pixel sample drawn as if every pixel
        #: had ``S > 0``, which the end of pass 0 checks (see :meth:`for_control`)
        self._checking = extrema is not None and bool(self.totals)
        if extrema is not None:
            for name, neurons in self.neurons.items():
                neurons.add_range(*extrema[name])
            self._fix_extrema()
            self._draw_samples(totals_known=False)
            self.passes = 2 if self._checking else 1

    def for_control(self, canvas: Canvas) -> ProbeAccumulator:
        """The probe on the spatial-shuffle control, without null draws, which takes the canvas's
        extrema (a shuffle within each map keeps every neuron's minimum and maximum) once every pass
        over the canvas has ended, so that it sums the control's maps in its first pass.

        Its pixel sample is drawn as if every pixel of the control had ``S > 0``, which is checked
        at the end of that pass on ``S`` of every pixel: when it holds (the rule, unless the
        neurons' zeros line up), the sample is the one the control's own pass 0 would have drawn
        and one pass was enough; when it does not, a second pass sums the maps again with the
        sample drawn from ``S``. Either way the scores are those of the control's own two passes.
        """
        extrema = {name: (neurons.low, neurons.high) for name, neurons in self.neurons.items()}
        known = all(low is not None and high is not None for low, high in extrema.values())
        return type(self)(canvas, {**self.params, "null_draws": 0}, extrema if known else None)  # type: ignore[arg-type]

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        stop = start + chunk.shape[1]
        if self._finding_extrema or self._checking:
            if layer in self.totals:
                self.totals[layer][start:stop] = block_pixel_totals(chunk).reshape(chunk.shape[1:])
            if self._finding_extrema:
                self.neurons[layer].add_range(*block_neuron_extrema(chunk))
                return
        mags = block_magnitudes(chunk)
        neurons = self.neurons[layer]
        neurons.add_sums(start, mags)
        if start == 0:
            self.first_frames[layer] = chunk[neurons.alive[self.figure_neurons[layer]], 0].abs()
        sample = self.samples.get(layer)
        if sample is not None and sample.pixels.numel():
            sample.update(start, mags)
            frame, stride = self.motion["frame"], self.figure_strides[layer]
            if start <= frame < stop:
                self.motion_frames[layer] = chunk[:, frame - start, ::stride, ::stride].clone()

    def end_pass(self, pass_index: int) -> None:
        if self._finding_extrema:
            self._finding_extrema = False
            self._fix_extrema()
            self._draw_samples(totals_known=True)
        elif self._checking:
            self._checking = False
            if all(bool((total[1:] > 0).all()) for total in self.totals.values()):
                self.passes = 1  # every pixel has S > 0: the sample is the one drawn from S
                for name, sample in self.samples.items():
                    sample.totals = self.totals[name][1:].reshape(-1)[sample.pixels]
            else:
                for neurons in self.neurons.values():
                    neurons.clear_sums()
                self._draw_samples(totals_known=True)
        self.totals = {}

    def _fix_extrema(self) -> None:
        """The extrema are known: each layer's normalisation and the neurons its figure averages."""
        _, height, width = self.canvas.shape
        for name, neurons in self.neurons.items():
            neurons.end_extrema()
            self.figure_neurons[name] = figure_sample(len(neurons.alive), height * width, self.settings["seed"])

    def _draw_samples(self, totals_known: bool) -> None:
        """Each motion layer's seeded pixel sample of frames ``t >= 1``, among the pixels with ``S > 0``
        of :attr:`totals` (``totals_known``), else among every pixel (their ``S`` set once pass 0 recorded it)."""
        _, height, width = self.canvas.shape
        for name, total in self.totals.items():
            flat = total[1:].reshape(-1) if totals_known else torch.ones(total[1:].numel(), dtype=torch.float64)
            num_neurons = self.canvas.layer_shape(name)[0]
            chosen = pixel_sample(flat, sample_limit(self.motion, num_neurons), self.motion["seed"])
            self.samples[name] = ShareSample(chosen, flat[chosen] if totals_known else None, num_neurons, height * width)

    def compute(self) -> ProbeResult:
        draws = self.draws
        how = (self.settings["neuron_clusters"], self.settings["method"], self.settings["seed"])
        per_layer: dict[str, dict[str, float]] = {}
        neuron_draws: list[dict[str, dict[str, float]]] = [{} for _ in range(draws)]
        cluster_maps: dict[str, list[torch.Tensor]] = {}
        for name, neurons in self.neurons.items():
            vectors, _, null_vectors = neurons.result()
            labels = cluster_neurons(vectors.numpy(), *how)
            clusters = float(len(np.unique(labels)))
            per_layer[name] = {"silhouette": silhouette(vectors.numpy(), labels), "clusters": clusters}
            null = silhouette_null_draws(null_vectors, *how)
            for draw, value in zip(neuron_draws, null):
                draw[name] = {"silhouette": value}
            cluster_maps[name] = _cluster_mean_maps(self.first_frames[name], labels[self.figure_neurons[name].numpy()])
        figures = {"neuron_clusters": _neuron_figure(cluster_maps)}
        nulls = {"spatial_shuffle": collect_null_draws(neuron_draws)} if draws else {}
        absent: dict[str, str] = {}
        if self.motion:
            motion_scores, figures["motion_clusters"], pixel_draws = self._motion_clustering()
            for name, values in motion_scores.items():
                per_layer[name].update(values)
            if draws:
                nulls["label_permutation"] = collect_null_draws(pixel_draws)
        else:
            reason = _REASONS["image"] if self.canvas.shape[0] == 1 else _REASONS["off"]
            absent.update(dict.fromkeys(MOTION_METRICS, reason))
        scores = collect_scores(per_layer)
        for name, value in scores.items():
            if math.isnan(value):
                metric = name.rsplit("/", 1)[-1]
                absent[name] = _REASONS["silhouette" if metric == "silhouette" else "motion"]
        return ProbeResult(scores=scores, figures=figures, nulls=nulls, absent=absent)

    def _motion_clustering(self) -> tuple[dict[str, dict[str, float]], Any, list[dict[str, dict[str, float]]]]:
        """Motion-clustering scores of every layer, the cluster-map figure and the label-permutation draws."""
        motion, objects, frame = self.motion["labels"], self.motion["objects"], self.motion["frame"]
        scores: dict[str, dict[str, float]] = {}
        null: list[dict[str, dict[str, float]]] = [{} for _ in range(self.draws)]
        maps: dict[str, np.ndarray] = {}
        for name, sample in self.samples.items():
            scores[name], centres, layer_draws = layer_motion_clustering(
                sample, motion.reshape(-1), objects.reshape(-1), self.motion
            )
            for draw, values in zip(null, layer_draws):
                draw[name] = values
            if centres is not None:
                maps[name] = _frame_clusters(self.motion_frames[name], centres)
        return scores, _motion_figure(maps, motion[frame - 1], self.canvas.masks[frame], frame), null


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


def _motion_setup(
    canvas: Canvas, params: dict[str, Any], seed: int, draws: int, null_seed: int
) -> dict[str, Any] | None:
    """Motion-clustering settings, with the binned motion and object labels ``[T - 1, H, W]`` of
    frames ``t >= 1`` and the figure's frame (largest mean flow); None on an image canvas or with
    ``motion: false``.

    Raises:
        XincError: the canvas has no flow or no masks.
    """
    if canvas.shape[0] == 1 or not bool(params.get("motion", True)):
        return None
    flow = require_flow(canvas, "clustering (motion clustering; or set motion: false)")
    masks = require_masks(canvas, "clustering (motion clustering; or set motion: false)")
    labels = motion_labels(
        flow[1:],
        float(params.get("motion_threshold", 0.5)),
        int(params.get("flow_magnitude_bins", 3)),
        int(params.get("flow_direction_bins", 8)),
    )
    return {
        "motion_clusters": int(params.get("motion_clusters", 8)),
        "max_pixels": int(params.get("max_pixels", 65536)),
        "max_share_values": None if params.get("max_share_values") is None else int(params["max_share_values"]),
        "seed": seed,
        "null_draws": draws,
        "null_seed": null_seed,
        "labels": labels,
        "objects": masks[1:],
        "frame": int(torch.linalg.vector_norm(flow[1:], dim=-1).flatten(1).mean(dim=1).argmax()) + 1,
    }


def figure_sample(count: int, pixels: int, seed: int) -> torch.Tensor:
    """Positions (sorted) of the neurons, out of ``count``, whose frame 0 of ``pixels`` pixels the
    neuron-cluster figure averages: all of them, or a seeded sample within :data:`FIGURE_ENTRIES`."""
    limit = max(1, FIGURE_ENTRIES // max(1, pixels))
    if count <= limit:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def figure_stride(num_neurons: int, height: int, width: int) -> int:
    """The smallest stride ``s`` such that every ``s``-th row and column of one frame of a layer of
    ``num_neurons`` maps holds at most :data:`FIGURE_ENTRIES` entries (the motion figure's frame)."""
    def entries(stride: int) -> int:
        return num_neurons * math.ceil(height / stride) * math.ceil(width / stride)

    stride = 1
    while entries(stride) > FIGURE_ENTRIES and stride < max(height, width):
        stride += 1
    return stride


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
    columns = max([len(maps) for maps in cluster_maps.values()] + [1])
    rows = len(cluster_maps)
    fig, axes = subplots(rows, columns, figsize=(2.6 * columns, 1.8 * rows), squeeze=False)
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
    panels = [("binned motion", motion.numpy()), ("masks", masks.numpy())]
    panels += [(f"{name}: pixel clusters", labels) for name, labels in maps.items()]
    fig, axes = subplots(1, len(panels), figsize=(3.4 * len(panels), 2.2), squeeze=False)
    for axis, (title, image) in zip(axes[0], panels):
        axis.imshow(image, cmap="tab20", interpolation="nearest")
        axis.set_title(f"{title} (frame {frame})", fontsize=8)
        axis.axis("off")
    fig.tight_layout()
    return fig
