"""Vector quantisation bottlenecks and time jitter for the VQ-VAE family.

``VectorQuantizer`` quantises every time step of a ``(B, D, T)`` sequence to the nearest of ``K``
code vectors, with three ways of learning the codebook:

``straight_through``  (seeds 000 and 004) the codebook is a Parameter trained by the codebook loss
                      ``|sg(z) - e|^2`` plus ``commitment_cost * |z - sg(e)|^2`` for the encoder;
                      the decoder gradient reaches ``z`` through the straight-through estimator.
``ema``               (seed 004, van den Oord et al. appendix) the codebook is a buffer set to the
                      exponential moving average of the vectors assigned to each code, with Laplace
                      smoothing of the counts; only the commitment term is a loss.
``soft_em``           (seed 001) the codebook is a Parameter that receives the reconstruction
                      gradient through ``one_hot @ codebook`` and an "M-step" loss
                      ``gamma * mean(sum_k q_k d_k^2 / 2)`` with ``q = sg(softmax(-d^2 / 2))``,
                      plus ``beta * |z - sg(e)|^2`` for the encoder.

Any variant can add dead-code revival (seed 000): a code unused for ``revival_patience`` training
forwards is re-initialised from the current batch's encoder outputs, sampled k-means++-style.

Every statistic (losses, EMA sums and counts, usage, perplexity, revival candidates) is taken over
real frames only: an optional boolean ``mask`` ``(B, T)`` (True = real frame) keeps padding out.

Seed quirk deliberately NOT reproduced: seed 004 flattens ``(B, D, T)`` along the wrong axis, so it
quantises vectors that mix channels of different frames. Here each frame's D-dim vector is one
vector to quantise.

Distributed note: EMA statistics and usage counters are per process; under DDP each replica updates
its own buffers from its own batch (DDP broadcasts buffers from rank 0 each forward by default).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

VQ_VARIANTS = ("straight_through", "ema", "soft_em")

# Added inside the log of the perplexity (seed 004's formula), so unused codes give 0 * log(1e-10).
PERPLEXITY_EPSILON = 1e-10


class VQOutput(NamedTuple):
    """What a ``VectorQuantizer`` forward returns.

    quantized:      (B, D, T) code vectors, carrying the straight-through gradient to ``z``.
    indices:        (B, T) long, the chosen code of every frame (padded frames too, but ignore them).
    loss:           scalar, the variant's VQ loss over real frames (add it to the reconstruction loss).
    perplexity:     scalar, exp(entropy) of the code usage over real frames (1 .. K).
    num_codes_used: number of distinct codes chosen by real frames in this batch.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    num_codes_used: int


def code_perplexity(one_hot_real_frames: torch.Tensor) -> torch.Tensor:
    """exp(-sum_k p_k log(p_k + 1e-10)) with p the mean one-hot usage; input ``(N, K)``, output scalar."""
    if one_hot_real_frames.shape[0] == 0:
        return one_hot_real_frames.new_ones(())
    usage = one_hot_real_frames.float().mean(dim=0)
    return torch.exp(-torch.sum(usage * torch.log(usage + PERPLEXITY_EPSILON)))


