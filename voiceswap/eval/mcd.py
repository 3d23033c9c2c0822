"""Mel-cepstral distortion with DTW, from our own log-mel (no SPTK/pysptk).

Mel-cepstra are the real cepstrum of the natural-log mel magnitude spectrum (the ``logmel80``
features) on its warped frequency axis: c_k = 1/M sum_m ln S_m cos(pi k (m + 1/2) / M), i.e.
DCT-II / (2M), so that ln S(w) = c0 + 2 sum_k c_k cos(k w) as for SPTK's mel-cepstra (an
orthonormal DCT would inflate every MCD by sqrt(2M) ~ 12.6). Coefficients 1..order are kept (c0,
the energy, is left out as usual) and MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2) is averaged
over the DTW path. The scale is SPTK's, the warping is the mel filterbank's (not an all-pass
alpha), so values are close to, not identical with, mcep-based MCDs in papers.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

MCD_CONSTANT = 10.0 / np.log(10.0) * np.sqrt(2.0)


def mel_cepstrum(log_mel: np.ndarray, order: int = 24) -> np.ndarray:
    """``log_mel (T, n_mels)`` -> mel-cepstra ``(T, order)`` (c1..c_order)."""
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if log_mel.ndim != 2 or log_mel.shape[1] <= order:
        raise ValueError(f"expected log-mel (T, n_mels) with n_mels > order {order}, got {log_mel.shape}")
    num_bins = log_mel.shape[1]
    return scipy.fft.dct(log_mel, type=2, axis=1)[:, 1 : order + 1] / (2.0 * num_bins)


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DTW alignment of ``a (T1, D)`` and ``b (T2, D)`` by Euclidean distance: ``(L, 2)`` index pairs, in time order."""
    import librosa  # imported here: numba compilation is paid only by the code that aligns

    _, path = librosa.sequence.dtw(X=np.ascontiguousarray(a.T), Y=np.ascontiguousarray(b.T), metric="euclidean")
    return path[::-1].copy()


def mcd_on_path(a: np.ndarray, b: np.ndarray, path: np.ndarray) -> float:
    """Mean MCD (dB) between mel-cepstra ``a`` and ``b`` along ``path``."""
    diff = a[path[:, 0]] - b[path[:, 1]]
    return float(np.mean(MCD_CONSTANT * np.sqrt(np.sum(diff * diff, axis=1))))


def mcd_dtw(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """MCD (dB) of two mel-cepstrum sequences after DTW, and the path (reused for F0)."""
    path = dtw_path(a, b)
    return mcd_on_path(a, b, path), path
