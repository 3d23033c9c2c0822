"""Class score and Frechet score from a speaker classifier, exactly as vq-voice-swap (seed 000).

* class score = exp(mean_i KL(p(y|x_i) || mean_j p(y|x_j))), the Inception-score form: high when
  each output is confidently one speaker and all speakers are produced equally often.
* Frechet score = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between the classifier's penultimate
  features of two sets; a 1e-6 diagonal is added to both covariances when the product's square
  root is not finite (the seed's fallback).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


def class_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """``probs (N, C)``, rows summing to 1 -> exp(mean KL(p_i || p_mean))."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"expected probabilities (N, C) with N > 0, got shape {probs.shape}")
    marginal = probs.mean(axis=0, keepdims=True)
    kl = np.sum(probs * (np.log(probs + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of ``features (N, D)``, as FID computes them."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors (N, D), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Covariances of fewer samples than dimensions are singular; the fallback below handles it.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    # sqrtm of a product of PSD matrices is real in theory; numerical error leaves tiny imaginary parts.
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_score(features1: np.ndarray, features2: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets ``(N, D)``."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
