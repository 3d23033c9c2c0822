"""A small speaker classifier on log-mel frames: the toolkit's own judge for the metric suite.

Dilated 1-D convolutions over normalised log-mel, masked mean + standard-deviation pooling over
time (x-vector style statistics pooling, so any utterance length works), a penultimate embedding
layer (the features of the Frechet score) and a linear head (the probabilities of the class score
and the accuracy). Trained on real train-set speech only; it never sees vocoded speech, so the
oracle row (real target speech through the vocoder) tells how much the vocoder alone costs it.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn


class SpeakerClassifier(nn.Module):
    def __init__(self, num_speakers: int, in_dim: int = 80, channels: int = 128, num_layers: int = 3,
                 kernel_size: int = 5, embedding_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_dim = in_dim
        layers = []
        for i in range(num_layers):
            dilation = 2 ** i
            layers += [nn.Conv1d(in_dim if i == 0 else channels, channels, kernel_size, dilation=dilation,
                                 padding=dilation * (kernel_size - 1) // 2), nn.ReLU(), nn.BatchNorm1d(channels)]
        self.frames = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(2 * channels, embedding_dim), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embedding_dim, num_speakers)

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``features (B, T, in_dim)``, ``mask (B, T)`` True on real frames
        -> ``logits (B, S)``, ``embedding (B, E)``."""
        if features.dim() != 3 or features.shape[2] != self.in_dim:
            raise ValueError(f"expected features (B, T, {self.in_dim}), got {tuple(features.shape)}")
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        h = self.frames(features.transpose(1, 2))  # (B, C, T)
        weights = mask.unsqueeze(1).to(h.dtype)
        count = weights.sum(dim=2).clamp(min=1.0)
        mean = (h * weights).sum(dim=2) / count
        var = ((h - mean.unsqueeze(2)).pow(2) * weights).sum(dim=2) / count
        pooled = torch.cat([mean, var.clamp(min=1e-8).sqrt()], dim=1)
        embedding = self.embedding(pooled)
        return {"logits": self.head(self.dropout(embedding)), "embedding": embedding}
