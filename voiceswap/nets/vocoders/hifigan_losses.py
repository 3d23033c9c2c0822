"""HiFi-GAN losses: log-mel L1, feature matching, least-squares adversarial losses for G and D.

Total generator loss as published: ``sum adversarial + 2 * sum feature matching + 45 * mel L1``
(the weights 2 and 45 are the caller's, ``loss.feature_matching_weight`` / ``loss.mel_weight`` of
the ``hifigan`` family).

:class:`LogMelSpectrogram` re-creates our ``logmel80`` features differentiably from their
parameters (``nets/`` may not import ``voiceswap.features``): reflect padding of
``(n_fft - hop) / 2`` a side, ``center=False``, magnitude (power 1), Slaney mel, ``ln(max(., floor))``
-- the convention of ``voiceswap/features/spectral.py``, so ``N`` samples give ``N // hop`` frames.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn


class LogMelSpectrogram(nn.Module):
    """Waveform ``(B, L)`` or ``(B, 1, L)`` -> log-mel ``(B, n_mels, L // hop_length)``, differentiable, in fp32."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, win_length: int = 1024, hop_length: int = 160,
                 n_mels: int = 80, f_min: float = 0.0, f_max: float = 8000.0, log_floor: float = 1e-5) -> None:
        super().__init__()
        if (n_fft - hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even (frames centred on the hop), got {n_fft} - {hop_length}")
        self.padding = (n_fft - hop_length) // 2
        self.log_floor = log_floor
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, f_min=f_min, f_max=f_max,
            n_mels=n_mels, center=False, power=1.0, norm="slaney", mel_scale="slaney",
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 3:
            waveform = waveform.squeeze(1)
        # STFTs in half precision are unsupported or inaccurate: compute in fp32 whatever autocast says.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            x = torch.nn.functional.pad(waveform.float().unsqueeze(1), (self.padding, self.padding), mode="reflect")
            return torch.log(torch.clamp(self.mel(x.squeeze(1)), min=self.log_floor))


def mel_l1_loss(log_mel_fake: torch.Tensor, log_mel_real: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two log-mel spectrograms ``(B, n_mels, T)`` (HiFi-GAN's mel loss before its x45)."""
    return torch.nn.functional.l1_loss(log_mel_fake, log_mel_real)


def feature_matching_loss(
    real_maps: Sequence[Sequence[torch.Tensor]], fake_maps: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Sum over sub-discriminators and layers of ``mean |real - fake|``; real maps are constants (detached)."""
    loss = 0.0
    for real_layers, fake_layers in zip(real_maps, fake_maps):
        for real, fake in zip(real_layers, fake_layers):
            loss = loss + torch.mean(torch.abs(real.detach().float() - fake.float()))
    return loss


def discriminator_adversarial_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """LSGAN for D: ``sum_k mean((1 - D_k(real))^2) + mean(D_k(fake)^2)``."""
    loss = 0.0
    for real, fake in zip(real_logits, fake_logits):
        loss = loss + torch.mean((1.0 - real.float()) ** 2) + torch.mean(fake.float() ** 2)
    return loss


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN for G: ``sum_k mean((1 - D_k(fake))^2)``."""
    loss = 0.0
    for fake in fake_logits:
        loss = loss + torch.mean((1.0 - fake.float()) ** 2)
    return loss

