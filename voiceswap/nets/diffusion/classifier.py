"""The speaker classifier on noisy inputs (seed 000): ``log p(y | x_t, t)`` for classifier guidance.

Stem: the UNet's down path, time-conditioned, with ``num_res_blocks`` ResBlocks and a downsampling
ResBlock at *every* level (the seed: /512 on waveform); then GroupNorm + GELU and attention pooling
(multi-head, head size 64, the query is the masked mean over time) to a ``feature_dim`` vector.
Head: GELU -> zero-initialised Linear to the speakers (the untrained classifier is uniform).

The seed's pooling has a learned positional embedding of a fixed length; utterances here have any
length, so the pooling has none (the convolutions carry position).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voiceswap.nets.diffusion.unet import ResBlock, TimeEmbedding, group_norm, zero_module


class AttentionPool1d(nn.Module):
    """Masked attention pooling over time: the mean token attends to itself and every real frame."""

    def __init__(self, channels: int, out_dim: int, head_dim: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            raise ValueError(f"attention pooling: {channels} channels do not split into heads of {head_dim}")
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, out_dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T)``, ``mask (B, T)`` True on real frames -> ``(B, out_dim)``."""
        batch, channels, _ = x.shape
        weights = mask.unsqueeze(1).to(x.dtype)
        mean = (x * weights).sum(2, keepdim=True) / weights.sum(2, keepdim=True).clamp_min(1.0)
        tokens = torch.cat([mean, x], dim=2)  # (B, C, 1 + T)
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # the mean token is always there
        q, k, v = self.qkv(tokens).reshape(batch * self.heads, 3 * channels // self.heads, -1).chunk(3, dim=1)
        scale = 1.0 / math.sqrt(math.sqrt(channels // self.heads))
        logits = torch.einsum("bct,bcs->bts", q[:, :, :1] * scale, k * scale)  # only the mean token's query
        logits = logits.masked_fill(~keep.repeat_interleave(self.heads, 0)[:, None, :], float("-inf"))
        attended = torch.einsum("bts,bcs->bct", logits.softmax(dim=-1), v)  # (B*heads, C/heads, 1)
        return self.proj(attended.reshape(batch, channels, 1))[:, :, 0]


class NoisyClassifier(nn.Module):
    """``logits = classifier(x_t, t, mask)``; ``features`` (the pooled vector) for the seed's evaluation.

    Args:
        in_channels: 80 mel bins (or 1 for waveform).
        num_classes: speakers.
        base_channels, channel_mult, num_res_blocks: the down path, as the UNet's.
        feature_dim: the pooled feature (the seed: 512).
    """

    def __init__(self, num_classes: int, in_channels: int = 80, base_channels: int = 32,
                 channel_mult: Sequence[int] = (1, 2, 2, 4), num_res_blocks: int = 2, feature_dim: int = 512,
                 head_dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a classifier needs at least one class, got num_classes={num_classes}")
        self.in_channels = in_channels
        self.factor = 2 ** len(channel_mult)
        emb_dim = 4 * base_channels
        self.time_embed = TimeEmbedding(base_channels, emb_dim)
        channels = base_channels * channel_mult[0]
        self.in_conv = nn.Conv1d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList()
        for mult in channel_mult:
            for _ in range(num_res_blocks):
                self.blocks.append(ResBlock(channels, emb_dim, base_channels * mult, dropout=dropout))
                channels = base_channels * mult
            self.blocks.append(ResBlock(channels, emb_dim, resample="down", dropout=dropout))
        self.out_norm = nn.Sequential(group_norm(channels), nn.GELU())
        self.pool = AttentionPool1d(channels, feature_dim, head_dim)
        self.head = nn.Sequential(nn.GELU(), zero_module(nn.Linear(feature_dim, num_classes)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``x (B, C, T)``, ``t (B,)``, ``mask (B, T)`` -> ``logits (B, classes)``, ``features (B, feature_dim)``."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, T), got {tuple(x.shape)}")
        frames = x.shape[2]
        if mask is None:
            mask = torch.ones(x.shape[0], frames, dtype=torch.bool, device=x.device)
        padded = math.ceil(frames / self.factor) * self.factor
        if padded != frames:
            x = F.pad(x, (0, padded - frames))
            mask = F.pad(mask, (0, padded - frames), value=False)
        emb = self.time_embed(t)
        h = self.in_conv(x)
        for block in self.blocks:
            h = block(h, emb)
        # A pooled position is real when any frame under it is.
        pooled_mask = F.max_pool1d(mask[:, None].float(), self.factor)[:, 0] > 0
        features = self.pool(self.out_norm(h), pooled_mask)
        return {"logits": self.head(features), "features": features}
