"""The VQ-VAE of Chorowski et al. (2019) / seed 004: conv encoder, VQ bottleneck, speaker decoder.

Features (e.g. 39-dim MFCC + deltas at 100 Hz) are encoded to ``code_dim`` vectors at half the frame
rate (20 ms), quantised by a ``VectorQuantizer`` (any variant), jittered in training, and decoded to
``out_dim`` normalised log-mel frames at the input frame rate, conditioned on a speaker embedding.
Voice conversion decodes a source utterance's codes with a target speaker's id::

    codes = model.quantize(model.encode(source_features)).quantized
    converted = model.decode(codes, target_speaker_ids, source_features.shape[-1])

Frame-rate rule: ``T_code = ceil(T / 2)``. The stride-2 convolution (kernel 4) pads one frame on the
left and two on the right, so code frame ``j`` sees input frames ``2j-1 .. 2j+2`` and every input
frame, the last of an odd-length input included, is covered by a code. The decoder upsamples by 2
(``2 * T_code >= T``) and crops to exactly ``T`` frames.

Seed 004 quirks deliberately NOT reproduced: the residual stack's layers have independent weights
(the seed re-used one layer), the speaker table is a persistent ``nn.Embedding`` (the seed created a
fresh random table every forward, so nothing was learned), and the VQ quantises per-frame vectors.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from voiceswap.nets.speaker import ReferenceEncoder, Speakers, check_speaker_conditioning, speaker_vectors
from voiceswap.nets.vq import TimeJitter, VectorQuantizer, VQOutput

# The encoder halves the frame rate once; the decoder upsamples by the same factor.
DOWNSAMPLING = 2


def code_frames(num_frames: int) -> int:
    """Number of code frames for ``num_frames`` input frames: ``ceil(num_frames / 2)``."""
    return (num_frames + DOWNSAMPLING - 1) // DOWNSAMPLING


def code_mask_from_frame_mask(mask: torch.Tensor) -> torch.Tensor:
    """Frame mask ``(B, T)`` -> code mask ``(B, ceil(T/2))``: code ``j`` is real iff frame ``2j`` is."""
    return mask[:, ::DOWNSAMPLING]


class ResidualLayer(nn.Module):
    """``x + conv1x1(ReLU(conv3(ReLU(x))))`` on ``(B, C, T)``, length preserving."""

    def __init__(self, channels: int, residual_channels: int) -> None:
        super().__init__()
        self.conv3 = nn.Conv1d(channels, residual_channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv1d(residual_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


class ResidualStack(nn.Module):
    """``num_layers`` residual layers with independent weights, then a ReLU; ``(B, C, T)``.

    An optional per-layer additive condition ``(B, C)`` (the speaker) is added before every layer.
    """

    def __init__(self, channels: int, residual_channels: int, num_layers: int) -> None:
        super().__init__()
        # Independent layers: seed 004 appended the same module object num_layers times (shared weights).
        self.layers = nn.ModuleList(ResidualLayer(channels, residual_channels) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, conditions: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            if conditions is not None:
                x = x + conditions[index].unsqueeze(-1)
            x = layer(x)
        return F.relu(x)


class ConvEncoder(nn.Module):
    """Chorowski-style encoder: ``(B, in_dim, T)`` -> ``(B, hidden_dim, ceil(T/2))``."""

    def __init__(self, in_dim: int, hidden_dim: int, residual_dim: int, num_residual_layers: int) -> None:
        super().__init__()
        self.input_conv = nn.Conv1d(in_dim, hidden_dim, kernel_size=3, padding=1)
        self.residual_conv = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1)
        # Padding applied by hand (1 left, 2 right) so that the output has ceil(T/2) frames.
        self.downsampling_conv = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=4, stride=DOWNSAMPLING)
        self.post_downsampling_convs = nn.ModuleList(
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1) for _ in range(2)
        )
        self.residual_stack = ResidualStack(hidden_dim, residual_dim, num_residual_layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.input_conv(features))
        x = x + F.relu(self.residual_conv(x))
        x = F.relu(self.downsampling_conv(F.pad(x, (1, 2))))
        for conv in self.post_downsampling_convs:
            x = x + F.relu(conv(x))
        return self.residual_stack(x)


class VQVAE(nn.Module):
    """VQ-VAE for voice conversion; see the module docstring.

    Args:
        in_dim: input feature dimension (39 = 13 MFCC + deltas + delta-deltas).
        out_dim: output dimension (80 normalised log-mel bins).
        num_speakers: size of the speaker embedding table.
        hidden_dim: channels of the encoder and decoder (768 in seed 004; 64-128 for a CPU test).
        code_dim: dimension of the codes (the VQ's D).
        codebook_size: number of codes K.
        speaker_dim: dimension of the learned speaker embedding.
        jitter_p: time-jitter probability on the quantised vectors (training only; 0 disables).
        residual_dim: hidden channels inside the residual layers (default: hidden_dim).
        num_residual_layers: layers of the encoder's and decoder's residual stacks.
        speaker_conditioning: ``table`` (a learned vector per train speaker) or ``reference`` (any-to-any:
            a :class:`~voiceswap.nets.speaker.ReferenceEncoder` of ``reference_dim`` features with
            ``reference_channels`` channels makes the vector from a reference utterance).
        vq_variant, commitment_cost, ema_decay, ema_epsilon, soft_em_beta, soft_em_gamma,
        dead_code_revival, revival_patience: passed to ``VectorQuantizer``.
    """

    def __init__(
        self,
        in_dim: int = 39,
        out_dim: int = 80,
        num_speakers: int = 1,
        hidden_dim: int = 768,
        code_dim: int = 64,
        codebook_size: int = 44,
        speaker_dim: int = 64,
        jitter_p: float = 0.12,
        vq_variant: str = "ema",
        commitment_cost: float = 0.25,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        soft_em_beta: float = 0.01,
        soft_em_gamma: float = 0.01,
        dead_code_revival: bool = False,
        revival_patience: int = 100,
        residual_dim: Optional[int] = None,
        num_residual_layers: int = 2,
        speaker_conditioning: str = "table",
        reference_dim: int = 80,
        reference_channels: int = 128,
    ) -> None:
        super().__init__()
        if num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1, got {num_speakers}")
        residual_dim = residual_dim or hidden_dim
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.num_speakers = num_speakers
        self.code_dim = code_dim

        self.encoder = ConvEncoder(in_dim, hidden_dim, residual_dim, num_residual_layers)
        self.pre_vq_conv = nn.Conv1d(hidden_dim, code_dim, kernel_size=3, padding=1)
        self.vq = VectorQuantizer(
            codebook_size=codebook_size,
            code_dim=code_dim,
            variant=vq_variant,
            commitment_cost=commitment_cost,
            ema_decay=ema_decay,
            ema_epsilon=ema_epsilon,
            soft_em_beta=soft_em_beta,
            soft_em_gamma=soft_em_gamma,
            dead_code_revival=dead_code_revival,
            revival_patience=revival_patience,
        )
        self.jitter = TimeJitter(jitter_p)

        self.decoder_input_conv = nn.Conv1d(code_dim, hidden_dim, kernel_size=3, padding=1)
        self.speaker_dim = speaker_dim
        self.speaker_conditioning = check_speaker_conditioning(speaker_conditioning)
        # A persistent, learned table (seed 004 re-created it every forward pass), or the reference encoder.
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim) if speaker_conditioning == "table" else None
        self.reference_encoder = (ReferenceEncoder(reference_dim, speaker_dim, reference_channels)
                                  if speaker_conditioning == "reference" else None)
        # The speaker is projected and added (broadcast over time) after upsampling and before every
        # residual layer, so that every decoder stage can use it.
        self.speaker_projections = nn.ModuleList(
            nn.Linear(speaker_dim, hidden_dim) for _ in range(num_residual_layers + 1)
        )
        self.decoder_residual_stack = ResidualStack(hidden_dim, residual_dim, num_residual_layers)
        # Seed 004 ends with stride-1 transposed convs; with stride 1 they are plain convs.
        self.output_layers = nn.Sequential(
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden_dim, out_dim, kernel_size=3, padding=1),
        )

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``(B, in_dim, T)`` -> continuous codes ``z_e (B, code_dim, ceil(T/2))``."""
        if features.dim() != 3 or features.shape[1] != self.in_dim:
            raise ValueError(f"expected features (B, {self.in_dim}, T), got {tuple(features.shape)}")
        return self.pre_vq_conv(self.encoder(features))

    def quantize(self, z_e: torch.Tensor, mask: Optional[torch.Tensor] = None) -> VQOutput:
        """Quantise ``z_e (B, code_dim, T_code)``; ``mask (B, T_code)`` bool, True = real code frame."""
        return self.vq(z_e, mask)

    def decode(
        self,
        quantized: torch.Tensor,
        speaker_ids: Speakers,
        num_frames: int,
        code_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Codes ``(B, code_dim, T_code)`` + speakers -> ``(B, out_dim, num_frames)``.

        Speakers are ids ``(B,)``, reference features or vectors (voiceswap/nets/speaker.py).

        Jitter (training mode only) is applied here, to the quantised vectors; ``code_mask`` keeps it
        from copying padded codes into real ones. The upsampled sequence (``2 * T_code`` frames) is
        cropped to ``num_frames``, or edge-padded if ``num_frames`` is longer.
        """
        x = self.jitter(quantized, code_mask)
        x = self.decoder_input_conv(x)
        x = F.interpolate(x, scale_factor=DOWNSAMPLING, mode="nearest")
        upsampled_frames = x.shape[-1]
        if upsampled_frames >= num_frames:
            x = x[..., :num_frames]
        else:
            x = F.pad(x, (0, num_frames - upsampled_frames), mode="replicate")
        speaker = speaker_vectors(speaker_ids, self.speaker_embedding, self.reference_encoder, self.speaker_dim,
                                  x.device)  # (B, speaker_dim)
        conditions = [projection(speaker) for projection in self.speaker_projections]
        x = x + conditions[0].unsqueeze(-1)
        x = self.decoder_residual_stack(x, conditions[1:])
        return self.output_layers(x)

    def forward(
        self,
        features: torch.Tensor,
        speaker_ids: Speakers,
        mask: Optional[torch.Tensor] = None,
    ) -> Dict[str, Union[torch.Tensor, VQOutput]]:
        """Reconstruct ``features (B, in_dim, T)`` as ``(B, out_dim, T)`` with speakers ``(B,)``.

        ``mask (B, T)`` bool (True = real frame, right padding) keeps padded frames out of the VQ's
        statistics; mask the reconstruction loss with it too. Returns a dict with ``reconstruction``
        ``(B, out_dim, T)``, ``vq`` (``VQOutput``) and ``z_e`` ``(B, code_dim, ceil(T/2))``.
        """
        num_frames = features.shape[-1]
        code_mask = None if mask is None else code_mask_from_frame_mask(mask)
        z_e = self.encode(features)
        vq_output = self.quantize(z_e, code_mask)
        reconstruction = self.decode(vq_output.quantized, speaker_ids, num_frames, code_mask)
        return {"reconstruction": reconstruction, "vq": vq_output, "z_e": z_e}

    @torch.no_grad()
    def convert(self, features: torch.Tensor, target_speaker_ids: Speakers) -> torch.Tensor:
        """Voice conversion: source ``(B, in_dim, T)`` -> ``(B, out_dim, T)`` in the target voices.

        Runs as the module's mode says; call ``.eval()`` first so that neither jitter nor the VQ's
        training-time updates apply.
        """
        codes = self.quantize(self.encode(features)).quantized
        return self.decode(codes, target_speaker_ids, features.shape[-1])
