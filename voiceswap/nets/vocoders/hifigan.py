"""HiFi-GAN (Kong et al. 2020): generator with multi-receptive-field fusion, MPD and MSD discriminators.

The generator turns natural-log mel magnitudes ``(B, n_mels, T)`` -- our ``logmel80`` features
*before* normalisation -- into waveforms ``(B, 1, T * hop_length)``. Its transposed convolutions
must multiply to the features' hop (160 at 16 kHz: ``(10, 4, 2, 2)`` as in the Soft-VC seed's
vocoder, not the published V1's ``(8, 8, 2, 2)`` for hop 256); construction checks it.

Using a trained generator as a recipe vocoder (what ``build_vocoder("hifigan", ...)`` should do)::

    generator = HiFiGANGenerator(in_channels=feats["n_mels"], hop_length=feats["hop_length"],
                                 **config["model"]["generator"])
    generator.load_state_dict(ema_or_model_state["generator"])   # checkpoint I/O stays outside nets/
    vocoder = HiFiGANVocoder(generator)        # (B, n_mels, T) log-mel -> (B, T * hop) waveform
    waveform = vocoder(log_mel)                # the GriffinLimVocoder interface, no_grad, eval mode

:class:`HiFiGANVocoder` removes the weight normalisation (folds ``g * v / |v|`` into plain
weights), which makes inference a little faster and gives the same output.

Losses live in :mod:`voiceswap.nets.vocoders.hifigan_losses`.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

#: Leaky ReLU slope between layers (the final one before conv_post uses PyTorch's default 0.01, as published).
LRELU_SLOPE = 0.1

#: Published HiFi-GAN V1 generator: 13.92M parameters (80 mels, rates (8, 8, 2, 2), kernels (16, 16, 4, 4)).
PUBLISHED_V1_PARAMETERS = 13.92e6


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel with dilation."""
    return (kernel_size * dilation - dilation) // 2


def _init_weights(module: nn.Module, std: float = 0.01) -> None:
    """HiFi-GAN's N(0, 0.01) initialisation of the generator's convolutions (before weight norm)."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        module.weight.data.normal_(0.0, std)


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrisation in ``module`` into a plain weight, in place; returns ``module``."""
    for submodule in module.modules():
        if parametrize.is_parametrized(submodule, "weight"):
            parametrize.remove_parametrizations(submodule, "weight", leave_parametrized=True)
    return module


