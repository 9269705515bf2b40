"""k-means on pixel feature rows, as the reference runs it (scikit-learn, fixed seed, one init)."""

from __future__ import annotations

import numpy as np
import torch

from .numerics import BLOCK_ELEMENTS

#: pixels used to fit k-means (pixels beyond are assigned to the fitted centres)
KMEANS_MAX_FIT = 65536


def kmeans_centres(features: np.ndarray, num_clusters: int, seed: int, max_fit: int = KMEANS_MAX_FIT) -> np.ndarray:
    """k-means centres ``[K', D]`` of the rows of ``features[P, D]``.

    One k-means++ initialisation with ``random_state=seed`` (the reference's setting), fitted on
    at most ``max_fit`` rows drawn with the same seed. ``K' = min(num_clusters, distinct rows)``,
    so a flat image gives one centre instead of a degenerate fit.

    Memory: one float64 copy of the fitted rows (scikit-learn centres that copy in place rather
    than copying it again; an input that is already float64 is not modified).
    """
    from sklearn.cluster import KMeans

    rows = np.asarray(features, dtype=np.float64)
    if rows.shape[0] > max_fit:
        rows = rows[np.sort(np.random.default_rng(seed).choice(rows.shape[0], max_fit, replace=False))]
    if num_clusters <= 1:
        return np.unique(rows, axis=0)[:1]
    clusters = distinct_rows(rows, int(num_clusters))
    if clusters <= 1:
        return rows[:1].copy()
    own_copy = not np.may_share_memory(rows, features)
    return KMeans(n_clusters=clusters, n_init=1, random_state=seed, copy_x=not own_copy).fit(rows).cluster_centers_


def distinct_rows(rows: np.ndarray, limit: int) -> int:
    """How many distinct rows ``rows[P, D]`` has, counted up to ``limit`` (0 for no rows).

    Scans the rows in blocks against the distinct rows found so far, so it stops as soon as
    ``limit`` are found (on the first rows, for most features) without sorting the whole array.
    """
    found: list[np.ndarray] = []
    step = max(1, BLOCK_ELEMENTS // max(1, rows.shape[1] * max(1, limit)))
    for start in range(0, rows.shape[0], step):
        block = rows[start : start + step]
        new = np.ones(block.shape[0], dtype=bool)
        for row in found:
            new &= (block != row).any(axis=1)
        while new.any():
            row = block[int(np.argmax(new))]
            found.append(row)
            if len(found) >= limit:
                return limit
            new &= (block != row).any(axis=1)
    return len(found)


def nearest_centre(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of each row of ``features[P, D]``: ``[P]`` int64.

    Rows are converted to float64 a block at a time (no float64 copy of the whole input).
    """
    targets = torch.from_numpy(np.asarray(centres, dtype=np.float64))
    block = max(1, BLOCK_ELEMENTS // max(1, targets.shape[0] * max(1, features.shape[1])))
    labels = [
        torch.cdist(torch.from_numpy(np.asarray(features[i : i + block], dtype=np.float64)), targets).argmin(dim=1)
        for i in range(0, features.shape[0], block)
    ]
    return torch.cat(labels).numpy().astype(np.int64)


def kmeans_labels(features: np.ndarray, num_clusters: int, seed: int, max_fit: int = KMEANS_MAX_FIT) -> np.ndarray:
    """k-means cluster of each row of ``features[P, D]`` (:func:`kmeans_centres`): ``[P]`` int64.

    Labels are renumbered so that every label in ``0..K'-1`` is used.
    """
    labels = nearest_centre(features, kmeans_centres(features, num_clusters, seed, max_fit))
    return np.unique(labels, return_inverse=True)[1].astype(np.int64).reshape(-1)
