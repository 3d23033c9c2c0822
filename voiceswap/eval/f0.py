"""F0 tracks for scoring, and F0 RMSE / correlation on frames voiced in both signals after DTW.

The tracker is the one the ``pitch`` feature stream uses (WORLD's DIO + StoneMask,
:func:`voiceswap.features.pitch.extract_log_f0`), on the feature hop, so frame ``t`` is centred on
the same sample as log-mel frame ``t`` and the DTW path indexes both. One tracker for features and
scores also means a model conditioned on F0 is judged by the F0 it was given. (librosa's pyin was
used before; its numba kernels crashed a CI run with a segmentation fault, and it cost ~10x more.)
The range 50-500 Hz covers every voice of our corpora.
"""

from __future__ import annotations

import numpy as np

from voiceswap.features.pitch import extract_log_f0

F0_MIN = 50.0
F0_MAX = 500.0


def extract_f0(waveform: np.ndarray, sample_rate: int = 16000, hop_length: int = 160) -> np.ndarray:
    """F0 in Hz per feature frame (``len // hop_length`` of them), 0 where unvoiced."""
    log_f0, voiced = extract_log_f0(waveform, sample_rate, hop_length, method="dio", f0_min=F0_MIN, f0_max=F0_MAX)
    return np.where(voiced, np.exp(log_f0), 0.0).astype(np.float32)


def f0_metrics(f0_a: np.ndarray, f0_b: np.ndarray, path: np.ndarray) -> dict:
    """RMSE (Hz) and Pearson correlation of F0 on path frames voiced in both; ``voiced_frames`` counts them.

    ``path`` indexes frames of ``a`` and ``b`` (clipped to the F0 track lengths, which may differ
    from the feature lengths by a frame). With fewer than 2 such frames both values are NaN.
    """
    i = np.clip(path[:, 0], 0, len(f0_a) - 1)
    j = np.clip(path[:, 1], 0, len(f0_b) - 1)
    x, y = f0_a[i], f0_b[j]
    both = (x > 0) & (y > 0)
    result = {"voiced_frames": int(both.sum()), "f0_rmse": float("nan"), "f0_corr": float("nan")}
    if both.sum() >= 2:
        x, y = x[both].astype(np.float64), y[both].astype(np.float64)
        result["f0_rmse"] = float(np.sqrt(np.mean((x - y) ** 2)))
        if x.std() > 0 and y.std() > 0:
            result["f0_corr"] = float(np.corrcoef(x, y)[0, 1])
    return result
