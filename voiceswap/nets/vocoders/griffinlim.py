"""Griffin-Lim: the baseline vocoder that needs no training (torchaudio's implementation)."""

from __future__ import annotations

import torch
import torchaudio


class GriffinLimVocoder(torch.nn.Module):
    """Natural-log mel magnitudes ``(B, n_mels, T)`` -> waveforms ``(B, T * hop_length)``.

    The mel filterbank is inverted by least squares (``InverseMelScale``), then the phase is
    estimated by Griffin-Lim from a fixed (not random) start so that conversions are reproducible.
    Parameters must be those of the features (``conf/feats/logmel80.yaml``).
    """

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int,
                 f_min: float, f_max: float, n_iter: int = 32, momentum: float = 0.99):
        super().__init__()
        self.hop_length = hop_length
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max,
            norm="slaney", mel_scale="slaney",
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, n_iter=n_iter, win_length=win_length, hop_length=hop_length, power=1.0,
            momentum=momentum, rand_init=False,
        )

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        magnitude = self.inverse_mel(torch.exp(log_mel))
        # torchaudio centres frame i on sample i * hop; our features (reflect-padded by
        # (n_fft - hop) / 2, not centred) put it at i * hop + hop / 2. Shift by half a hop and pad
        # to the T * hop samples that the features came from.
        self.griffin_lim.length = (log_mel.shape[-1] - 1) * self.hop_length
        waveform = self.griffin_lim(magnitude)
        half = self.hop_length // 2
        return torch.nn.functional.pad(waveform, (half, self.hop_length - half))
