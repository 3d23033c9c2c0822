"""Vocoders: log-mel -> waveform. Griffin-Lim today; trained vocoders register here later."""

from __future__ import annotations

from typing import Any, Dict

import torch

from voiceswap.nets.vocoders.griffinlim import GriffinLimVocoder

FEATURE_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max")
VOCODERS = ("griffinlim",)


def build_vocoder(name: str, feature_config: Dict[str, Any], **options: Any) -> torch.nn.Module:
    """A vocoder for log-mel features described by ``feature_config`` (a feats yaml as a dict)."""
    if name == "griffinlim":
        return GriffinLimVocoder(**{key: feature_config[key] for key in FEATURE_KEYS}, **options)
    raise ValueError(f"unknown vocoder '{name}'; valid vocoders: {', '.join(VOCODERS)}")
