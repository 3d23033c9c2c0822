"""VAE-GAN speech style transfer (seed 003; AlBadawy & Lyu 2020): the 2-D networks, nothing else.

All networks work on spectrogram images ``[B, 1, n_mels, frames]`` (channels first, mel bins as
height, frames as width), as the seed does on its 128 x 128 windows:

* :class:`Encoder` (shared by all speakers): reflect-pad 3 + 7x7 conv + InstanceNorm + LeakyReLU
  0.2, then ``len(channels) - 1`` stride-2 4x4 convs + IN + ReLU, then residual blocks. It gives
  ``mu``; the latent is ``z = mu + N(0, I)`` (:func:`sample_latent`; a fixed unit variance, as the
  seed, so the KL term reduces to ``mean(mu^2)``).
* :class:`SharedBlock`: the residual block(s) every generator starts with (one module, one set of
  weights, trained by every speaker's translations).
* :class:`SpeakerGenerator` (one per speaker): residual blocks, then one 4x4 stride-2 transposed
  conv + IN + LeakyReLU 0.2 per encoder downsampling, then reflect-pad 3 + 7x7 conv to one
  channel and ``output_scale * tanh``.
* :class:`PatchDiscriminator` (one per speaker): 4x4 stride-2 convs with LeakyReLU 0.2 and IN on
  all but the first, then a 3x3 conv to a one-channel patch map (least-squares GAN: no sigmoid).

The encoder divides height and width by :attr:`Encoder.scale` (``2 ** downsamplings``), and a
generator multiplies them back; :func:`pad_to_multiple` / cropping handle sizes that are not
multiples of it (odd frame counts, 80 mels with three downsamplings).

The seed's tanh fits its features, dB scaled to [0, 1]; the toolkit's are normalised to zero mean
and unit variance per bin (about [-4, 3]), so the tanh is scaled by ``output_scale``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """``x (B, C, H, W)`` zero-padded at the bottom/right to multiples of ``multiple``; also the original (H, W)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x, (height, width)


def sample_latent(mu: torch.Tensor) -> torch.Tensor:
    """``z = mu + N(0, I)``: the seed's reparameterisation with a fixed unit variance."""
    return mu + torch.randn_like(mu)


class ResidualBlock(nn.Module):
    """``x + [reflect-pad 1, conv 3x3, IN, ReLU, reflect-pad 1, conv 3x3, IN](x)`` (CycleGAN/UNIT style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _check_channels(name: str, channels: Sequence[int], minimum: int) -> Tuple[int, ...]:
    channels = tuple(int(c) for c in channels)
    if len(channels) < minimum or any(c <= 0 for c in channels):
        raise ValueError(f"{name} must list at least {minimum} positive channel counts, got {list(channels)}")
    return channels


class Encoder(nn.Module):
    """``[B, 1, H, W]`` -> ``mu [B, channels[-1], H / scale, W / scale]`` (H, W multiples of :attr:`scale`).

    ``channels``: the 7x7 conv's width, then one entry per stride-2 downsampling (seed: 32, 64, 128).
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128), num_res_blocks: int = 3) -> None:
        super().__init__()
        channels = _check_channels("model.encoder_channels", channels, 2)
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(1, channels[0], 7), nn.InstanceNorm2d(channels[0]),
                  nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.InstanceNorm2d(c_out), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(channels[-1]) for _ in range(num_res_blocks)]
        self.layers = nn.Sequential(*layers)
        self.scale = 2 ** (len(channels) - 1)
        self.latent_channels = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SharedBlock(nn.Module):
    """The residual block(s) at the input of every generator, shared by all speakers (seed: one)."""

    def __init__(self, channels: int, num_res_blocks: int = 1) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_res_blocks)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)


class SpeakerGenerator(nn.Module):
    """One speaker's generator: ``[B, latent_channels, h, w]`` -> ``[B, 1, h * scale, w * scale]``.

    ``channels``: the output width of each transposed conv (seed: 64, 32); their number is the
    encoder's number of downsamplings.
    """

    def __init__(self, latent_channels: int = 128, channels: Sequence[int] = (64, 32), num_res_blocks: int = 2,
                 output_scale: float = 1.0) -> None:
        super().__init__()
        channels = _check_channels("model.generator_channels", channels, 1)
        layers = [ResidualBlock(latent_channels) for _ in range(num_res_blocks)]
        for c_in, c_out in zip((latent_channels,) + channels[:-1], channels):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.InstanceNorm2d(c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels[-1], 1, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)
        self.output_scale = float(output_scale)
        self.scale = 2 ** len(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.output_scale * self.layers(h)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``[B, 1, H, W]`` -> a map ``[B, 1, H / 2^n, W / 2^n]`` of real/fake scores (n = len(channels))."""

    def __init__(self, channels: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        channels = _check_channels("model.discriminator_channels", channels, 1)
        layers = []
        for index, (c_in, c_out) in enumerate(zip((1,) + channels[:-1], channels)):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            if index > 0:  # the seed normalises all but the first layer
                layers.append(nn.InstanceNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(channels[-1], 1, 3, padding=1))
        self.layers = nn.Sequential(*layers)
        self.scale = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