class ResBlock1(nn.Module):
    """MRF residual block, type 1: three ``(lrelu, dilated conv, lrelu, conv) + skip`` units on ``(B, C, L)``,
    length preserving."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"resblock kernel sizes must be odd (length preserving), got {kernel_size}")
        self.convs1 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilations
        ])
        self.convs2 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1)))
            for _ in dilations
        ])
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            residual = conv1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + conv2(F.leaky_relu(residual, LRELU_SLOPE))
        return x


class HiFiGANConfigError(ValueError):
    """A generator configuration that cannot produce ``T * hop_length`` samples from ``T`` frames."""


def check_upsampling(upsample_rates: Sequence[int], upsample_kernel_sizes: Sequence[int], hop_length: int) -> None:
    """Raise :class:`HiFiGANConfigError` unless the rates multiply to ``hop_length`` and every kernel fits its rate."""
    rates, kernels = tuple(int(r) for r in upsample_rates), tuple(int(k) for k in upsample_kernel_sizes)
    product = math.prod(rates)
    if product != hop_length:
        raise HiFiGANConfigError(
            f"upsample_rates {rates} multiply to {product} but the features' hop_length is {hop_length}: "
            f"choose factors whose product is {hop_length}, e.g. {example_factors(hop_length)}"
        )
    if len(kernels) != len(rates):
        raise HiFiGANConfigError(f"upsample_kernel_sizes {kernels} must have one kernel per rate in {rates}")
    for rate, kernel in zip(rates, kernels):
        # ConvTranspose1d(k, stride=u, padding=(k-u)/2) gives exactly L * u samples only when k - u is even and >= 0.
        if kernel < rate or (kernel - rate) % 2:
            raise HiFiGANConfigError(
                f"upsample kernel {kernel} does not fit rate {rate}: a kernel must be >= its rate with an even "
                f"difference, so that the layer gives exactly {rate}x the samples; use {2 * rate} (twice the rate)"
            )


def example_factors(hop_length: int) -> Tuple[int, ...]:
    """A HiFi-GAN-like factorisation of ``hop_length``: a large first factor, then 4s and 2s (160 -> (10, 4, 2, 2))."""
    tail: List[int] = []
    rest = hop_length
    for factor in (2, 2, 4):
        if rest % factor == 0 and rest // factor >= factor:
            tail.insert(0, factor)
            rest //= factor
    return (rest, *tail) if rest > 1 else tuple(tail) or (1,)


class HiFiGANGenerator(nn.Module):
    """Log-mel ``(B, in_channels, T)`` -> waveform in [-1, 1] ``(B, 1, T * hop_length)``.

    ``conv_pre`` (k7) -> per rate: lrelu, weight-normed ConvTranspose1d(k, u, (k-u)/2) halving the
    channels, then the mean of ``len(resblock_kernel_sizes)`` parallel :class:`ResBlock1` (MRF)
    -> lrelu -> ``conv_post`` (k7) -> tanh.
    """

    def __init__(
        self,
        in_channels: int = 80,
        hop_length: int = 160,
        upsample_rates: Sequence[int] = (10, 4, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (20, 8, 4, 4),
        upsample_initial_channel: int = 512,
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        resblock: str = "1",
    ) -> None:
        super().__init__()
        if str(resblock) != "1":
            raise HiFiGANConfigError(f"only resblock type 1 (MRF, as V1/V2) is implemented, got {resblock!r}")
        check_upsampling(upsample_rates, upsample_kernel_sizes, hop_length)
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise HiFiGANConfigError(f"resblock_kernel_sizes {tuple(resblock_kernel_sizes)} and "
                                     f"resblock_dilation_sizes {tuple(map(tuple, resblock_dilation_sizes))} "
                                     "must have the same length")
        if upsample_initial_channel % (2 ** len(upsample_rates)):
            raise HiFiGANConfigError(f"upsample_initial_channel {upsample_initial_channel} must be divisible by "
                                     f"2**{len(upsample_rates)} (every upsampling layer halves the channels)")
        # The constructor arguments, so an inference copy can be rebuilt (see HiFiGANVocoder).
        self.hparams = dict(in_channels=in_channels, hop_length=hop_length, upsample_rates=tuple(upsample_rates),
                            upsample_kernel_sizes=tuple(upsample_kernel_sizes),
                            upsample_initial_channel=upsample_initial_channel,
                            resblock_kernel_sizes=tuple(resblock_kernel_sizes),
                            resblock_dilation_sizes=tuple(tuple(d) for d in resblock_dilation_sizes), resblock=resblock)
        self.hop_length = hop_length
        self.in_channels = in_channels
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = weight_norm(nn.Conv1d(in_channels, upsample_initial_channel, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(weight_norm(
                nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)))
            channels //= 2
            for k, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(channels, k, dilations))
        self.conv_post = weight_norm(nn.Conv1d(channels, 1, 7, 1, padding=3))
        self.ups.apply(_init_weights)
        self.conv_post.apply(_init_weights)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, upsample in enumerate(self.ups):
            x = upsample(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as published
        return torch.tanh(x)

    def remove_weight_norm(self) -> "HiFiGANGenerator":
        """Fold weight norm into plain weights (inference only; the state_dict keys change). Returns self."""
        return remove_weight_norm(self)


class HiFiGANVocoder(nn.Module):
    """A trained generator behind the recipe's vocoder interface: ``(B, n_mels, T)`` log-mel -> ``(B, T * hop)``.

    Works on a copy of ``generator`` with weight norm removed, in eval mode, without gradients.
    The copy is rebuilt from ``generator.hparams`` and its state_dict rather than deep-copied: a
    parametrised module's class is shared by its deep copies, and removing the parametrisation
    from one would break the other.
    """

    def __init__(self, generator: HiFiGANGenerator) -> None:
        super().__init__()
        self.hop_length = generator.hop_length
        copied = HiFiGANGenerator(**generator.hparams)
        copied.load_state_dict(generator.state_dict())
        first = next(generator.parameters())
        self.generator = remove_weight_norm(copied.to(device=first.device, dtype=first.dtype)).eval()

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.generator(log_mel).squeeze(1)


def _scaled(channels: int, width: float) -> int:
    """Channels scaled by ``width``, rounded to a multiple of 16 (the grouped MSD convolutions need it)."""
    return max(16, int(round(channels * width / 16)) * 16)


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator: the waveform folded into ``(B, 1, L / period, period)``, then 2-D convs
    (k5, s3) over time."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.period = period
        channels = [1] + [_scaled(c, width) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList()
        for i in range(5):
            layer_stride = (stride, 1) if i < 4 else 1
            self.convs.append(weight_norm(nn.Conv2d(channels[i], channels[i + 1], (kernel_size, 1), layer_stride,
                                                    padding=(get_padding(kernel_size, 1), 0))))
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(B, 1, L)`` -> logits ``(B, N)`` and the 6 feature maps (post-activation, then the logits map)."""
        batch, channels, length = x.shape
        if length % self.period:  # reflect-pad to a whole number of periods, as published
            pad = self.period - length % self.period
            x = F.pad(x, (0, pad), mode="reflect")
            length += pad
        x = x.view(batch, channels, length // self.period, self.period)
        feature_maps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            feature_maps.append(x)
        x = self.conv_post(x)
        feature_maps.append(x)
        return torch.flatten(x, 1, -1), feature_maps


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator: grouped strided 1-D convs on the (possibly average-pooled) waveform."""

    def __init__(self, use_spectral_norm: bool = False, width: float = 1.0) -> None:
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        c = [_scaled(n, width) for n in (128, 128, 256, 512, 1024, 1024, 1024)]
        # (in, out, kernel, stride, groups, padding), as published
        layers = [(1, c[0], 15, 1, 1, 7), (c[0], c[1], 41, 2, 4, 20), (c[1], c[2], 41, 2, 16, 20),
                  (c[2], c[3], 41, 4, 16, 20), (c[3], c[4], 41, 4, 16, 20), (c[4], c[5], 41, 1, 16, 20),
                  (c[5], c[6], 5, 1, 1, 2)]
        self.convs = nn.ModuleList([norm(nn.Conv1d(i, o, k, s, groups=g, padding=p)) for i, o, k, s, g, p in layers])
        self.conv_post = norm(nn.Conv1d(c[6], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(B, 1, L)`` -> logits ``(B, N)`` and the 8 feature maps."""
        feature_maps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            feature_maps.append(x)
        x = self.conv_post(x)
        feature_maps.append(x)
        return torch.flatten(x, 1, -1), feature_maps


DiscriminatorOutput = Tuple[List[torch.Tensor], List[torch.Tensor], List[List[torch.Tensor]], List[List[torch.Tensor]]]


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11 as published)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList([PeriodDiscriminator(int(p), width=width) for p in periods])

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> DiscriminatorOutput:
        """``real``, ``fake`` ``(B, 1, L)`` -> (real logits, fake logits, real feature maps, fake feature maps),
        one entry per period."""
        return _run_pairs(self.discriminators, [(real, fake)] * len(self.discriminators))


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` :class:`ScaleDiscriminator` on the raw waveform then successive x2 average-pooled ones.

    The first (raw-waveform) scale uses spectral norm, the others weight norm, as published.
    """

    def __init__(self, num_scales: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList([ScaleDiscriminator(use_spectral_norm=(i == 0), width=width)
                                             for i in range(num_scales)])
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> DiscriminatorOutput:
        pairs = []
        for i in range(len(self.discriminators)):
            if i > 0:
                real, fake = self.pool(real), self.pool(fake)
            pairs.append((real, fake))
        return _run_pairs(self.discriminators, pairs)


def _run_pairs(
    discriminators: nn.ModuleList, pairs: Sequence[Tuple[torch.Tensor, torch.Tensor]]
) -> DiscriminatorOutput:
    real_logits, fake_logits, real_maps, fake_maps = [], [], [], []
    for discriminator, (real, fake) in zip(discriminators, pairs):
        # One pass over real and fake together: half the kernel launches, same result (no batch statistics).
        logits, maps = discriminator(torch.cat([real, fake], dim=0))
        batch = real.shape[0]
        real_logits.append(logits[:batch])
        fake_logits.append(logits[batch:])
        real_maps.append([m[:batch] for m in maps])
        fake_maps.append([m[batch:] for m in maps])
    return real_logits, fake_logits, real_maps, fake_maps


class HiFiGANDiscriminator(nn.Module):
    """MPD + MSD as one module (one optimiser); ``forward(real, fake)`` returns ``{"mpd": ..., "msd": ...}``,
    each a :data:`DiscriminatorOutput`.

    ``width`` scales every discriminator's channels (1.0: published; < 1 for CPU-sized runs).
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), num_scales: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, width)
        self.msd = MultiScaleDiscriminator(num_scales, width)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> dict:
        return {"mpd": self.mpd(real, fake), "msd": self.msd(real, fake)}
