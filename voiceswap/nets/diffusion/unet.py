"""The 1-D UNet noise predictor of vq-voice-swap (seed 000), guided-diffusion style.

It works on ``(B, C, T)`` sequences: log-mel frames with the mel bins as channels (``C = 80``, the
default of the recipe) or waveform segments (``C = 1``). Structure (names as in the seed):

* timestep embedding: ``[cos(f t), sin(f t)]`` over frequencies ``f`` spaced geometrically from 100
  down to 0.1 (``t`` in ``[0, 1]``), then Linear -> GELU -> Linear to ``4 * base`` channels;
  a class-label embedding (speaker; index ``num_classes`` means "no class", for classifier-free
  guidance) is added to it;
* input conv k3 -> ``base * mult[0]`` channels; optional conditioning (VQ codes at their own rate):
  conv k3 -> nearest interpolation to the full length -> added after the input conv;
* down path: per level ``num_res_blocks`` ResBlocks, then a downsampling ResBlock (average pool x2)
  except at the last level; every output kept for the skips;
* middle: ResBlocks with the given dilations (the seed: 4, 8, 16, 32);
* up path: ``num_res_blocks + 1`` ResBlocks per level on the skip concatenated to the input, an
  upsampling ResBlock (nearest x2) at the end of every level but the first;
* output: GroupNorm + GELU + zero-initialised conv k3 (the untrained model predicts eps = 0).

ResBlock: GN + GELU -> resize -> conv k3 -> GN -> ``h (1 + scale) + shift`` from the embedding
(projection initialised x0.1) -> GELU -> dropout -> zero-initialised conv k3, plus a skip path
(resize, and a 1x1 conv when the channels change). GroupNorm: 32 groups, halved until they divide
the channels.

Lengths that are not a multiple of ``2^(levels - 1)`` are zero-padded on the right inside
:meth:`UNet.forward` and the output is cropped back, so any utterance length works.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with ``groups`` halved until it divides ``channels`` (the seed's rule)."""
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter: a residual branch or output that starts as the identity / zero."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_freq: float = 100.0, min_freq: float = 0.1) -> torch.Tensor:
    """``t (B,)`` in ``[0, 1]`` -> ``(B, dim)``: ``[cos(f t), sin(f t)]`` for ``dim // 2`` frequencies from
    ``max_freq`` down to ``min_freq`` (geometric); an odd ``dim`` gets a zero column."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(math.log(max_freq), math.log(min_freq), half, device=t.device))
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class TimeEmbedding(nn.Module):
    """Timestep features -> Linear -> GELU -> Linear (``base`` -> ``4 * base`` in the seed)."""

    def __init__(self, base: int, dim: int) -> None:
        super().__init__()
        self.base = base
        self.net = nn.Sequential(nn.Linear(base, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(timestep_embedding(t, self.base))


class ResBlock(nn.Module):
    """The seed's residual block; ``resample`` is None, ``"down"`` (avg pool x2) or ``"up"`` (nearest x2)."""

    def __init__(self, channels: int, emb_dim: int, out_channels: Optional[int] = None,
                 resample: Optional[str] = None, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', not {resample!r}")
        out_channels = out_channels or channels
        self.resample = resample
        self.in_layers = nn.Sequential(group_norm(channels), nn.GELU())
        self.in_conv = nn.Conv1d(channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels)
        with torch.no_grad():  # the embedding starts as a small perturbation (the seed: x0.1)
            self.emb_proj.weight.mul_(0.1)
            self.emb_proj.bias.mul_(0.1)
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(nn.GELU(), nn.Dropout(dropout),
                                        zero_module(nn.Conv1d(out_channels, out_channels, 3, padding=dilation,
                                                              dilation=dilation)))
        self.skip = nn.Identity() if out_channels == channels else nn.Conv1d(channels, out_channels, 1)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool1d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(self._resize(self.in_layers(x)))
        scale, shift = self.emb_proj(emb).unsqueeze(-1).chunk(2, dim=1)
        h = self.out_layers(self.out_norm(h) * (1.0 + scale) + shift)
        return self.skip(self._resize(x)) + h


class UNet(nn.Module):
    """``eps_hat = unet(x_t, t, labels, cond)``; see the module docstring.

    Args:
        in_channels: channels of ``x`` (80 mel bins, or 1 for waveform); the output has as many.
        base_channels: the seed's ``32`` (unet32) or ``64`` (unet64).
        channel_mult: channels of each level as multiples of ``base_channels``; ``len - 1`` halvings.
        num_res_blocks: ResBlocks per level on the down path (the up path has one more).
        middle_dilations: dilations of the middle ResBlocks.
        num_classes: speaker labels (0: no label embedding); index ``num_classes`` is "no class".
        cond_channels: channels of the conditioning sequence (VQ codes; 0: none).
    """

    def __init__(self, in_channels: int = 80, base_channels: int = 32, channel_mult: Sequence[int] = (1, 2, 2, 4),
                 num_res_blocks: int = 2, middle_dilations: Sequence[int] = (4, 8, 16, 32), dropout: float = 0.0,
                 num_classes: int = 0, cond_channels: int = 0) -> None:
        super().__init__()
        if not channel_mult:
            raise ValueError("channel_mult needs at least one level")
        if base_channels * channel_mult[0] < in_channels:
            # eps has in_channels independent dimensions: a narrower first level cannot carry it through
            # (80 mel bins through the seed's 32 waveform channels caps the eps-MSE at 1 - 32/80).
            raise ValueError(f"the UNet's first level has base_channels x channel_mult[0] = "
                             f"{base_channels * channel_mult[0]} channels, fewer than its {in_channels} input "
                             f"channels: make it at least {in_channels} (e.g. model.channel_mult starting with "
                             f"{-(-in_channels // base_channels)})")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.cond_channels = cond_channels
        self.factor = 2 ** (len(channel_mult) - 1)
        emb_dim = 4 * base_channels
        self.time_embed = TimeEmbedding(base_channels, emb_dim)
        # One extra row: the "no class" label of classifier-free guidance (the seed shifts labels by one).
        self.label_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        channels = base_channels * channel_mult[0]
        self.in_conv = nn.Conv1d(in_channels, channels, 3, padding=1)
        self.cond_conv = nn.Conv1d(cond_channels, channels, 3, padding=1) if cond_channels else None

        self.down = nn.ModuleList()
        skips = [channels]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(channels, emb_dim, base_channels * mult, dropout=dropout))
                channels = base_channels * mult
                skips.append(channels)
            if level < len(channel_mult) - 1:
                self.down.append(ResBlock(channels, emb_dim, resample="down", dropout=dropout))
                skips.append(channels)
        self.middle = nn.ModuleList(ResBlock(channels, emb_dim, dilation=d, dropout=dropout) for d in middle_dilations)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(channels + skips.pop(), emb_dim, base_channels * mult,
                                                dropout=dropout)])
                channels = base_channels * mult
                if level and i == num_res_blocks:
                    block.append(ResBlock(channels, emb_dim, resample="up", dropout=dropout))
                self.up.append(block)
        self.out = nn.Sequential(group_norm(channels), nn.GELU(),
                                 zero_module(nn.Conv1d(channels, in_channels, 3, padding=1)))

    def eps(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None,
            cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The predicted noise: the seed's eps-prediction is the UNet's output itself."""
        return self(x, t, labels, cond)

    def embed(self, t: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """Time embedding plus label embedding (``labels`` None or ``num_classes``: no class)."""
        emb = self.time_embed(t)
        if self.label_embed is not None:
            if labels is None:
                labels = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.label_embed(labels)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None,
                cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x (B, C, T)``, ``t (B,)`` in [0, 1], ``labels (B,)`` long, ``cond (B, cond_channels, T_c)``
        -> ``(B, C, T)``."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, T), got {tuple(x.shape)}")
        frames = x.shape[2]
        padded = math.ceil(frames / self.factor) * self.factor
        if padded != frames:
            x = F.pad(x, (0, padded - frames))
        emb = self.embed(t, labels)
        h = self.in_conv(x)
        if cond is not None:
            if self.cond_conv is None:
                raise ValueError("this UNet has no conditioning input (cond_channels=0) but was given cond")
            c = F.interpolate(self.cond_conv(cond), size=frames, mode="nearest")
            h = h + F.pad(c, (0, padded - frames))
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        for block in self.middle:
            h = block(h, emb)
        for blocks in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
        return self.out(h)[:, :, :frames]
