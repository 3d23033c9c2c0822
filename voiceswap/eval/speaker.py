"""Speaker similarity: resemblyzer (GE2E) embeddings, cosine similarity and speaker centroids.

resemblyzer ships its weights in the wheel (``resemblyzer/pretrained.pt``): nothing downloads.
Its ``preprocess_wav`` trims silences with webrtcvad (which needs ``pkg_resources``, hence
``setuptools<81``) and costs ~10x the embedding itself; our utterances are short single sentences,
so we only normalise the volume to -30 dBFS as it does and embed the whole utterance.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping

import numpy as np

TARGET_DBFS = -30.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def centroids(embeddings: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
              utts: Iterable[str]) -> Dict[str, np.ndarray]:
    """Per speaker, the mean of the L2-normalised embeddings of ``utts``, normalised again (GE2E)."""
    grouped: Dict[str, list] = {}
    for utt in utts:
        e = np.asarray(embeddings[utt], dtype=np.float64)
        grouped.setdefault(utt2spk[utt], []).append(e / max(np.linalg.norm(e), 1e-12))
    result = {}
    for spk, vectors in grouped.items():
        mean = np.mean(vectors, axis=0)
        result[spk] = mean / max(np.linalg.norm(mean), 1e-12)
    return result


class SpeakerEncoder:
    """resemblyzer's VoiceEncoder on 16 kHz float waveforms -> 256-d unit-norm embeddings."""

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder  # lazy: torch model load ~1 s

        self.encoder = VoiceEncoder(device="cpu", verbose=False)

    def __call__(self, waveform: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
        from resemblyzer import audio, hparams

        if sample_rate != hparams.sampling_rate:
            raise ValueError(f"resemblyzer needs {hparams.sampling_rate} Hz audio, got {sample_rate}")
        wav = audio.normalize_volume(np.asarray(waveform, dtype=np.float32), TARGET_DBFS, increase_only=True)
        return self.encoder.embed_utterance(wav).astype(np.float32)
