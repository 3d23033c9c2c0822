"""The Griffin-Lim vocoder family: a vocoder with nothing to train (its plan is empty).

``conf/vocoder/griffinlim.yaml`` holds its settings (iterations, momentum); the mel parameters come
from the features it inverts, so the same config serves any log-mel of stage 2.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch

from voiceswap.features.spectral import mel_parameters
from voiceswap.nets.vocoders.griffinlim import GriffinLimVocoder
from voiceswap.train.plan import Step
from voiceswap.train.registry import Family, UnsupportedByFamily, register_family


@register_family("griffinlim")
class GriffinLimFamily(Family):
    role = "vocoder"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return []

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        return {}

    def train_step(self, batch, step):
        raise UnsupportedByFamily("Griffin-Lim has nothing to train")

    def valid_step(self, batch):
        raise UnsupportedByFamily("Griffin-Lim has nothing to train")

    def vocoder(self, config: Mapping[str, Any], feature_config: Mapping[str, Any]) -> torch.nn.Module:
        mel = mel_parameters(feature_config)
        mel.pop("log_floor", None)
        options = dict(config.get("model") or {})
        return GriffinLimVocoder(**mel, **options)
