"""Vocoders: log-mel -> waveform. Griffin-Lim (no training) and HiFi-GAN (trained in stage 7).

``build_vocoder(name, feature_config, **options)`` gives a module mapping ``(B, n_mels, T)``
natural-log mel (the features before normalisation) to ``(B, T * hop_length)`` waveforms. A trained
vocoder gets its weights as options (``generator_config`` and ``state_dict`` for hifigan); reading
them from a checkpoint is not the nets' business (see ``voiceswap.train.pretrained.load_vocoder``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch

from voiceswap.nets.vocoders.griffinlim import GriffinLimVocoder
from voiceswap.nets.vocoders.hifigan import HiFiGANGenerator, HiFiGANVocoder

FEATURE_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max")
VOCODERS = ("griffinlim", "hifigan")
#: Vocoders whose weights come from a training stage (stage 7); the others need none.
TRAINED_VOCODERS = ("hifigan",)


def build_vocoder(name: str, feature_config: Dict[str, Any], generator_config: Optional[Mapping[str, Any]] = None,
                  state_dict: Optional[Mapping[str, torch.Tensor]] = None, **options: Any) -> torch.nn.Module:
    """A vocoder for log-mel features described by ``feature_config`` (a feats yaml as a dict).

    ``hifigan`` needs ``generator_config`` (the ``model.generator`` section of its config) and the
    generator's ``state_dict`` (EMA weights when training kept them).
    """
    if name == "griffinlim":
        return GriffinLimVocoder(**{key: feature_config[key] for key in FEATURE_KEYS}, **options)
    if name == "hifigan":
        if generator_config is None or state_dict is None:
            raise ValueError("the hifigan vocoder needs generator_config and state_dict (a trained generator, stage 7)")
        generator = HiFiGANGenerator(in_channels=feature_config["n_mels"], hop_length=feature_config["hop_length"],
                                     **generator_config)
        generator.load_state_dict(state_dict)
        return HiFiGANVocoder(generator.eval())
    raise ValueError(f"unknown vocoder '{name}'; valid vocoders: {', '.join(VOCODERS)}")
