"""Speaker conditioning of the conversion nets: a table of the train speakers, or an encoder of references.

``table`` (the default of every family): one learned vector per train speaker, looked up by id; the
model converts only to speakers it was trained on. ``reference`` (any-to-any): the vector is
computed from features of a *reference* utterance of the speaker by :class:`ReferenceEncoder`,
trained jointly with the model on crops of another utterance of the item's speaker, so a speaker
never seen in training can be a target (zero-shot). The encoder is the toolkit's own, trained on
the train speakers' features; the metric suite's judge (resemblyzer) is never used, so the speaker
similarity of stage 9 is not optimised by construction.

A net takes its speakers as one of:

* ``(B,)`` long ids (``table``);
* :class:`ReferenceSpeakers` (``reference``): reference features ``(B, T, D)`` and their mask;
* ``(B, speaker_dim)`` float vectors, already made (conversion: the mean vector over a target's
  reference utterances, :func:`reference_vector`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

#: The values of ``model.speaker_conditioning``.
SPEAKER_CONDITIONINGS = ("table", "reference")


class ReferenceSpeakers(NamedTuple):
    """Reference features ``(B, T, D)`` of each item's speaker (another utterance of it) and their mask ``(B, T)``."""

    features: torch.Tensor
    mask: Optional[torch.Tensor] = None


Speakers = Union[torch.Tensor, ReferenceSpeakers]


class ReferenceEncoder(nn.Module):
    """Reference features ``(B, T, in_dim)`` -> speaker vector ``(B, out_dim)``.

    1-D convolutions over time (ReLU, same length), then the mean and standard deviation of the last
    layer over the real frames (statistics pooling, as x-vectors), then a linear layer. Pooling over
    the whole utterance keeps what is constant in it (the voice) and averages away what changes from
    frame to frame (the words).
    """

    def __init__(self, in_dim: int, out_dim: int, channels: int = 128, num_layers: int = 3,
                 kernel_size: int = 5) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1 or channels < 1 or num_layers < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ReferenceEncoder needs positive dims and layers and an odd kernel_size, got in_dim "
                             f"{in_dim}, out_dim {out_dim}, channels {channels}, num_layers {num_layers}, "
                             f"kernel_size {kernel_size}")
        self.in_dim = in_dim
        self.convs = nn.ModuleList(
            nn.Conv1d(in_dim if index == 0 else channels, channels, kernel_size, padding=kernel_size // 2)
            for index in range(num_layers))
        self.projection = nn.Linear(2 * channels, out_dim)

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if features.dim() != 3 or features.shape[-1] != self.in_dim:
            raise ValueError(f"expected reference features (B, T, {self.in_dim}), got {tuple(features.shape)}: "
                             "model.reference_dim must equal the dim of data.reference_feats")
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        weights = mask.to(features.dtype).unsqueeze(1)  # (B, 1, T)
        # Padded frames are zeroed before every conv, so that padding changes nothing (as the convs' own padding).
        hidden = features.transpose(1, 2) * weights
        for conv in self.convs:
            hidden = torch.relu(conv(hidden)) * weights
        count = weights.sum(-1).clamp(min=1.0)
        mean = hidden.sum(-1) / count
        variance = ((hidden - mean.unsqueeze(-1)).pow(2) * weights).sum(-1) / count
        return self.projection(torch.cat([mean, variance.clamp(min=1e-8).sqrt()], dim=-1))


def check_speaker_conditioning(kind: str) -> str:
    if kind not in SPEAKER_CONDITIONINGS:
        raise ValueError(f"model.speaker_conditioning is {kind!r}; use one of {', '.join(SPEAKER_CONDITIONINGS)}")
    return kind


def speaker_vectors(speakers: Speakers, table: Optional[nn.Embedding], encoder: Optional[ReferenceEncoder],
                    speaker_dim: int, device: torch.device) -> torch.Tensor:
    """The ``(B, speaker_dim)`` vectors of ``speakers`` (ids, references or vectors; see the module docstring)."""
    if isinstance(speakers, ReferenceSpeakers):
        if encoder is None:
            raise ValueError("reference features were given to a model with a speaker table "
                             "(model.speaker_conditioning: table): pass speaker ids")
        mask = None if speakers.mask is None else speakers.mask.to(device)
        return encoder(speakers.features.to(device), mask)
    if speakers.is_floating_point():
        if speakers.dim() != 2 or speakers.shape[1] != speaker_dim:
            raise ValueError(f"speaker vectors must be (B, {speaker_dim}), got {tuple(speakers.shape)}")
        return speakers.to(device)
    if table is None:
        raise ValueError("speaker ids were given to a model without a speaker table "
                         "(model.speaker_conditioning: reference): pass reference features or speaker vectors")
    return table(speakers.to(device).long())


def reference_vector(encoder: ReferenceEncoder, references: Sequence[torch.Tensor]) -> torch.Tensor:
    """One speaker's vector ``(speaker_dim,)``: the mean of the encoder's vectors of its reference
    utterances' features (each ``(T, D)``, whole utterances)."""
    if not references:
        raise ValueError("no reference utterance to make a speaker vector from")
    device = next(encoder.parameters()).device
    vectors = [encoder(reference.to(device).float().unsqueeze(0))[0] for reference in references]
    return torch.stack(vectors).mean(0)
