"""k-means over feature frames: the one home of the clustering that Soft-VC's discrete units
(``bin/kmeans_units.py``, stages 4-5) and the metric suite's MFCC baseline (``eval/codes.py``,
stage 9) both use, so that the two always cluster the same way.

scikit-learn's KMeans with k-means++ and one init, seeded: the same frames and seed give the same
centroids. Frames are assigned to centroids here (not with ``KMeans.predict``) so that a saved
``centroids`` array is all a later job needs.
"""

from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np


def fit_kmeans(frames: np.ndarray, num_clusters: int, seed: int = 0, max_iter: int = 100) -> Tuple[np.ndarray, float]:
    """Centroids ``(num_clusters, D)`` float32 and the inertia of scikit-learn's KMeans (k-means++, one init)."""
    from sklearn.cluster import KMeans  # lazy: scikit-learn costs ~1 s to import

    if frames.shape[0] < num_clusters:
        raise ValueError(f"{frames.shape[0]} frames cannot make {num_clusters} clusters: use more data or "
                         "fewer units (content.model.num_units, model.num_units)")
    kmeans = KMeans(n_clusters=num_clusters, n_init=1, max_iter=max_iter, random_state=seed).fit(frames)
    return kmeans.cluster_centers_.astype(np.float32), float(kmeans.inertia_)


def assign(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (squared Euclidean) of every frame: ``(T, D)`` -> ``(T,)`` int32."""
    features = np.asarray(features, dtype=np.float32)
    distances = (features ** 2).sum(1, keepdims=True) - 2.0 * features @ centroids.T + (centroids ** 2).sum(1)[None]
    return distances.argmin(1).astype(np.int32)


def sample_frames(matrices: Iterable[np.ndarray], max_frames: int, seed: int) -> np.ndarray:
    """All frames stacked, or ``max_frames`` of them drawn without replacement with ``seed`` (sorted order)."""
    frames = np.concatenate([np.asarray(m, dtype=np.float32) for m in matrices])
    if max_frames and frames.shape[0] > max_frames:
        chosen = np.sort(np.random.default_rng(seed).choice(frames.shape[0], max_frames, replace=False))
        frames = frames[chosen]
    return frames
