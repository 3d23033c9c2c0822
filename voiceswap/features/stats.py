"""Mean / variance statistics of feature matrices and the normalisation they define.

Statistics are accumulated in float64 as (count, sum, sum of squares), the form Kaldi's
``compute-cmvn-stats`` writes: a ``2 x (dim + 1)`` matrix whose first row holds the sums and the
frame count, the second the sums of squares. Keeping that form lets Kaldi's ``apply-cmvn`` read
our per-speaker stats, and lets partial stats of parallel jobs be added together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from voiceswap.data.finite import check_finite

# A dimension with (near) zero variance, such as a silent mel bin, must not blow up when divided.
MIN_STD = 1e-5


@dataclass
class StatsAccumulator:
    """Running count / sum / sum of squares of frames, in float64."""

    dim: int
    count: int = 0

    def __post_init__(self) -> None:
        self.sum = np.zeros(self.dim, dtype=np.float64)
        self.sum_square = np.zeros(self.dim, dtype=np.float64)

    def add(self, features: np.ndarray, what: Optional[str] = None) -> None:
        """Accumulate ``(frames, dim)`` features; ``what`` names them in errors (e.g. the utterance).

        Non-finite features raise :class:`~voiceswap.data.finite.NonFiniteError`: one NaN frame
        would make the sums, and so the statistics of the whole set, NaN.
        """
        what = what or "features"
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"{what}: expected (frames, {self.dim}) features, got {features.shape}")
        check_finite(features, what)
        as64 = features.astype(np.float64)
        self.count += as64.shape[0]
        self.sum += as64.sum(axis=0)
        self.sum_square += np.square(as64).sum(axis=0)

    def mean_std(self) -> Tuple[np.ndarray, np.ndarray]:
        if self.count == 0:
            raise ValueError("no frames were accumulated")
        mean = self.sum / self.count
        variance = np.maximum(self.sum_square / self.count - np.square(mean), 0.0)
        std = np.maximum(np.sqrt(variance), MIN_STD)
        # Finite inputs can still overflow the sum of squares; and stats read from a Kaldi file may
        # be NaN already. Either way they would turn every normalised matrix NaN.
        check_finite(mean, f"the mean of {self.count} frames")
        check_finite(std, f"the standard deviation of {self.count} frames")
        return mean, std

    def to_kaldi_cmvn(self) -> np.ndarray:
        """The ``2 x (dim + 1)`` matrix of Kaldi's compute-cmvn-stats."""
        stats = np.zeros((2, self.dim + 1), dtype=np.float64)
        stats[0, : self.dim] = self.sum
        stats[0, self.dim] = self.count
        stats[1, : self.dim] = self.sum_square
        return stats


def mean_std_from_kaldi_cmvn(stats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    dim = stats.shape[1] - 1
    accumulator = StatsAccumulator(dim)
    accumulator.count = int(round(stats[0, dim]))
    accumulator.sum = stats[0, :dim].astype(np.float64)
    accumulator.sum_square = stats[1, :dim].astype(np.float64)
    return accumulator.mean_std()


def normalize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((features - mean) / std).astype(np.float32)
