"""Discrete-unit analysis against phone alignments (seed 004): usage, purity, mapping, clustering.

Codes come one per ``frame_shift`` seconds (20 ms for the VQ-VAE); code frame ``i`` is labelled
with the phone whose ``phones.ctm`` interval contains its centre ``(i + 0.5) * frame_shift``
(frames past the last interval take the last phone). Definitions:

* perplexity = exp(-sum_k p_k log(p_k + 1e-10)), p = code usage frequencies (seed 004);
* codes used = number of distinct codes that occur;
* phone purity = sum over codes of the count of its most frequent phone / frames (cluster purity,
  on the set being scored);
* many-to-one mapping accuracy: each code is mapped to its most frequent phone *on the train set*
  and the mapping is applied to the scored set (codes never seen in train map to the train set's
  most frequent phone); so it is a held-out version of purity;
* ARI, AMI, NMI between phone labels and codes (scikit-learn);
* bigrams: counts[current][previous], row-normalised, optionally with a zeroed diagonal.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np


def read_ctm(path: str) -> Dict[str, List[Tuple[float, float, str]]]:
    """``utt channel start dur phone`` lines -> per utterance, (start, end, phone) in time order."""
    alignments: Dict[str, List[Tuple[float, float, str]]] = {}
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 5:
                raise ValueError(f"{path}:{line_number}: expected 'utt channel start dur phone', got {line.strip()!r}")
            start, duration = float(fields[2]), float(fields[3])
            alignments.setdefault(fields[0], []).append((start, start + duration, fields[4]))
    for intervals in alignments.values():
        intervals.sort()
    return alignments


def frame_labels(intervals: Sequence[Tuple[float, float, str]], num_frames: int, frame_shift: float) -> List[str]:
    """The phone at the centre of each of ``num_frames`` frames."""
    ends = np.array([end for _, end, _ in intervals])
    centres = (np.arange(num_frames) + 0.5) * frame_shift
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(intervals) - 1)
    return [intervals[i][2] for i in index]


def perplexity(codes: np.ndarray, codebook_size: int) -> float:
    counts = np.bincount(np.asarray(codes, dtype=np.int64), minlength=codebook_size).astype(np.float64)
    p = counts / max(counts.sum(), 1.0)
    return float(np.exp(-np.sum(p * np.log(p + 1e-10))))


def contingency(phones: Sequence[str], codes: Sequence[int]) -> Tuple[List[str], List[int], np.ndarray]:
    """Counts ``(phones, codes)`` matrix with sorted row (phone) and column (code) labels."""
    phone_labels = sorted(set(phones))
    code_labels = sorted(set(int(c) for c in codes))
    row = {p: i for i, p in enumerate(phone_labels)}
    col = {c: j for j, c in enumerate(code_labels)}
    table = np.zeros((len(phone_labels), len(code_labels)), dtype=np.int64)
    for p, c in zip(phones, codes):
        table[row[p], col[int(c)]] += 1
    return phone_labels, code_labels, table


def purity(phones: Sequence[str], codes: Sequence[int]) -> float:
    """Fraction of frames whose phone is their code's most frequent phone."""
    _, _, table = contingency(phones, codes)
    return float(table.max(axis=0).sum() / max(table.sum(), 1))


def many_to_one_mapping(phones: Sequence[str], codes: Sequence[int]) -> Tuple[Dict[int, str], str]:
    """Code -> its most frequent phone (ties: the alphabetically first), and the overall most frequent phone."""
    by_code: Dict[int, Counter] = {}
    for p, c in zip(phones, codes):
        by_code.setdefault(int(c), Counter())[p] += 1
    mapping = {c: min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0] for c, counter in by_code.items()}
    overall = min(Counter(phones).items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return mapping, overall


def mapping_accuracy(mapping: Mapping[int, str], default: str, phones: Sequence[str], codes: Sequence[int]) -> float:
    hits = sum(mapping.get(int(c), default) == p for p, c in zip(phones, codes))
    return float(hits / max(len(phones), 1))


def clustering_scores(phones: Sequence[str], codes: Sequence[int]) -> Dict[str, float]:
    from sklearn import metrics

    return {"ari": float(metrics.adjusted_rand_score(phones, codes)),
            "ami": float(metrics.adjusted_mutual_info_score(phones, codes)),
            "nmi": float(metrics.normalized_mutual_info_score(phones, codes))}


def unit_metrics(train: Tuple[Sequence[str], Sequence[int]], test: Tuple[Sequence[str], Sequence[int]],
                 codebook_size: int) -> Dict[str, float]:
    """All scalar metrics of one unit inventory: mapping fit on ``train`` (phones, codes), scored on ``test``."""
    phones, codes = test
    mapping, default = many_to_one_mapping(*train)
    result = {"perplexity": perplexity(np.asarray(codes), codebook_size),
              "codes_used": int(len(set(int(c) for c in codes))),
              "codebook_size": int(codebook_size),
              "phone_purity": purity(phones, codes),
              "many_to_one_accuracy": mapping_accuracy(mapping, default, phones, codes)}
    result.update(clustering_scores(phones, codes))
    return result


def bigram_matrix(sequences: Sequence[Sequence], labels: Sequence, zero_diagonal: bool = False) -> np.ndarray:
    """Row-normalised counts[current][previous] over consecutive elements of each sequence."""
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for sequence in sequences:
        for previous, current in zip(sequence[:-1], sequence[1:]):
            counts[index[current], index[previous]] += 1
    if zero_diagonal:
        np.fill_diagonal(counts, 0.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def code_given_phone(phones: Sequence[str], codes: Sequence[int]) -> Tuple[List[str], List[int], np.ndarray]:
    """P(code | phone): the contingency table normalised per phone (row)."""
    phone_labels, code_labels, table = contingency(phones, codes)
    return phone_labels, code_labels, table / np.maximum(table.sum(axis=1, keepdims=True), 1)


def kmeans_baseline(train_frames: np.ndarray, test_frames: Sequence[np.ndarray], num_clusters: int,
                    seed: int = 0, max_train_frames: int = 50000) -> Tuple[np.ndarray, List[np.ndarray]]:
    """k-means with ``num_clusters`` on (a seeded subset of) train frames; labels of the train and test frames.

    The same k-means as Soft-VC's discrete units (voiceswap/features/kmeans.py), so the baseline
    and a k-means family are clustered alike.
    """
    from voiceswap.features.kmeans import assign, fit_kmeans, sample_frames

    centroids, _ = fit_kmeans(sample_frames([train_frames], max_train_frames, seed), num_clusters, seed)
    return assign(train_frames, centroids), [assign(frames, centroids) for frames in test_frames]


def downsample_frames(features: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each run of ``factor`` frames (the last run may be shorter): 10 ms features -> code rate."""
    num = -(-len(features) // factor)
    padded = np.concatenate([features, np.repeat(features[-1:], num * factor - len(features), axis=0)])
    return padded.reshape(num, factor, -1).mean(axis=1)