def squared_distances(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(N, K)`` between ``vectors (N, D)`` and ``codebook (K, D)``.

    Expanded as |x|^2 - 2 x.e + |e|^2 (one matmul, no (N, K, D) tensor) and clamped at 0, since
    rounding can make the expansion slightly negative.
    """
    return (
        vectors.pow(2).sum(dim=1, keepdim=True)
        - 2.0 * vectors @ codebook.t()
        + codebook.pow(2).sum(dim=1).unsqueeze(0)
    ).clamp_min(0.0)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser of ``(B, D, T)`` sequences; see the module docstring.

    Args:
        codebook_size: K, the number of codes.
        code_dim: D, the dimension of every code (the channel dimension of ``z``).
        variant: "straight_through", "ema" or "soft_em".
        commitment_cost: weight of ``|z - sg(e)|^2`` for straight_through and ema.
        ema_decay, ema_epsilon: EMA decay and Laplace smoothing of the counts (ema only).
        soft_em_beta, soft_em_gamma: weights of the commitment and M-step terms (soft_em only).
        dead_code_revival: re-initialise codes unused for ``revival_patience`` training forwards.
        revival_patience: the usage countdown every code starts from and is reset to when used.
    """

    def __init__(
        self,
        codebook_size: int = 44,
        code_dim: int = 64,
        variant: str = "straight_through",
        commitment_cost: float = 0.25,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        soft_em_beta: float = 0.01,
        soft_em_gamma: float = 0.01,
        dead_code_revival: bool = False,
        revival_patience: int = 100,
    ) -> None:
        super().__init__()
        if variant not in VQ_VARIANTS:
            raise ValueError(f"unknown VQ variant {variant!r}; choose one of {VQ_VARIANTS}")
        if codebook_size < 1 or code_dim < 1:
            raise ValueError(f"codebook_size and code_dim must be positive, got {codebook_size}, {code_dim}")
        if dead_code_revival and revival_patience < 1:
            raise ValueError(f"revival_patience must be >= 1, got {revival_patience}")
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.variant = variant
        self.commitment_cost = commitment_cost
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.soft_em_beta = soft_em_beta
        self.soft_em_gamma = soft_em_gamma
        self.dead_code_revival = dead_code_revival
        self.revival_patience = revival_patience

        # Uniform +-1/K, as in seed 004 (Chorowski et al.), for every variant.
        initial_codebook = torch.empty(codebook_size, code_dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        if variant == "ema":
            # A buffer, not a Parameter: it is never touched by the optimiser, only by the EMA update,
            # and it is saved in the state dict with the EMA statistics it is derived from.
            self.register_buffer("codebook", initial_codebook)
            # Every code starts with a pseudo-count of one whose running sum is the code itself, so
            # codebook == ema_sums / ema_counts from the start. Seed 004 (like Sonnet) starts the counts
            # at zero, which makes an unused code's value ema_sums / epsilon explode and the code die.
            self.register_buffer("ema_counts", torch.ones(codebook_size))
            self.register_buffer("ema_sums", initial_codebook.clone())
        else:
            self.codebook = nn.Parameter(initial_codebook)
        if dead_code_revival:
            self.register_buffer(
                "usage_countdown", torch.full((codebook_size,), revival_patience, dtype=torch.long)
            )

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, variant={self.variant}, "
            f"dead_code_revival={self.dead_code_revival}"
        )

    def forward(self, z: torch.Tensor, mask: Optional[torch.Tensor] = None) -> VQOutput:
        """Quantise ``z (B, D, T)``; ``mask (B, T)`` bool, True = real frame (default: all real)."""
        if z.dim() != 3 or z.shape[1] != self.code_dim:
            raise ValueError(f"expected z of shape (B, {self.code_dim}, T), got {tuple(z.shape)}")
        batch, dim, frames = z.shape
        if mask is None:
            mask = torch.ones(batch, frames, dtype=torch.bool, device=z.device)
        elif mask.shape != (batch, frames):
            raise ValueError(f"mask must be (B, T) = {(batch, frames)}, got {tuple(mask.shape)}")
        # One row per frame: (B, D, T) -> (B, T, D) -> (B*T, D). Seed 004 reshaped without the
        # transpose and so quantised the wrong vectors; see the module docstring.
        vectors = z.transpose(1, 2).reshape(-1, dim)
        real = mask.reshape(-1).to(torch.bool)
        real_float = real.to(vectors.dtype).unsqueeze(1)  # (N, 1)
        num_real = real.sum().clamp_min(1).to(vectors.dtype)

        if self.training and self.dead_code_revival:
            # Revive before quantising, so that the codebook is never edited in place while it is
            # part of this forward's autograd graph.
            self._revive_dead_codes(vectors.detach()[real])

        # Distances with z stop-gradiented: only soft_em lets them carry gradient (to the codebook).
        distances = squared_distances(vectors.detach(), self.codebook)  # (N, K)
        indices = distances.argmin(dim=1)
        one_hot = F.one_hot(indices, self.codebook_size).to(vectors.dtype)  # (N, K)

        def masked_mean_square(difference: torch.Tensor) -> torch.Tensor:
            return (difference.pow(2) * real_float).sum() / (num_real * dim)

        if self.variant == "soft_em":
            # The one-hot product lets the reconstruction gradient reach the chosen codes too.
            chosen_codes = one_hot @ self.codebook
            responsibilities = torch.softmax(-distances.detach() / 2.0, dim=1)  # q = sg(softmax(-d^2/2))
            m_step = ((responsibilities * distances).sum(dim=1) / 2.0 * real_float.squeeze(1)).sum() / num_real
            loss = self.soft_em_beta * masked_mean_square(vectors - chosen_codes.detach()) + self.soft_em_gamma * m_step
        else:
            chosen_codes = F.embedding(indices, self.codebook)
            commitment = masked_mean_square(vectors - chosen_codes.detach())
            if self.variant == "straight_through":
                codebook_loss = masked_mean_square(vectors.detach() - chosen_codes)
                loss = codebook_loss + self.commitment_cost * commitment
            else:  # ema: the codebook is learned by the EMA update below, not by a loss.
                loss = self.commitment_cost * commitment

        # Straight-through: forward value = the code, gradient w.r.t. z = identity.
        if self.variant == "soft_em":
            # The codebook keeps its own gradient path through chosen_codes (seed 001).
            quantized_vectors = chosen_codes + (vectors - vectors.detach())
        else:
            quantized_vectors = vectors + (chosen_codes - vectors).detach()
        quantized = quantized_vectors.reshape(batch, frames, dim).transpose(1, 2)

        with torch.no_grad():
            real_one_hot = one_hot[real]
            counts = real_one_hot.sum(dim=0)  # (K,)
            perplexity = code_perplexity(real_one_hot)
            num_codes_used = int((counts > 0).sum().item())
            if self.training and self.variant == "ema":
                self._ema_update(counts, real_one_hot.t() @ vectors.detach()[real])
            if self.training and self.dead_code_revival:
                used = counts > 0
                self.usage_countdown[used] = self.revival_patience
                self.usage_countdown[~used] -= 1

        return VQOutput(quantized, indices.reshape(batch, frames), loss, perplexity, num_codes_used)

    @torch.no_grad()
    def _ema_update(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        """EMA of per-code counts ``(K,)`` and sums ``(K, D)``; codebook = sums / smoothed counts.

        A batch with non-finite encodings (NaN features, a diverged encoder) leaves the statistics
        as they were: folded into the averages it would make the codebook NaN for good. The choice
        is made on the device (``torch.where``), so a GPU step does not wait for it.
        """
        finite = torch.isfinite(sums).all() & torch.isfinite(counts).all()
        decay = self.ema_decay
        self.ema_counts.copy_(torch.where(finite, self.ema_counts * decay + counts * (1.0 - decay), self.ema_counts))
        self.ema_sums.copy_(torch.where(finite, self.ema_sums * decay + sums * (1.0 - decay), self.ema_sums))
        self._refresh_ema_codebook()

    @torch.no_grad()
    def _refresh_ema_codebook(self) -> None:
        # Laplace smoothing: no count is ever zero, and the smoothed counts keep the same total.
        total = self.ema_counts.sum()
        smoothed = (self.ema_counts + self.ema_epsilon) / (total + self.codebook_size * self.ema_epsilon) * total
        self.codebook.copy_(self.ema_sums / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _revive_dead_codes(self, real_vectors: torch.Tensor) -> None:
        """Re-initialise codes whose usage countdown reached 0 from ``real_vectors (N, D)``.

        Candidates are drawn one at a time k-means++-style: with probability proportional to the
        squared distance to the nearest live (or already revived) code, so new codes go where the
        codebook covers the data worst.
        """
        dead = (self.usage_countdown <= 0).nonzero().flatten()
        if dead.numel() == 0 or real_vectors.shape[0] == 0:
            return
        alive = self.usage_countdown > 0
        if alive.any():
            nearest = squared_distances(real_vectors, self.codebook[alive]).min(dim=1).values
        else:
            nearest = torch.full((real_vectors.shape[0],), math.inf, device=real_vectors.device)
        for code in dead.tolist():
            weights = nearest if torch.isfinite(nearest).all() and nearest.sum() > 0 else torch.ones_like(nearest)
            choice = int(torch.multinomial(weights, 1).item())
            new_code = real_vectors[choice]
            self.codebook[code] = new_code
            if self.variant == "ema":
                # Pseudo-count one, like the initial state, so codebook == sums / counts stays true and
                # the revived code follows the frames it wins quickly.
                self.ema_counts[code] = 1.0
                self.ema_sums[code] = new_code
            self.usage_countdown[code] = self.revival_patience
            nearest = torch.minimum(nearest, (real_vectors - new_code).pow(2).sum(dim=1))
        if self.variant == "ema":
            self._refresh_ema_codebook()


class TimeJitter(nn.Module):
    """Chorowski et al.'s time jitter on ``(B, D, T)``: identity in eval mode.

    In training each time index independently takes its left neighbour's vector with probability
    ``p / 2`` and its right neighbour's with probability ``p / 2`` (edges clamped, so the first frame
    can only take the right neighbour's and the last only the left one's). With a ``mask (B, T)`` of
    right-padded sequences, a real frame never copies a padded one (the clamp is at each sequence's
    last real frame).
    """

    def __init__(self, p: float = 0.12) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"jitter probability must be in [0, 1], got {p}")
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Jitter ``x (B, D, T)``; returns the same shape."""
        batch, dim, frames = x.shape
        if not self.training or self.p == 0.0 or frames < 2:
            return x
        draw = torch.rand(batch, frames, device=x.device)
        offsets = (draw < self.p).long() * torch.where(draw < self.p / 2, -1, 1)
        positions = torch.arange(frames, device=x.device).unsqueeze(0).expand(batch, frames)
        source = positions + offsets
        if mask is None:
            last_real = torch.full((batch, 1), frames - 1, device=x.device, dtype=torch.long)
        else:
            last_real = (mask.long().sum(dim=1, keepdim=True) - 1).clamp_min(0)
        # Real frames are clamped to [0, last real]; padded frames stay where they are.
        source = torch.where(positions <= last_real, torch.minimum(source, last_real), positions).clamp(0, frames - 1)
        return x.gather(2, source.unsqueeze(1).expand(batch, dim, frames))
