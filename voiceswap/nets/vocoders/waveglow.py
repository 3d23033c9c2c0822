"""WaveGlow (Prenger et al. 2019) as seed 001 extends it: FiLM, weight norm, speaker global condition, VQ codes.

A normalising flow from waveforms to Gaussian noise, conditioned on a local condition (a log-mel,
or the codes of a waveform VQ encoder) and optionally on a global one (a speaker embedding).

**Flow.** The waveform ``(B, T)`` is squeezed to ``(B, n_group, T / n_group)`` (``n_group``
consecutive samples become the channels of one step). ``n_flows`` flows follow, each an invertible
1x1 convolution, an affine coupling layer and, optionally, FiLM. Every ``n_early_every`` flows
(not before the first) ``n_early_size`` channels leave the flow early and are part of ``z``
(``n_group`` 8 -> 6 -> 4 with 12 flows, 2 early every 4, as the seed and NVIDIA's WaveGlow).

* :class:`Invertible1x1Conv`: ``y = W x`` with ``W`` initialised to a random rotation (orthogonal,
  ``det W = +1``); its log-determinant ``T' * log|det W|`` is computed in float64 (``slogdet``),
  so it stays exact under fp16 autocast. Inference uses ``W^-1``, computed once (in float64) and
  cached until the weight changes (an optimiser step, a checkpoint or EMA load).
* :class:`AffineCoupling`: the first half ``x_a`` of the channels stays; a WaveNet-like :class:`WN`
  of ``x_a`` and the conditions gives ``(log s, t)``, and ``x_b <- exp(log s) * x_b + t``; the
  log-det is ``sum log s``. WN: a 1x1 start conv, ``n_layers`` dilated convs (kernel 3, dilation
  ``2^i``) with tanh * sigmoid gating, to which the local condition (1x1 conv) and the global one
  (1x1 conv of the speaker embedding, broadcast over time) are added, residual and skip 1x1 convs,
  and a zero-initialised 1x1 end conv (every coupling starts as the identity).
* :class:`FiLM` (optional, after each coupling): ``(log gamma, beta) = leaky(conv_k3(local)) +
  leaky(conv_1x1(global))``; ``x <- x * exp(log gamma) + beta``; ``log gamma`` is added to the log-det.
  Both branches are zero-initialised, so FiLM too starts as the identity (the seed zero-initialises
  the local branch; doing the same for the speaker branch keeps a fresh model a plain WaveGlow).

**Weight norm** (``weight_norm=True``) is on the WN's start, dilated, residual/skip and condition
convolutions: all kernels except the conditioner (mel upsampler, VQ encoder/decoder), FiLM and the
WN end layers, as the seed. (The zero-initialised layers could not be weight-normalised anyway:
``g * v / |v|`` of a zero ``v`` is undefined.) The invertible 1x1 convolutions are not normalised.

**Loss** (:func:`flow_nll`): ``[sum z^2 / (2 sigma^2) - sum log s - sum log gamma - sum log|det W|] /
numel(z)`` with ``sigma = 1`` (the seed's, without the constant ``log(2 pi) / 2``); an optional
mask leaves padded steps out. **Inference** (:meth:`WaveGlow.infer`) draws ``z ~ N(0, sigma^2)``
(sigma 0.9 by default) and runs the flows backwards; given the ``z`` of a forward pass it
reconstructs that waveform (``infer(forward(x).z) == x`` to float tolerance).

**Local conditions** come at the flow's step rate ``T / n_group`` (``cond_channels`` channels):

* :class:`MelUpsampler`: a transposed convolution from the frame rate to the step rate (kernel
  ``2 * hop / n_group``, stride ``hop / n_group``), cropped so that frame ``f``'s window is centred
  on sample ``f * hop + hop / 2`` as our features are. With ``cond_channels = n_mels * n_group`` it is
  exactly NVIDIA's upsampling to the sample rate (kernel ``2 * hop``, stride ``hop``) followed by the
  squeeze, reparametrised; fewer channels make it cheaper.
* :class:`WaveformVQEncoder` + :class:`CodeUpsampler` (``waveglow_vq``, the seed's VQ conditioner):
  two strided convs (kernel 32, stride 8: /64) and a dense layer to 144 dims, the soft-EM VQ of
  :mod:`voiceswap.nets.vq`, and two transposed convs back to the sample rate, then the squeeze.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from voiceswap.nets.vq import VectorQuantizer, VQOutput

#: FiLM's activation slope: tf.nn.leaky_relu's default alpha, which the TensorFlow seed calls (unverified).
FILM_LEAKY_SLOPE = 0.2


class WaveGlowConfigError(ValueError):
    """Flow sizes that cannot work; the one-line message names the keys and what to change."""


def check_flow_sizes(n_group: int, n_flows: int, n_early_every: int, n_early_size: int,
                     hop_length: Optional[int] = None, where: str = "model") -> None:
    """Raise :class:`WaveGlowConfigError` (one line) for sizes the flow cannot have.

    ``n_group`` even (a coupling splits the channels in halves), ``hop_length`` a multiple of it (a
    frame is a whole number of flow steps), and the early outputs must leave at least 2 channels
    (an even number) for the last flow.
    """
    if n_group < 2 or n_group % 2:
        raise WaveGlowConfigError(f"{where}.n_group is {n_group}: it must be even and >= 2 (each coupling splits the "
                                  "channels in two halves); use e.g. 8")
    if hop_length is not None and hop_length % n_group:
        divisors = [d for d in range(2, min(hop_length, 64) + 1, 2) if hop_length % d == 0]
        raise WaveGlowConfigError(f"{where}.n_group {n_group} does not divide the features' hop_length {hop_length}: "
                                  "a frame must be a whole number of flow steps; use an even divisor of the hop "
                                  f"({', '.join(map(str, divisors)) or 'none: the hop is odd'})")
    if n_flows < 1:
        raise WaveGlowConfigError(f"{where}.n_flows is {n_flows}: it must be >= 1")
    if n_early_every < 1:
        raise WaveGlowConfigError(f"{where}.n_early_every is {n_early_every}: it must be >= 1")
    if n_early_size < 0 or n_early_size % 2:
        raise WaveGlowConfigError(f"{where}.n_early_size is {n_early_size}: it must be even and >= 0 (the channels "
                                  "left after an early output are split in halves)")
    num_early = (n_flows - 1) // n_early_every
    remaining = n_group - num_early * n_early_size
    if remaining < 2:
        raise WaveGlowConfigError(
            f"{where}: {num_early} early outputs of {n_early_size} channels (n_flows {n_flows}, n_early_every "
            f"{n_early_every}) leave {remaining} of n_group {n_group} channels for the last flow, need >= 2: "
            "raise n_group or n_early_every, or lower n_early_size")


def flow_channels(n_group: int, n_flows: int, n_early_every: int, n_early_size: int) -> List[int]:
    """The number of channels each flow works on (after the early outputs before it)."""
    channels, remaining = [], n_group
    for k in range(n_flows):
        if k % n_early_every == 0 and k > 0:
            remaining -= n_early_size
        channels.append(remaining)
    return channels


def squeeze(audio: torch.Tensor, n_group: int) -> torch.Tensor:
    """``(B, T)`` -> ``(B, n_group, T / n_group)``: step ``t`` holds samples ``t * n_group .. + n_group - 1``."""
    batch, samples = audio.shape
    if samples % n_group:
        raise ValueError(f"{samples} samples are not a multiple of n_group {n_group}: pad or crop the audio")
    return audio.reshape(batch, samples // n_group, n_group).transpose(1, 2)


def unsqueeze(steps: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`: ``(B, n_group, T')`` -> ``(B, T' * n_group)``."""
    return steps.transpose(1, 2).reshape(steps.shape[0], -1)


