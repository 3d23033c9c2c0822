"""Aligned (log-mel segment, waveform segment) pairs for training vocoders (HiFi-GAN, stage 7).

Frame ``t`` of our features is centred on sample ``t * hop + hop / 2`` and an utterance of N samples
has ``N // hop`` frames, so the frames ``t0 .. t0 + T - 1`` pair with the samples
``[t0 * hop, (t0 + T) * hop)``, which always lie inside the audio. The segment offset is a
function of ``(seed, epoch, utterance)``, as the crops of :class:`~voiceswap.data.dataset.FeatsDataset`,
so resumed runs see the same segments. Utterances shorter than a segment are padded: the mel with
``ln(log_floor)`` (the features' value of silence), the audio with zeros.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import kaldiio
import numpy as np
import torch
from torch.utils.data import Dataset

from voiceswap.data.audio import load_audio
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.spectral import load_feature_config, mel_mismatches

#: Feature-config keys that must agree between the stored features and a vocoder's config.


def check_mel_config(expected: Mapping, feats_config_path: str | Path, what: str = "the vocoder config") -> None:
    """Raise ``ValueError`` naming the keys where ``expected`` (a features section) and a feats_config.yaml differ."""
    stored = load_feature_config(feats_config_path)
    if stored.type != "logmel":
        raise ValueError(f"{feats_config_path} describes {stored.type} features; a vocoder needs log-mel")
    differences = [f"{key} ({what} vs the features)" for key in mel_mismatches(expected, stored)]
    if differences:
        raise ValueError(f"the features of {Path(feats_config_path).parent} do not match {what} ("
                         + "; ".join(differences) + "): use features made with the same settings or fix the config")


class MelAudioSegmentDataset(Dataset):
    """Random aligned segments of ``segment_frames`` frames from a feats.scp and a wav.scp.

    Items: ``utt``, ``speaker`` (int), ``mel`` ``(segment_frames, n_mels)`` float and ``audio``
    ``(segment_frames * hop_length,)`` float in [-1, 1].
    """

    def __init__(self, feats_scp: str | Path, wav_scp: str | Path, utt2spk_path: str | Path,
                 spk2id: Mapping[str, int], segment_frames: int, hop_length: int, sample_rate: int,
                 log_floor: float = 1e-5, seed: int = 0, max_utts: Optional[int] = None) -> None:
        for path, stage in ((feats_scp, "stage 2"), (wav_scp, "stage 1"), (utt2spk_path, "stage 1")):
            if not Path(path).is_file():
                raise DataDirError(f"{path} not found: run {stage} first")
        self.feats_scp = str(feats_scp)
        self.wav_entries = read_kaldi_map(wav_scp)
        utt2spk = read_kaldi_map(utt2spk_path)
        feats = read_kaldi_map(feats_scp)
        self.utts = sorted(set(feats) & set(self.wav_entries) & set(utt2spk), key=str.encode)
        if max_utts:  # a fixed, evenly spread subset (validation on a few utterances is enough)
            step = max(1, len(self.utts) // max_utts)
            self.utts = self.utts[::step][:max_utts]
        if not self.utts:
            raise DataDirError(f"no utterance is in all of {feats_scp}, {wav_scp} and {utt2spk_path}")
        self.speakers = [spk2id[utt2spk[u]] for u in self.utts]
        table = Path(feats_scp).parent / "utt2num_frames"
        if table.is_file():
            frames = read_kaldi_map(table)
            self.num_frames = [int(frames[u]) for u in self.utts]
        else:
            loader = kaldiio.load_scp(self.feats_scp)
            self.num_frames = [loader[u].shape[0] for u in self.utts]
        self.segment_frames = segment_frames
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.pad_value = float(np.log(log_floor))
        self.seed = seed
        self.epoch = 0
        self._mels: Optional[Mapping] = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if self._mels is None:  # opened lazily: one handle per DataLoader worker
            self._mels = kaldiio.load_scp(self.feats_scp)
        utt = self.utts[index]
        mel = np.asarray(self._mels[utt], dtype=np.float32)
        audio = load_audio(self.wav_entries[utt], self.sample_rate, utt=utt)
        frames, hop, size = mel.shape[0], self.hop_length, self.segment_frames
        if len(audio) < frames * hop:
            raise DataDirError(f"utterance '{utt}': {len(audio)} samples are fewer than its {frames} frames x hop "
                               f"{hop}; the features were not made from this audio: re-run stage 2")
        if frames > size:
            key = f"{self.seed}:{self.epoch}:{utt}".encode()
            start = zlib.crc32(key) % (frames - size + 1)
        else:
            start = 0
        mel = mel[start : start + size]
        audio = audio[start * hop : (start + len(mel)) * hop]
        if len(mel) < size:
            mel = np.concatenate([mel, np.full((size - len(mel), mel.shape[1]), self.pad_value, np.float32)])
            audio = np.concatenate([audio, np.zeros(size * hop - len(audio), np.float32)])
        return {"utt": utt, "speaker": self.speakers[index], "mel": torch.from_numpy(np.array(mel)),
                "audio": torch.from_numpy(np.array(audio, dtype=np.float32))}


def collate_segments(items: Sequence[Dict[str, object]]) -> Dict[str, object]:
    """Stack equal-length segments: ``mel (B, T, n_mels)``, ``audio (B, T * hop)``, ``speakers (B,)``."""
    return {"utts": [item["utt"] for item in items],
            "speakers": torch.tensor([item["speaker"] for item in items], dtype=torch.long),
            "mel": torch.stack([item["mel"] for item in items]),
            "audio": torch.stack([item["audio"] for item in items])}
