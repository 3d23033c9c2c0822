"""The speaker-classifier family: cross-entropy training of ``voiceswap.nets.speaker_classifier``.

It judges converted speech in stage 9 (accuracy, class score, Frechet score), so it is trained on
the train set's real normalised log-mel with the generic Trainer, like any other family
(``conf/speaker_classifier.yaml``; the recipe caches it in ``exp/speaker_classifier_<corpus>``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F

from voiceswap.nets.speaker_classifier import SpeakerClassifier
from voiceswap.train.registry import SingleLossFamily, register_family


@register_family("speaker_classifier")
class SpeakerClassifierFamily(SingleLossFamily):
    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        return {"model": SpeakerClassifier(num_speakers=num_speakers, **config["model"])}

    def losses(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        output = self.models["model"](batch["input"], batch["mask"])
        loss = F.cross_entropy(output["logits"], batch["speakers"])
        accuracy = (output["logits"].argmax(dim=1) == batch["speakers"]).float().mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}


    @torch.no_grad()
    def classify(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """One utterance's normalised log-mel ``(T, D)`` -> ``probs (S,)`` and penultimate ``embedding (E,)``."""
        output = self.models["model"](features.unsqueeze(0))
        return {"probs": output["logits"].softmax(dim=1)[0], "embedding": output["embedding"][0]}
