"""Mel-cepstral distortion with DTW, two ways.

``mcd`` (the field's, as ESPnet's ``utils/mcd_calculate.py`` / ``evaluate_mcd.py``): the WORLD
spectral envelope (pyworld CheapTrick on a Harvest F0 track, after a 70 Hz low-cut filter) ->
SPTK mel-cepstrum (``pysptk.sp2mc``, order 24, i.e. c0..c24, with the all-pass constant of the
sample rate: 0.42 at 16 kHz) -> the voiced frames of each signal (F0 > 0) -> DTW (exact, librosa,
Euclidean; ESPnet uses the fastdtw approximation) -> MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)
averaged over the path. As in ESPnet, c0 (the frame's log gain) is part of the distance, so a
level difference counts.

``mcd_logmel`` (the toolkit's earlier MCD, kept beside it): mel-cepstra are the real cepstrum of
the natural-log mel magnitude spectrum (the ``logmel80`` features) on its warped frequency axis:
c_k = 1/M sum_m ln S_m cos(pi k (m + 1/2) / M), i.e. DCT-II / (2M), so that
ln S(w) = c0 + 2 sum_k c_k cos(k w) as for SPTK's mel-cepstra (an orthonormal DCT would inflate
every MCD by sqrt(2M) ~ 12.6). Coefficients 1..order are kept (c0 left out), every frame counts,
and its DTW path also aligns the F0 tracks. The warping is the mel filterbank's, not an all-pass
alpha, so values are close to, not identical with, ``mcd``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.fft
import scipy.signal

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


#: All-pass constants by sample rate, as ESPnet's evaluate_mcd.py tabulates them; other rates use
#: SPTK's closest fit to the mel scale (pysptk.util.mcepalpha).
ALL_PASS_ALPHA = {16000: 0.42, 22050: 0.45, 24000: 0.46, 44100: 0.53, 48000: 0.55}
WORLD_ORDER = 24
WORLD_FRAME_PERIOD_MS = 5.0
F0_FLOOR, F0_CEIL = 50.0, 500.0  # the range of every voice of our corpora (as voiceswap/eval/f0.py)
LOW_CUT_HZ = 70.0


def all_pass_alpha(sample_rate: int) -> float:
    """The mel-cepstrum's all-pass constant for ``sample_rate`` (0.42 at 16 kHz)."""
    if sample_rate in ALL_PASS_ALPHA:
        return ALL_PASS_ALPHA[sample_rate]
    import pysptk

    return float(pysptk.util.mcepalpha(sample_rate))


def world_mel_cepstrum(waveform: np.ndarray, sample_rate: int, order: int = WORLD_ORDER,
                       frame_period_ms: float = WORLD_FRAME_PERIOD_MS) -> Tuple[np.ndarray, np.ndarray]:
    """SPTK mel-cepstrum ``(T, order + 1)`` (c0..c_order) of the WORLD envelope, and ``(T,)`` voiced flags.

    As ESPnet: the waveform at 16-bit scale, a 70 Hz low-cut FIR (255 taps), Harvest F0 in
    50-500 Hz every ``frame_period_ms``, CheapTrick, ``sp2mc`` with :func:`all_pass_alpha`.
    """
    import pysptk
    import pyworld

    x = np.asarray(waveform, dtype=np.float64) * 32767.0
    if x.ndim != 1 or len(x) < sample_rate // 100:
        raise ValueError(f"expected a 1-D waveform of at least 10 ms, got shape {x.shape}")
    taps = scipy.signal.firwin(255, LOW_CUT_HZ / (sample_rate // 2), pass_zero=False)
    x = np.ascontiguousarray(scipy.signal.lfilter(taps, 1, x))
    f0, times = pyworld.harvest(x, sample_rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=frame_period_ms)
    fft_size = pyworld.get_cheaptrick_fft_size(sample_rate, F0_FLOOR)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate, fft_size=fft_size, f0_floor=F0_FLOOR)
    mcep = pysptk.sp2mc(envelope, order, all_pass_alpha(sample_rate))
    return mcep, f0 > 0


def world_mcd(a: np.ndarray, b: np.ndarray) -> float:
    """MCD (dB) of two WORLD mel-cepstrum sequences (voiced frames only) after DTW; NaN if either is empty.

    An empty sequence (no voiced frame: silence or noise) has no spectral envelope to compare, as
    in ESPnet; the summary counts such pairs rather than scoring them 0.
    """
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return mcd_on_path(a, b, dtw_path(a, b))