def squeeze_condition(cond: torch.Tensor, n_group: int) -> torch.Tensor:
    """A condition at the sample rate ``(B, C, T)`` -> ``(B, C * n_group, T / n_group)`` (NVIDIA's layout)."""
    batch, channels, samples = cond.shape
    if samples % n_group:
        raise ValueError(f"a condition of {samples} samples is not a multiple of n_group {n_group}")
    steps = cond.reshape(batch, channels, samples // n_group, n_group)
    return steps.permute(0, 1, 3, 2).reshape(batch, channels * n_group, samples // n_group)


def _maybe_weight_norm(module: nn.Module, enabled: bool) -> nn.Module:
    return _weight_norm(module) if enabled else module


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrisation in ``module`` into a plain weight, in place; returns ``module``."""
    for submodule in module.modules():
        if parametrize.is_parametrized(submodule, "weight"):
            parametrize.remove_parametrizations(submodule, "weight", leave_parametrized=True)
    return module


class Invertible1x1Conv(nn.Module):
    """``y = W x`` over the channels of ``(B, C, T')``; ``W`` a random rotation at initialisation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        weight = torch.linalg.qr(torch.randn(channels, channels))[0]
        if torch.det(weight) < 0:  # a rotation (det +1), so log|det W| starts at 0 and W stays away from det 0
            weight[:, 0] = -weight[:, 0]
        self.weight = nn.Parameter(weight)
        self._inverse: Optional[Tuple[Tuple[int, int, torch.device, torch.dtype], torch.Tensor]] = None

    def log_det(self) -> torch.Tensor:
        """``log|det W|`` as a float64 scalar, outside autocast (fp16 would lose it)."""
        with torch.autocast(device_type=self.weight.device.type, enabled=False):
            return torch.linalg.slogdet(self.weight.double())[1]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(W x, log|det W|)``: the log-det per step (float64 scalar); multiply by the steps for the total."""
        return F.conv1d(x, self.weight.to(x.dtype).unsqueeze(-1)), self.log_det()

    def inverse_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """``W^-1`` (computed in float64), cached until the weight changes (its version or storage)."""
        weight = self.weight
        key = (weight._version, weight.data_ptr(), weight.device, dtype)
        if self._inverse is None or self._inverse[0] != key:
            with torch.no_grad(), torch.autocast(device_type=weight.device.type, enabled=False):
                self._inverse = (key, torch.linalg.inv(weight.detach().double()).to(dtype))
        return self._inverse[1]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv1d(y, self.inverse_weight(y.dtype).unsqueeze(-1))


class WN(nn.Module):
    """The coupling network: ``x_a (B, C_in, T')``, local ``(B, C_cond, T')``, global ``(B, G)`` -> ``(log s, t)``.

    ``(log s, t)`` each have ``out_channels`` channels; the end conv is zero-initialised.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, n_layers: int = 8,
                 n_channels: int = 256, kernel_size: int = 3, global_channels: int = 0,
                 use_weight_norm: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise WaveGlowConfigError(f"model.wn_kernel_size is {kernel_size}: it must be odd "
                                      "(same-length dilated convs)")
        if n_layers < 1 or n_channels < 1:
            raise WaveGlowConfigError(f"model.wn_layers ({n_layers}) and model.wn_channels ({n_channels}) must be >= 1")
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.start = _maybe_weight_norm(nn.Conv1d(in_channels, n_channels, 1), use_weight_norm)
        # One 1x1 conv for every layer's local condition (NVIDIA's layout): one matmul instead of n_layers.
        self.cond_layer = _maybe_weight_norm(nn.Conv1d(cond_channels, 2 * n_channels * n_layers, 1), use_weight_norm)
        self.global_layer = (_maybe_weight_norm(nn.Conv1d(global_channels, 2 * n_channels * n_layers, 1),
                                                use_weight_norm) if global_channels else None)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = 2 ** i
            self.in_layers.append(_maybe_weight_norm(
                nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation,
                          padding=(kernel_size * dilation - dilation) // 2), use_weight_norm))
            # The last layer has no residual output (nothing follows it), only the skip.
            res_skip = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(_maybe_weight_norm(nn.Conv1d(n_channels, res_skip, 1), use_weight_norm))
        self.end = nn.Conv1d(n_channels, 2 * out_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.start(x)
        conditions = self.cond_layer(cond)
        if self.global_layer is not None:
            if speaker is None:
                raise ValueError("this WaveGlow has a global (speaker) condition: pass the speaker embedding")
            conditions = conditions + self.global_layer(speaker.unsqueeze(-1))
        skip = torch.zeros_like(h)
        width = 2 * self.n_channels
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            pre = in_layer(h) + conditions[:, i * width : (i + 1) * width]
            acts = torch.tanh(pre[:, : self.n_channels]) * torch.sigmoid(pre[:, self.n_channels :])
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                h = h + res_skip[:, : self.n_channels]
                skip = skip + res_skip[:, self.n_channels :]
            else:
                skip = skip + res_skip
        log_s, t = self.end(skip).chunk(2, dim=1)
        return log_s, t


class AffineCoupling(nn.Module):
    """``x = (x_a, x_b)`` -> ``(x_a, exp(log s) * x_b + t)`` with ``(log s, t) = WN(x_a, conditions)``."""

    def __init__(self, channels: int, cond_channels: int, n_layers: int, n_channels: int, kernel_size: int,
                 global_channels: int, use_weight_norm: bool) -> None:
        super().__init__()
        self.half = channels // 2
        self.wn = WN(self.half, channels - self.half, cond_channels, n_layers, n_channels, kernel_size,
                     global_channels, use_weight_norm)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(y, log s)``; the log-det contribution is ``log s`` summed over channels and steps."""
        x_a, x_b = x[:, : self.half], x[:, self.half :]
        log_s, t = self.wn(x_a, cond, speaker)
        return torch.cat([x_a, torch.exp(log_s) * x_b + t], dim=1), log_s

    def inverse(self, y: torch.Tensor, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None) -> torch.Tensor:
        y_a, y_b = y[:, : self.half], y[:, self.half :]
        log_s, t = self.wn(y_a, cond, speaker)
        return torch.cat([y_a, (y_b - t) * torch.exp(-log_s)], dim=1)


class FiLM(nn.Module):
    """``x <- x * exp(log gamma) + beta`` with ``(log gamma, beta)`` from the local (and global) condition."""

    def __init__(self, channels: int, cond_channels: int, global_channels: int = 0, kernel_size: int = 3,
                 slope: float = FILM_LEAKY_SLOPE) -> None:
        super().__init__()
        self.slope = slope
        self.local = nn.Conv1d(cond_channels, 2 * channels, kernel_size, padding=kernel_size // 2)
        self.global_ = nn.Conv1d(global_channels, 2 * channels, 1) if global_channels else None
        for layer in (self.local, self.global_):
            if layer is not None:  # zero-initialised: a fresh FiLM is the identity
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def parameters_of(self, cond: torch.Tensor, speaker: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        film = F.leaky_relu(self.local(cond), self.slope)
        if self.global_ is not None:
            if speaker is None:
                raise ValueError("this FiLM has a global (speaker) condition: pass the speaker embedding")
            film = film + F.leaky_relu(self.global_(speaker.unsqueeze(-1)), self.slope)
        log_gamma, beta = film.chunk(2, dim=1)
        return log_gamma, beta

    def forward(self, x: torch.Tensor, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        log_gamma, beta = self.parameters_of(cond, speaker)
        return x * torch.exp(log_gamma) + beta, log_gamma

    def inverse(self, y: torch.Tensor, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None) -> torch.Tensor:
        log_gamma, beta = self.parameters_of(cond, speaker)
        return (y - beta) * torch.exp(-log_gamma)


class FlowOutput(NamedTuple):
    """What :meth:`WaveGlow.forward` returns.

    z:            ``(B, n_group, T')`` the early outputs in order, then the last flow's channels.
    log_det_steps: ``(B, T')`` ``sum log s + sum log gamma`` over flows and channels, per step.
    conv_log_det: float64 scalar, ``sum_k log|det W_k|``: the 1x1 convs' log-det of one step.
    """

    z: torch.Tensor
    log_det_steps: torch.Tensor
    conv_log_det: torch.Tensor


def flow_nll(output: FlowOutput, mask: Optional[torch.Tensor] = None, sigma: float = 1.0) -> torch.Tensor:
    """The seed's loss: negative log-likelihood per dimension of ``z`` (float32 scalar, float64 inside).

    ``mask (B, T')`` (True: a real step) leaves padded steps out of every term and of the count.
    """
    z = output.z
    if mask is None:
        mask = torch.ones(z.shape[0], z.shape[2], dtype=torch.bool, device=z.device)
    weights = mask.to(torch.float64)
    steps = weights.sum()
    quadratic = (z.double().pow(2).sum(dim=1) * weights).sum() / (2.0 * sigma ** 2)
    log_det = (output.log_det_steps.double() * weights).sum() + output.conv_log_det * steps
    return ((quadratic - log_det) / (steps * z.shape[1]).clamp_min(1.0)).float()


class WaveGlow(nn.Module):
    """The flow: waveform ``(B, T)`` + local condition ``(B, cond_channels, T / n_group)`` (+ speaker) <-> ``z``.

    ``global_channels`` > 0 gives every WN layer and every FiLM a global condition (the speaker
    embedding, ``(B, global_channels)``).
    """

    def __init__(self, cond_channels: int, n_flows: int = 12, n_group: int = 8, n_early_every: int = 4,
                 n_early_size: int = 2, wn_layers: int = 8, wn_channels: int = 256, wn_kernel_size: int = 3,
                 global_channels: int = 0, film: bool = False, weight_norm: bool = True) -> None:
        super().__init__()
        check_flow_sizes(n_group, n_flows, n_early_every, n_early_size)
        self.n_group = n_group
        self.n_flows = n_flows
        self.n_early_every = n_early_every
        self.n_early_size = n_early_size
        self.global_channels = global_channels
        self.channels = flow_channels(n_group, n_flows, n_early_every, n_early_size)
        self.convinv = nn.ModuleList(Invertible1x1Conv(c) for c in self.channels)
        self.couplings = nn.ModuleList(
            AffineCoupling(c, cond_channels, wn_layers, wn_channels, wn_kernel_size, global_channels, weight_norm)
            for c in self.channels)
        self.films = nn.ModuleList(FiLM(c, cond_channels, global_channels) for c in self.channels) if film else None

    def _is_early(self, k: int) -> bool:
        return k % self.n_early_every == 0 and k > 0

    def forward(self, audio: torch.Tensor, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None) -> FlowOutput:
        """Waveform ``(B, T)`` -> :class:`FlowOutput`; ``cond`` at the step rate ``T / n_group``."""
        x = squeeze(audio, self.n_group)
        if cond.shape[-1] != x.shape[-1]:
            raise ValueError(f"the condition has {cond.shape[-1]} steps, the audio {x.shape[-1]} "
                             f"({audio.shape[-1]} samples / n_group {self.n_group})")
        outputs: List[torch.Tensor] = []
        log_det_steps = x.new_zeros(x.shape[0], x.shape[2], dtype=torch.float32)
        conv_log_det = torch.zeros((), dtype=torch.float64, device=x.device)
        for k in range(self.n_flows):
            if self._is_early(k):
                outputs.append(x[:, : self.n_early_size])
                x = x[:, self.n_early_size :]
            x, log_det_w = self.convinv[k](x)
            conv_log_det = conv_log_det + log_det_w
            x, log_s = self.couplings[k](x, cond, speaker)
            log_det_steps = log_det_steps + log_s.float().sum(dim=1)
            if self.films is not None:
                x, log_gamma = self.films[k](x, cond, speaker)
                log_det_steps = log_det_steps + log_gamma.float().sum(dim=1)
        outputs.append(x)
        return FlowOutput(torch.cat(outputs, dim=1), log_det_steps, conv_log_det)

    def infer(self, cond: torch.Tensor, speaker: Optional[torch.Tensor] = None, sigma: float = 0.9,
              z: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Condition ``(B, cond_channels, T')`` -> waveform ``(B, T' * n_group)``.

        ``z`` (``(B, n_group, T')``, e.g. a forward pass's) is inverted as given; without it ``z`` is
        drawn from ``N(0, sigma^2)`` with ``generator`` (a seeded generator makes sampling repeatable).
        """
        batch, steps = cond.shape[0], cond.shape[-1]
        if z is None:
            z = torch.randn(batch, self.n_group, steps, generator=generator, device=cond.device,
                            dtype=cond.dtype) * sigma
        elif z.shape != (batch, self.n_group, steps):
            raise ValueError(f"z must be (B, n_group, T') = {(batch, self.n_group, steps)}, got {tuple(z.shape)}")
        # Slices of z in the order forward() emitted them: the early outputs, then the last flow's channels.
        offset = self.n_group - self.channels[-1]
        x = z[:, offset:]
        for k in reversed(range(self.n_flows)):
            if self.films is not None:
                x = self.films[k].inverse(x, cond, speaker)
            x = self.couplings[k].inverse(x, cond, speaker)
            x = self.convinv[k].inverse(x)
            if self._is_early(k):
                offset -= self.n_early_size
                x = torch.cat([z[:, offset : offset + self.n_early_size], x], dim=1)
        return unsqueeze(x)


class MelUpsampler(nn.Module):
    """Log-mel ``(B, n_mels, T)`` at the frame rate -> ``(B, out_channels, T * hop / n_group)`` at the step rate.

    A transposed conv (kernel ``2 * stride``, stride ``hop / n_group``): frame ``f`` reaches the
    steps of ``2 * hop`` samples centred on sample ``f * hop + hop / 2``, where our features centre it.
    """

    def __init__(self, n_mels: int, hop_length: int, n_group: int, out_channels: Optional[int] = None) -> None:
        super().__init__()
        if hop_length % n_group:
            raise WaveGlowConfigError(f"model.n_group {n_group} does not divide the hop_length {hop_length}")
        self.stride = hop_length // n_group
        self.out_channels = out_channels or n_mels * n_group
        self.upsample = nn.ConvTranspose1d(n_mels, self.out_channels, 2 * self.stride, self.stride)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = mel.shape[-1]
        # The output of frame f spans steps [f * s, f * s + 2s), centred on f * s + s; the frame is
        # centred on step f * s + s / 2: drop the first s / 2 steps, keep T * s.
        start = self.stride // 2
        return self.upsample(mel)[..., start : start + frames * self.stride]


class WaveGlowVocoderNet(nn.Module):
    """The mel-conditioned WaveGlow (``--vocoder waveglow``): :class:`MelUpsampler` + :class:`WaveGlow`."""

    def __init__(self, n_mels: int, hop_length: int, n_flows: int = 12, n_group: int = 8, n_early_every: int = 4,
                 n_early_size: int = 2, wn_layers: int = 8, wn_channels: int = 256, wn_kernel_size: int = 3,
                 cond_channels: Optional[int] = None, film: bool = False, weight_norm: bool = True) -> None:
        super().__init__()
        check_flow_sizes(n_group, n_flows, n_early_every, n_early_size, hop_length)
        self.hparams: Dict[str, Any] = dict(
            n_mels=n_mels, hop_length=hop_length, n_flows=n_flows, n_group=n_group, n_early_every=n_early_every,
            n_early_size=n_early_size, wn_layers=wn_layers, wn_channels=wn_channels, wn_kernel_size=wn_kernel_size,
            cond_channels=cond_channels, film=film, weight_norm=weight_norm)
        self.hop_length = hop_length
        self.upsampler = MelUpsampler(n_mels, hop_length, n_group, cond_channels)
        self.flow = WaveGlow(self.upsampler.out_channels, n_flows, n_group, n_early_every, n_early_size, wn_layers,
                             wn_channels, wn_kernel_size, 0, film, weight_norm)

    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> FlowOutput:
        """``audio (B, T * hop)`` with its log-mel ``(B, n_mels, T)`` -> :class:`FlowOutput`."""
        if audio.shape[-1] != mel.shape[-1] * self.hop_length:
            raise ValueError(f"audio of {audio.shape[-1]} samples for {mel.shape[-1]} mel frames x hop "
                             f"{self.hop_length}: cut the audio at frame boundaries")
        return self.flow(audio, self.upsampler(mel))

    def infer(self, mel: torch.Tensor, sigma: float = 0.9, z: Optional[torch.Tensor] = None,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Log-mel ``(B, n_mels, T)`` -> waveform ``(B, T * hop)``."""
        return self.flow.infer(self.upsampler(mel), None, sigma, z, generator)


class WaveGlowVocoder(nn.Module):
    """A trained :class:`WaveGlowVocoderNet` as the recipe's vocoder: ``(B, n_mels, T)`` -> ``(B, T * hop)``.

    Works on a copy with weight norm folded into plain weights (rebuilt from ``hparams``: a
    parametrised module's class is shared by its deep copies), in eval mode, without gradients.
    Each call draws ``z`` from a generator seeded with ``seed``, so vocoding is repeatable.
    """

    def __init__(self, net: WaveGlowVocoderNet, sigma: float = 0.9, seed: int = 0) -> None:
        super().__init__()
        copied = WaveGlowVocoderNet(**net.hparams)
        copied.load_state_dict(net.state_dict())
        first = next(net.parameters())
        self.net = remove_weight_norm(copied.to(device=first.device, dtype=first.dtype)).eval()
        self.hop_length = net.hop_length
        self.sigma = sigma
        self.seed = seed

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=log_mel.device).manual_seed(self.seed)
        return self.net.infer(log_mel.to(next(self.net.parameters()).dtype), self.sigma, generator=generator)


class WaveformVQEncoder(nn.Module):
    """Waveform ``(B, T)`` -> ``(B, code_dim, T / prod(strides))``: strided convs (ReLU) and a dense layer.

    The seed: two convs of 256 filters, kernel 32, stride 8 (/64), dense to 144 dims. Each conv is
    padded by ``(kernel - stride) / 2`` a side, so ``T`` a multiple of the strides gives exactly
    ``T / prod(strides)`` codes.
    """

    def __init__(self, channels: int = 256, kernel_size: int = 32, strides: Sequence[int] = (8, 8),
                 code_dim: int = 144) -> None:
        super().__init__()
        for stride in strides:
            if (kernel_size - stride) % 2 or kernel_size < stride:
                raise WaveGlowConfigError(f"model.encoder_kernel_size {kernel_size} and stride {stride}: the kernel "
                                          "must be >= the stride and differ from it by an even number")
        self.stride = math.prod(strides)
        layers: List[nn.Module] = []
        in_channels = 1
        for stride in strides:
            layers += [nn.Conv1d(in_channels, channels, kernel_size, stride, padding=(kernel_size - stride) // 2),
                       nn.ReLU()]
            in_channels = channels
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Conv1d(channels, code_dim, 1)  # a dense layer applied to every code frame

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.shape[-1] % self.stride:
            raise ValueError(f"{audio.shape[-1]} samples are not a multiple of the encoder's stride {self.stride}")
        return self.dense(self.convs(audio.unsqueeze(1)))


class CodeUpsampler(nn.Module):
    """Codes ``(B, code_dim, T_c)`` -> ``(B, out_channels, T_c * prod(strides))`` at the sample rate:
    transposed convs (ReLU between), the seed's "two transposed convs back to the sample rate"."""

    def __init__(self, code_dim: int = 144, channels: int = 256, out_channels: int = 64, kernel_size: int = 32,
                 strides: Sequence[int] = (8, 8)) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        in_channels = code_dim
        for i, stride in enumerate(strides):
            last = i == len(strides) - 1
            layers.append(nn.ConvTranspose1d(in_channels, out_channels if last else channels, kernel_size, stride,
                                             padding=(kernel_size - stride) // 2))
            if not last:
                layers.append(nn.ReLU())
            in_channels = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.layers(codes)


class WaveGlowVQOutput(NamedTuple):
    flow: FlowOutput
    vq: VQOutput


class WaveGlowVQ(nn.Module):
    """The seed's voice-conversion model: waveform VQ encoder (soft-EM VQ) + speaker embedding -> WaveGlow.

    ``forward(audio (B, T), speakers (B,))`` trains encoder, codebook, upsampler, embedding and flow
    jointly (NLL + VQ loss); :meth:`convert` encodes a source and samples with another speaker.
    ``T`` must be a multiple of :attr:`multiple` (the encoder's stride and ``n_group``).
    """

    def __init__(self, num_speakers: int, n_flows: int = 12, n_group: int = 8, n_early_every: int = 4,
                 n_early_size: int = 2, wn_layers: int = 8, wn_channels: int = 256, wn_kernel_size: int = 3,
                 film: bool = True, weight_norm: bool = True, speaker_dim: int = 512,
                 encoder_channels: int = 256, encoder_kernel_size: int = 32, encoder_strides: Sequence[int] = (8, 8),
                 code_dim: int = 144, codebook_size: int = 512, soft_em_beta: float = 0.01,
                 soft_em_gamma: float = 0.01, upsampler_channels: int = 256, cond_channels: int = 64,
                 dead_code_revival: bool = False, revival_patience: int = 100) -> None:
        super().__init__()
        check_flow_sizes(n_group, n_flows, n_early_every, n_early_size)
        if num_speakers < 1:
            raise WaveGlowConfigError(f"waveglow_vq needs at least one speaker, got {num_speakers}")
        self.n_group = n_group
        self.encoder = WaveformVQEncoder(encoder_channels, encoder_kernel_size, encoder_strides, code_dim)
        # dead_code_revival (seed 000's, off in the seed 001): an addition for runs where the soft-EM
        # codebook collapses onto a few codes (see conf/waveglow_vq.yaml).
        self.vq = VectorQuantizer(codebook_size, code_dim, variant="soft_em", soft_em_beta=soft_em_beta,
                                  soft_em_gamma=soft_em_gamma, dead_code_revival=dead_code_revival,
                                  revival_patience=revival_patience)
        self.upsampler = CodeUpsampler(code_dim, upsampler_channels, cond_channels, encoder_kernel_size,
                                       encoder_strides)
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim) if speaker_dim else None
        self.flow = WaveGlow(cond_channels * n_group, n_flows, n_group, n_early_every, n_early_size, wn_layers,
                             wn_channels, wn_kernel_size, speaker_dim, film, weight_norm)
        self.multiple = math.lcm(self.encoder.stride, n_group)

    def quantize(self, audio: torch.Tensor, mask: Optional[torch.Tensor] = None) -> VQOutput:
        """Waveform ``(B, T)`` -> quantised codes (``mask (B, T / stride)``: real code frames).

        (Not called ``encode``: bin/plot.py takes a model's ``encode`` for VQ-VAE's, features ``(B, D, T)``
        -> continuous encodings, and this one reads audio and quantises.)"""
        return self.vq(self.encoder(audio), mask)

    def condition(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantised codes ``(B, code_dim, T_c)`` -> the flow's local condition at the step rate."""
        return squeeze_condition(self.upsampler(codes), self.n_group)

    def speaker(self, speakers: torch.Tensor) -> Optional[torch.Tensor]:
        return self.speaker_embedding(speakers) if self.speaker_embedding is not None else None

    def forward(self, audio: torch.Tensor, speakers: torch.Tensor, code_mask: Optional[torch.Tensor] = None
                ) -> WaveGlowVQOutput:
        vq = self.quantize(audio, code_mask)
        return WaveGlowVQOutput(self.flow(audio, self.condition(vq.quantized), self.speaker(speakers)), vq)

    @torch.no_grad()
    def convert(self, audio: torch.Tensor, speakers: torch.Tensor, sigma: float = 0.9,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Source waveform ``(B, T)`` -> the same codes sampled with ``speakers``' embedding, ``(B, T)``."""
        codes = self.quantize(audio).quantized
        return self.flow.infer(self.condition(codes), self.speaker(speakers), sigma, generator=generator)
