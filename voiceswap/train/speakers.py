"""What a family conditions its net on: speaker ids (a speaker table) or references (any-to-any).

The nets take either (voiceswap/nets/speaker.py); these helpers are the families' side: the speakers
of a training batch, a conversion target as a batch of one, and a target speaker's vector from its
reference utterances. Families with ``model.speaker_conditioning``: vqvae, softvc.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import torch
from torch import nn

from voiceswap.nets.speaker import ReferenceSpeakers, Speakers, reference_vector
from voiceswap.train.registry import UnsupportedByFamily

#: A conversion target: a speaker id of the model's table, or a speaker vector made from references.
Target = Union[int, torch.Tensor]


def batch_speakers(batch: Mapping[str, Any]) -> Speakers:
    """The batch's reference crops (the loader makes them for ``data.reference_feats``), else its speaker ids."""
    if "reference" in batch:
        # No reference_mask: every reference has the input's length, so the input's mask is theirs.
        return ReferenceSpeakers(batch["reference"], batch.get("reference_mask", batch.get("mask")))
    return batch["speakers"]


def target_batch(target: Target, device: torch.device) -> torch.Tensor:
    """A conversion target as a batch of one: ids ``(1,)`` long or a vector ``(1, speaker_dim)``."""
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        return target.reshape(1, -1).to(device)
    return torch.tensor([int(target)], dtype=torch.long, device=device)


def model_speaker_vector(model: nn.Module, references: Sequence[torch.Tensor]) -> torch.Tensor:
    """The speaker vector ``(speaker_dim,)`` a reference-conditioned ``model`` gives the mean of reference
    utterances' features (each ``(T, D)``, normalised as ``data.reference_feats``)."""
    model = getattr(model, "module", model)
    encoder = getattr(model, "reference_encoder", None)
    if encoder is None:
        raise UnsupportedByFamily("this model converts to the speakers of its table (model.speaker_conditioning: "
                                  "table), not to a voice given by reference recordings; train one with "
                                  "--set model.speaker_conditioning=reference for any-to-any conversion")
    with torch.no_grad():
        return reference_vector(encoder, references)
