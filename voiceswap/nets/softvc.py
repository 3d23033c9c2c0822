"""Soft-VC (seed 002): soft content units and the autoregressive acoustic model, generalised to many speakers.

Two networks, both on batch-first tensors:

* :class:`SoftUnitHead` predicts *soft units* from content features. It projects every frame to a
  ``unit_dim`` vector (the soft unit) and scores it against a table of ``num_units`` unit
  embeddings by cosine similarity divided by a temperature (0.1 in the seed); trained with
  cross-entropy against discrete k-means labels, its projections carry the content of the labels
  without their hard quantisation errors. The seed fine-tunes all of HuBERT under a Linear head;
  we sit on top of whatever content features the recipe provides, so an optional small conv
  context encoder can stand in for HuBERT's context (``num_layers=0`` is the seed's bare head).
* :class:`AcousticModel` maps units (discrete ids or soft vectors, at half the mel frame rate) and
  a target speaker to normalised log-mel frames: PreNet -> conv -> x2 transposed-conv upsampling
  -> 2 convs (the encoder), then an autoregressive LSTM decoder fed with the previous mel frame.
  Teacher-forced in training (:meth:`AcousticModel.forward`), frame by frame from a zero frame at
  inference (:meth:`AcousticModel.generate`); both give the same number of frames.

Frame-rate rule: with ``upsample=True`` the encoder turns ``T_u`` unit frames into ``2 * T_u`` mel
frames; given a target length ``T`` (the mel frames of the utterance, ``N // hop``), every
utterance's encoder output is cropped to ``T`` frames or extended by repeating its last frame, so
teacher-forced and free-running outputs both have exactly ``T`` frames.

Generalisations of the seed (single speaker, unmasked batches):

* a target-speaker embedding is concatenated to every encoder frame before the decoder;
* optionally (``pitch_bins`` > 0) the source's F0 contour, as so-vits-svc conditions on it: log-F0
  relative to the speaker's mean, quantised into ``pitch_bins`` bins over ``[-pitch_range,
  pitch_range]`` (natural-log units; bin 0 is "unvoiced"), whose embedding is added to the encoder
  output at the mel frame rate (:meth:`AcousticModel.pitch_bin`), so that the decoder follows a
  melody instead of inventing a mean one;
* padding is handled exactly: padded frames are zeroed after every layer and InstanceNorm takes
  its statistics over real frames only, so an utterance's output does not depend on what it was
  batched with (the seed normalised over padding too, and the recipe's masked loss would be
  wrong on the frames whose statistics were shifted by padding).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from voiceswap.nets.speaker import ReferenceEncoder, Speakers, check_speaker_conditioning, speaker_vectors

#: The encoder's transposed convolution doubles the frame rate (50 Hz units -> 100 Hz mels).
UPSAMPLING = 2


def masked_instance_norm(x: torch.Tensor, mask: Optional[torch.Tensor], eps: float = 1e-5) -> torch.Tensor:
    """InstanceNorm1d (no affine) over the real frames of ``x (B, C, T)``; ``mask (B, T)`` True on real frames.

    Without a mask it is ``F.instance_norm``. Padded frames come out as zeros.
    """
    if mask is None:
        return F.instance_norm(x, eps=eps)
    weights = mask.unsqueeze(1).to(x.dtype)
    count = weights.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (x * weights).sum(-1, keepdim=True) / count
    variance = ((x - mean).pow(2) * weights).sum(-1, keepdim=True) / count  # biased, as InstanceNorm
    return (x - mean) * torch.rsqrt(variance + eps) * weights


def _zero_padding(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``x (B, C, T)`` with padded frames set to zero (so convolutions see what zero padding would give)."""
    return x if mask is None else x * mask.unsqueeze(1).to(x.dtype)


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_length)`` bool mask, True on real frames."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


