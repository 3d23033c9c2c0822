"""Frame-level acoustic features: log-mel filterbanks and MFCC + deltas, on torchaudio.

Both kinds pad the waveform by reflection with ``(n_fft - hop_length) / 2`` samples a side and use
``center=False`` (the HiFi-GAN / Soft-VC convention), so an utterance of ``N`` samples gives
``N // hop_length`` frames whatever the feature: log-mel and MFCC of one utterance line up frame
for frame, and a vocoder with an upsampling product equal to the hop reproduces ``N`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torchaudio
import yaml


class FeatureConfigError(ValueError):
    """A feature config that cannot work; the message names the file and key."""


@dataclass(frozen=True)
class FeatureConfig:
    """One ``conf/feats/*.yaml`` file. ``type`` is ``logmel`` or ``mfcc``."""

    type: str
    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5  # logmel: ln(max(mel, floor))
    # logmel: ln(min(mel, ceiling)) too (None: no ceiling). The VAE-GAN seed's dB features clip at
    # 0 dB (ceiling 1.0); not a MEL_KEYS entry: vocoders invert the log whatever clipped it.
    log_ceiling: Optional[float] = None
    n_mfcc: int = 13  # mfcc only
    delta_order: int = 2  # mfcc only: 2 = delta + delta-delta
    delta_window: int = 5  # mfcc only: frames in the delta regression window

    @property
    def dim(self) -> int:
        if self.type == "logmel":
            return self.n_mels
        return self.n_mfcc * (1 + self.delta_order)

    @property
    def padding(self) -> int:
        return (self.n_fft - self.hop_length) // 2

    def to_dict(self) -> Dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


#: The keys that define a log-mel (and so what a vocoder must have been trained on).
MEL_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "log_floor")


def mel_parameters(features: Any) -> Dict[str, Any]:
    """The :data:`MEL_KEYS` of a FeatureConfig or a features mapping (missing keys left out)."""
    values = features.to_dict() if isinstance(features, FeatureConfig) else dict(features)
    return {key: values[key] for key in MEL_KEYS if key in values}


def mel_mismatches(expected: Any, actual: Any) -> List[str]:
    """``key: a vs b`` for every mel key where two feature descriptions differ (empty: the same log-mel)."""
    first, second = mel_parameters(expected), mel_parameters(actual)
    return [f"{key} {first[key]!r} vs {second[key]!r}" for key in MEL_KEYS
            if key in first and key in second and float(first[key]) != float(second[key])]


def load_feature_config(path: str | Path) -> FeatureConfig:
    """Read and check a feature config; an unknown key or an impossible value is an error."""
    path = Path(path)
    if not path.is_file():
        raise FeatureConfigError(f"{path}: feature config not found (see conf/feats/)")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    known = {field.name for field in fields(FeatureConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FeatureConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    if raw.get("type") not in ("logmel", "mfcc"):
        raise FeatureConfigError(f"{path}: 'type' must be logmel or mfcc, got {raw.get('type')!r}")
    config = FeatureConfig(**raw)
    if config.win_length > config.n_fft:
        raise FeatureConfigError(f"{path}: win_length {config.win_length} > n_fft {config.n_fft}")
    if (config.n_fft - config.hop_length) % 2:
        raise FeatureConfigError(
            f"{path}: n_fft - hop_length must be even so that frames stay centred on the hop"
        )
    if config.log_ceiling is not None and not config.log_ceiling > config.log_floor:
        raise FeatureConfigError(f"{path}: log_ceiling {config.log_ceiling} must be above log_floor {config.log_floor} "
                                 "(or null: no ceiling)")
    if config.f_max > config.sample_rate / 2:
        raise FeatureConfigError(f"{path}: f_max {config.f_max} is above Nyquist ({config.sample_rate / 2})")
    return config


class FeatureExtractor:
    """Waveform (1-D float32 at ``config.sample_rate``) -> ``(frames, dim)`` float32 matrix."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        mel_kwargs = dict(
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            center=False,
            power=2.0 if config.type == "mfcc" else 1.0,
            norm="slaney",
            mel_scale="slaney",
        )
        if config.type == "logmel":
            self.transform = torchaudio.transforms.MelSpectrogram(config.sample_rate, **mel_kwargs)
        else:
            self.transform = torchaudio.transforms.MFCC(
                config.sample_rate, n_mfcc=config.n_mfcc, log_mels=True, melkwargs=mel_kwargs
            )

    def min_samples(self) -> int:
        # Reflection padding needs more samples than the pad, and one frame needs a hop.
        return max(self.config.padding + 1, self.config.hop_length)

    @torch.no_grad()
    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        config = self.config
        if waveform.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {waveform.shape}")
        if len(waveform) < self.min_samples():
            raise ValueError(
                f"utterance too short: {len(waveform)} samples, need at least {self.min_samples()}"
            )
        x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None, None]
        x = torch.nn.functional.pad(x, (config.padding, config.padding), mode="reflect")[0]
        spec = self.transform(x)[0]  # (dim, frames)
        if config.type == "logmel":
            features = torch.log(torch.clamp(spec, min=config.log_floor, max=config.log_ceiling))
        else:
            stack = [spec]
            for _ in range(config.delta_order):
                stack.append(torchaudio.functional.compute_deltas(stack[-1], win_length=config.delta_window))
            features = torch.cat(stack, dim=0)
        return features.T.contiguous().numpy().astype(np.float32)
