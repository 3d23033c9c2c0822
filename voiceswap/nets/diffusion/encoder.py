"""The VQ-conditioned diffusion voice swap of seed 000: ``conv-mfcc`` encoder, VQ bottleneck, UNet decoder.

:class:`ConvMFCCEncoder` (the seed's ``conv-mfcc``): MFCC-39 at 100 Hz -> conv k3 to ``channels`` +
GELU -> residual conv k3 -> stride-2 conv k4 (50 Hz, one code per 20 ms) -> 2 residual convs k3 ->
4 residual convs k1 -> zero-initialised 1x1 conv to ``code_dim``. Residual blocks are
``x + conv(GELU(x))``.

:class:`VQDiffusion` puts the encoder, a straight-through :class:`~voiceswap.nets.vq.VectorQuantizer`
with dead-code revival (the seed's 512 codes; its N(0, 1) codebook init is replaced by the
quantiser's, the revival re-seeds unused codes from encoder outputs anyway) and the
:class:`~voiceswap.nets.diffusion.unet.UNet` decoder, whose conditioning input is the quantised codes
and whose class label is the speaker.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from voiceswap.nets.diffusion.schedules import NoiseSchedule
from voiceswap.nets.diffusion.unet import UNet, zero_module
from voiceswap.nets.vq import TimeJitter, VectorQuantizer, VQOutput


class Residual(nn.Module):
    """``x + conv(GELU(x))``."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.gelu(x))


class ConvMFCCEncoder(nn.Module):
    """``(B, in_dim, T)`` at 100 Hz -> ``(B, code_dim, ceil(T / 2))`` at 50 Hz."""

    def __init__(self, in_dim: int = 39, channels: int = 384, code_dim: int = 512) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(
            nn.Conv1d(in_dim, channels, 3, padding=1), nn.GELU(),
            Residual(channels, 3),
            nn.Conv1d(channels, channels, 4, stride=2, padding=1),
            Residual(channels, 3), Residual(channels, 3),
            *[Residual(channels, 1) for _ in range(4)],
            zero_module(nn.Conv1d(channels, code_dim, 1)),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 3 or features.shape[1] != self.in_dim:
            raise ValueError(f"expected features of shape (B, {self.in_dim}, T), got {tuple(features.shape)}")
        if features.shape[2] % 2:  # one code per two frames: repeat the last frame so none is dropped
            features = torch.cat([features, features[:, :, -1:]], dim=2)
        return self.net(features)


class VQDiffusion(nn.Module):
    """Encoder + VQ + UNet decoder; the UNet's ``num_classes`` and ``cond_channels`` are ``num_speakers``
    and ``code_dim``.

    ``eps_skip`` (needs ``schedule``): ``eps_hat = sqrt(1 - abar) x_t + sqrt(abar) F(x_t, t, ...)`` with F the
    UNet, instead of the seed's ``eps_hat = F``. Still eps-prediction with the seed's loss and sampler, but
    at high noise (abar -> 0) eps is x_t by construction. The seed's raw output must learn that identity
    to within ~sqrt(abar) (abar(1) = 1e-5 on the exp schedule), since the reverse step divides the error
    by sqrt(abar); its 1M GPU steps do, 3000 CPU steps did not (eps-MSE 0.007 at t > 0.6 and samples
    whose variance grew step by step, std 11 for data of std 0.85: measured).
    """

    def __init__(self, num_speakers: int, in_dim: int = 39, out_dim: int = 80, encoder_channels: int = 384,
                 code_dim: int = 512, codebook_size: int = 512, commitment_cost: float = 0.25,
                 dead_code_revival: bool = True, revival_patience: int = 100, jitter_p: float = 0.0,
                 base_channels: int = 32, channel_mult: Sequence[int] = (1, 2, 2, 4), num_res_blocks: int = 2,
                 middle_dilations: Sequence[int] = (4, 8, 16, 32), dropout: float = 0.0, eps_skip: bool = False,
                 schedule: Optional[NoiseSchedule] = None) -> None:
        super().__init__()
        if eps_skip and schedule is None:
            raise ValueError("eps_skip needs the noise schedule (its alpha_bar)")
        self.num_speakers = num_speakers
        self.eps_skip = eps_skip
        self.schedule = schedule
        self.encoder = ConvMFCCEncoder(in_dim, encoder_channels, code_dim)
        self.vq = VectorQuantizer(codebook_size, code_dim, "straight_through", commitment_cost=commitment_cost,
                                  dead_code_revival=dead_code_revival, revival_patience=revival_patience)
        self.jitter = TimeJitter(jitter_p)
        self.unet = UNet(out_dim, base_channels, channel_mult, num_res_blocks, middle_dilations, dropout,
                         num_classes=num_speakers, cond_channels=code_dim)

    def code_mask(self, mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Frame mask ``(B, T)`` -> code mask ``(B, ceil(T / 2))``: a code is real if its first frame is."""
        return None if mask is None else mask[:, ::2]

    def quantize(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> VQOutput:
        """``features (B, in_dim, T)`` -> the VQ output of its codes (``quantized (B, code_dim, ceil(T/2))``).

        Time jitter (training only, default off in the seed) acts on the continuous encoder output."""
        code_mask = self.code_mask(mask)
        return self.vq(self.jitter(self.encoder(features), code_mask), code_mask)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor], features: torch.Tensor,
                mask: Optional[torch.Tensor] = None, code_keep: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, VQOutput]:
        """The training forward in one call (one DDP forward): encode and quantise ``features (B, in_dim, T)``,
        zero the codes of examples whose ``code_keep (B,)`` is 0 (code dropout), predict the noise of ``x_t``.

        Returns ``eps_hat (B, out_dim, T)`` and the VQ output.
        """
        vq = self.quantize(features, mask)
        codes = vq.quantized if code_keep is None else vq.quantized * code_keep[:, None, None]
        return self.eps(x_t, t, labels, codes), vq

    @property
    def in_channels(self) -> int:
        return self.unet.in_channels

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor],
            codes: Optional[torch.Tensor]) -> torch.Tensor:
        """The predicted noise of ``x_t (B, out_dim, T)`` given codes ``(B, code_dim, T_c)`` (zeros: no content)."""
        out = self.unet(x_t, t, labels, codes)
        if not self.eps_skip:
            return out
        abar = self.schedule.alpha_bar(t).to(x_t.dtype).view(-1, 1, 1)
        return (1.0 - abar).sqrt() * x_t + abar.sqrt() * out