class PreNet(nn.Module):
    """Two ``Linear + ReLU + Dropout`` layers on ``(..., in_dim) -> (..., out_dim)`` (Tacotron's PreNet).

    As in the seed, dropout follows ``self.training`` (off at inference; Tacotron 2 keeps it on).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim), nn.ReLU(), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SoftUnitHead(nn.Module):
    """Content features ``(B, T, in_dim)`` -> soft units ``(B, T_u, unit_dim)`` and unit logits ``(B, T_u, num_units)``.

    ``logits = cos(projection, unit_embedding[k]) / temperature`` for each of the ``num_units``
    discrete units (k-means clusters), as in the seed's HuBERT-Soft head. ``num_layers`` > 0 adds
    ``Conv1d(kernel_size) + ReLU + Dropout`` context layers before the projection (0: the seed's
    plain Linear head, right for contextual features such as HuBERT's). ``downsample`` > 1 averages
    groups of that many frames (the last group may be partial): ``T_u = ceil(T / downsample)``, for
    labels at a lower rate than the features (e.g. 50 Hz units from 100 Hz features).
    """

    def __init__(
        self,
        in_dim: int,
        num_units: int = 100,
        unit_dim: int = 256,
        temperature: float = 0.1,
        hidden_dim: int = 256,
        num_layers: int = 0,
        kernel_size: int = 5,
        dropout: float = 0.1,
        downsample: int = 1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that frames stay aligned, got {kernel_size}")
        if downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {downsample}")
        self.num_units = num_units
        self.temperature = temperature
        self.downsample = downsample
        self.context = nn.ModuleList()
        channels = in_dim
        for _ in range(num_layers):
            self.context.append(nn.Conv1d(channels, hidden_dim, kernel_size, padding=kernel_size // 2))
            channels = hidden_dim
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(channels, unit_dim)
        self.unit_embedding = nn.Embedding(num_units, unit_dim)

    def unit_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Frame mask ``(B, T)`` -> unit mask ``(B, ceil(T / downsample))``: unit j is real iff frame
        ``j * downsample`` is."""
        return mask[:, :: self.downsample]

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Soft units ``(B, T_u, unit_dim)`` of ``features (B, T, in_dim)``; padded units are zero."""
        x = _zero_padding(features.transpose(1, 2), mask)
        for conv in self.context:
            x = _zero_padding(self.dropout(F.relu(conv(x))), mask)
        if self.downsample > 1:
            # ceil_mode averages the last, partial group over the frames it has. Padded frames are
            # zero, so a real group that straddles the end of an utterance in a padded batch is
            # averaged over fewer real frames than alone; only that one unit per utterance differs.
            x = F.avg_pool1d(x, self.downsample, self.downsample, ceil_mode=True)
            mask = None if mask is None else self.unit_mask(mask)
        units = self.projection(x.transpose(1, 2))
        if mask is not None:
            units = units * mask.unsqueeze(-1).to(units.dtype)
        return units

    def logits(self, soft_units: torch.Tensor) -> torch.Tensor:
        """``(B, T_u, unit_dim)`` -> ``(B, T_u, num_units)``: cosine similarity to each unit embedding / temperature."""
        # Normalise both sides and take one matmul: F.cosine_similarity with broadcasting would
        # materialise a (B, T_u, num_units, unit_dim) tensor, ~7x slower on CPU.
        units = F.normalize(soft_units, dim=-1, eps=1e-8)
        table = F.normalize(self.unit_embedding.weight, dim=-1, eps=1e-8)
        return units @ table.T / self.temperature


class AcousticEncoder(nn.Module):
    """Units ``(B, T_u)`` ids or ``(B, T_u, in_dim)`` soft units -> ``(B, C, UPSAMPLING * T_u)`` (seed architecture)."""

    def __init__(self, in_dim: int, discrete: bool, num_units: int, embedding_dim: int, prenet_dim: int,
                 channels: int, kernel_size: int, dropout: float, upsample: bool) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that frames stay aligned, got {kernel_size}")
        self.discrete = discrete
        self.num_units = num_units
        self.upsample = upsample
        # The last embedding row is the padding unit (the seed's index 100 for 100 clusters).
        self.embedding = nn.Embedding(num_units + 1, embedding_dim, padding_idx=num_units) if discrete else None
        self.prenet = PreNet(embedding_dim if discrete else in_dim, prenet_dim, prenet_dim, dropout)
        padding = kernel_size // 2
        self.conv_in = nn.Conv1d(prenet_dim, channels, kernel_size, padding=padding)
        # (k4, s2, p1) gives exactly 2 * T_u frames; with upsample=False units are already at the mel rate.
        self.upsampler = nn.ConvTranspose1d(channels, channels, 4, 2, 1) if upsample else None
        self.convs_out = nn.ModuleList([nn.Conv1d(channels, channels, kernel_size, padding=padding) for _ in range(2)])

    @property
    def factor(self) -> int:
        return UPSAMPLING if self.upsample else 1

    def forward(
        self, units: torch.Tensor, unit_mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Returns the encoding ``(B, C, factor * T_u)`` and its frame mask (None when no mask was given)."""
        if self.discrete:
            if units.dim() == 3:  # a (B, T_u, 1) float stream of ids
                units = units.squeeze(-1)
            units = units.round().long() if units.is_floating_point() else units.long()
            if unit_mask is not None:
                units = units.masked_fill(~unit_mask, self.num_units)
            if units.numel() and (units.min() < 0 or units.max() > self.num_units):
                raise ValueError(f"unit ids must be in [0, {self.num_units}) (num_units={self.num_units}), "
                                 f"got ids in [{int(units.min())}, {int(units.max())}]")
            x = self.embedding(units)
        else:
            x = units
        x = _zero_padding(self.prenet(x).transpose(1, 2), unit_mask)
        x = masked_instance_norm(F.relu(self.conv_in(x)), unit_mask)
        mask = unit_mask
        if self.upsampler is not None:
            x = self.upsampler(x)
            mask = None if mask is None else mask.repeat_interleave(UPSAMPLING, dim=1)
            x = _zero_padding(x, mask)
        for conv in self.convs_out:
            x = masked_instance_norm(F.relu(conv(x)), mask)
        return x, mask


class AutoregressiveDecoder(nn.Module):
    """Seed decoder: PreNet(previous mel) ++ condition -> LSTM -> LSTM (+res) -> LSTM (+res) -> Linear."""

    def __init__(self, condition_dim: int, n_mels: int, prenet_dim: int, lstm_dim: int, dropout: float) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.prenet = PreNet(n_mels, prenet_dim, prenet_dim, dropout)
        self.lstm1 = nn.LSTM(condition_dim + prenet_dim, lstm_dim, batch_first=True)
        self.lstm2 = nn.LSTM(lstm_dim, lstm_dim, batch_first=True)
        self.lstm3 = nn.LSTM(lstm_dim, lstm_dim, batch_first=True)
        self.projection = nn.Linear(lstm_dim, n_mels, bias=False)

    def forward(self, condition: torch.Tensor, previous_mels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``condition (B, T, C)``, ``previous_mels (B, T, n_mels)`` (frame t-1 at t)
        -> ``(B, T, n_mels)``."""
        x, _ = self.lstm1(torch.cat([condition, self.prenet(previous_mels)], dim=-1))
        x = x + self.lstm2(x)[0]
        x = x + self.lstm3(x)[0]
        return self.projection(x)

    def generate(self, condition: torch.Tensor) -> torch.Tensor:
        """Free running from a zero frame, one frame at a time: ``(B, T, C) -> (B, T, n_mels)``."""
        batch = condition.shape[0]
        frame = condition.new_zeros(batch, 1, self.n_mels)
        states = [None, None, None]
        frames = []
        for t in range(condition.shape[1]):
            x = torch.cat([condition[:, t : t + 1], self.prenet(frame)], dim=-1)
            x1, states[0] = self.lstm1(x, states[0])
            x2, states[1] = self.lstm2(x1, states[1])
            x = x1 + x2
            x3, states[2] = self.lstm3(x, states[2])
            frame = self.projection(x + x3)
            frames.append(frame)
        if not frames:
            return condition.new_zeros(batch, 0, self.n_mels)
        return torch.cat(frames, dim=1)


class AcousticModel(nn.Module):
    """Soft-VC acoustic model for many speakers: units + speaker -> normalised log-mel ``(B, T, out_dim)``.

    ``in_dim``: the input stream's dim, i.e. the soft-unit dim, or 1 for ``discrete=True`` (ids).
    ``out_dim``: mel bins. ``num_units``: discrete vocabulary (ids 0..num_units-1; ``num_units`` is
    the padding id). ``speaker_dim`` 0 (or ``num_speakers`` <= 1 with ``speaker_dim`` 0) gives the
    seed's single-speaker model. Seed sizes: embedding/prenet 256, channels 512, decoder prenet
    256, LSTM 768 (``conf/softvc.yaml`` has a small CPU configuration). ``pitch_bins`` > 0 adds the
    pitch embedding (``pitch (B, T)`` bins of :meth:`pitch_bin` at the mel rate; 0: no pitch input).
    ``speaker_conditioning``: ``table`` or ``reference`` (any-to-any; voiceswap/nets/speaker.py), whose
    encoder reads ``reference_dim`` features with ``reference_channels`` channels.
    """

    def __init__(
        self,
        in_dim: int = 256,
        out_dim: int = 80,
        num_speakers: int = 1,
        speaker_dim: int = 64,
        discrete: bool = False,
        num_units: int = 100,
        embedding_dim: int = 256,
        prenet_dim: int = 256,
        channels: int = 512,
        kernel_size: int = 5,
        decoder_prenet_dim: int = 256,
        lstm_dim: int = 768,
        dropout: float = 0.5,
        upsample: bool = True,
        pitch_bins: int = 0,
        pitch_range: float = 0.8,
        speaker_conditioning: str = "table",
        reference_dim: int = 80,
        reference_channels: int = 128,
    ) -> None:
        super().__init__()
        if pitch_bins < 0 or pitch_bins == 1 or (pitch_bins and pitch_range <= 0):
            raise ValueError(f"pitch_bins must be 0 (no pitch input) or >= 2 with pitch_range > 0, got pitch_bins "
                             f"{pitch_bins}, pitch_range {pitch_range}")
        if discrete and in_dim != 1:
            raise ValueError(f"discrete units arrive as a stream of ids with dim 1, but in_dim is {in_dim}: "
                             "set model.in_dim=1 (or model.discrete=false for soft units)")
        if speaker_dim > 0 and num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1 with a speaker embedding, got {num_speakers}")
        self.out_dim = out_dim
        self.encoder = AcousticEncoder(in_dim, discrete, num_units, embedding_dim, prenet_dim, channels,
                                       kernel_size, dropout, upsample)
        self.speaker_dim = max(speaker_dim, 0)
        self.speaker_conditioning = check_speaker_conditioning(speaker_conditioning)
        if speaker_conditioning == "reference" and speaker_dim < 1:
            raise ValueError("model.speaker_conditioning: reference needs model.speaker_dim > 0 (the vector it makes)")
        table = speaker_dim > 0 and speaker_conditioning == "table"
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim) if table else None
        self.reference_encoder = (ReferenceEncoder(reference_dim, speaker_dim, reference_channels)
                                  if speaker_conditioning == "reference" else None)
        self.pitch_bins = pitch_bins
        self.pitch_range = pitch_range
        # Row 0: unvoiced; rows 1..pitch_bins: voiced, low to high.
        self.pitch_embedding = nn.Embedding(pitch_bins + 1, channels) if pitch_bins else None
        self.decoder = AutoregressiveDecoder(channels + max(speaker_dim, 0), out_dim, decoder_prenet_dim,
                                             lstm_dim, dropout)

    def pitch_bin(self, relative_log_f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        """Bins ``(B, T)`` long of log-F0 relative to the speaker's mean: 0 where not ``voiced``, else
        1..pitch_bins, uniform over ``[-pitch_range, pitch_range]`` (values outside are clamped)."""
        if not self.pitch_bins:
            raise ValueError("this model has no pitch input (model.pitch_bins is 0)")
        steps = self.pitch_bins - 1
        position = (relative_log_f0 + self.pitch_range) / (2 * self.pitch_range) * steps
        bins = position.round().clamp(0, steps).long() + 1
        return torch.where(voiced.bool(), bins, torch.zeros_like(bins))

    def output_frames(self, unit_frames: int) -> int:
        """Mel frames produced for ``unit_frames`` units when no target length is given."""
        return self.encoder.factor * unit_frames

    def condition(
        self,
        units: torch.Tensor,
        speakers: Optional[Speakers],
        unit_mask: Optional[torch.Tensor] = None,
        frame_lengths: Optional[torch.Tensor] = None,
        num_frames: Optional[int] = None,
        pitch: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Decoder condition ``(B, T, C + speaker_dim)`` and its frame mask ``(B, T)`` (None if nothing is padded).

        ``T`` is ``num_frames`` if given, else ``factor * T_u``. ``frame_lengths (B,)`` are the real
        mel frames of each utterance (default: ``factor *`` its real units, capped at ``T``);
        each utterance's encoding is cropped to its length or extended by repeating its last real
        frame, so an odd mel length or a rounding difference between unit and mel rates is absorbed.
        ``pitch (B, T_p)``: bins of :meth:`pitch_bin` at the mel rate (needed iff ``pitch_bins`` > 0),
        cropped to ``T`` or extended with the unvoiced bin.
        """
        encoded, mask = self.encoder(units, unit_mask)
        batch, _, encoded_frames = encoded.shape
        total = encoded_frames if num_frames is None else int(num_frames)
        encoded_lengths = (mask.sum(1) if mask is not None
                           else torch.full((batch,), encoded_frames, device=encoded.device, dtype=torch.long))
        if frame_lengths is None:
            frame_lengths = encoded_lengths.clamp(max=total)
        frame_lengths = frame_lengths.to(encoded.device).long()
        if bool((frame_lengths > total).any()):
            raise ValueError(f"frame_lengths {frame_lengths.tolist()} exceed the {total} frames asked for")
        # Frame t of utterance b reads encoder frame min(t, length_b - 1): crop, or repeat the last real frame.
        last = (encoded_lengths - 1).clamp(min=0)
        index = torch.minimum(torch.arange(total, device=encoded.device)[None, :], last[:, None])
        x = torch.gather(encoded.transpose(1, 2), 1, index.unsqueeze(-1).expand(-1, -1, encoded.shape[1]))
        frame_mask = lengths_to_mask(frame_lengths, total)
        if self.pitch_embedding is not None:
            if pitch is None:
                raise ValueError("this model is conditioned on pitch (model.pitch_bins > 0): pass pitch (B, T) bins")
            pitch = pitch.to(encoded.device).long()
            pitch = pitch[:, :total] if pitch.shape[1] >= total else F.pad(pitch, (0, total - pitch.shape[1]))
            x = x + self.pitch_embedding(pitch)
        if self.speaker_dim:
            if speakers is None:
                raise ValueError("this model is conditioned on a speaker: pass speakers (ids, references or vectors)")
            speaker = speaker_vectors(speakers, self.speaker_embedding, self.reference_encoder, self.speaker_dim,
                                      encoded.device)
            x = torch.cat([x, speaker[:, None, :].expand(-1, total, -1)], dim=-1)
        padded = mask is not None or bool((frame_lengths < total).any())
        if padded:
            x = x * frame_mask.unsqueeze(-1).to(x.dtype)
        return x, (frame_mask if padded else None)

    def forward(
        self,
        units: torch.Tensor,
        target_mels: torch.Tensor,
        speakers: Optional[Speakers] = None,
        unit_mask: Optional[torch.Tensor] = None,
        frame_lengths: Optional[torch.Tensor] = None,
        pitch: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Teacher-forced mels ``(B, T, out_dim)`` for ``target_mels (B, T, out_dim)``.

        ``units``: ``(B, T_u)`` ids / ``(B, T_u, 1)`` float ids (discrete) or ``(B, T_u, in_dim)``;
        ``unit_mask (B, T_u)``: True on real units. Frame t is predicted from frames ``< t`` of the
        target (a zero frame before the first), as the seed's ``mels[:, :-1]`` -> ``mels[:, 1:]``.
        """
        condition, _ = self.condition(units, speakers, unit_mask, frame_lengths, num_frames=target_mels.shape[1],
                                      pitch=pitch)
        previous = F.pad(target_mels[:, :-1], (0, 0, 1, 0))
        return self.decoder(condition, previous)

    @torch.no_grad()
    def generate(
        self,
        units: torch.Tensor,
        speakers: Optional[Speakers] = None,
        unit_mask: Optional[torch.Tensor] = None,
        frame_lengths: Optional[torch.Tensor] = None,
        num_frames: Optional[int] = None,
        pitch: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Free-running mels ``(B, T, out_dim)``; ``T = num_frames`` or ``factor * T_u``. Padded frames are zero."""
        condition, frame_mask = self.condition(units, speakers, unit_mask, frame_lengths, num_frames, pitch)
        mels = self.decoder.generate(condition)
        return mels if frame_mask is None else mels * frame_mask.unsqueeze(-1).to(mels.dtype)
