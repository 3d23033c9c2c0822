"""The VQ-VAE family's model maths: VectorQuantizer variants, dead-code revival, jitter, VQVAE shapes."""

from __future__ import annotations

import math
from typing import List, Optional

import pytest
import torch
from torch import nn

from voiceswap.nets.vq import TimeJitter, VectorQuantizer, VQOutput, code_perplexity
from voiceswap.nets.vqvae import VQVAE, code_frames, code_mask_from_frame_mask

VARIANT_CONFIGS = [
    pytest.param({"variant": "straight_through"}, id="straight_through"),
    pytest.param({"variant": "ema"}, id="ema"),
    pytest.param({"variant": "soft_em"}, id="soft_em"),
    pytest.param({"variant": "straight_through", "dead_code_revival": True, "revival_patience": 20},
                 id="straight_through+revival"),
    pytest.param({"variant": "ema", "dead_code_revival": True, "revival_patience": 20}, id="ema+revival"),
]

CLUSTER_CENTRES = torch.tensor(
    [[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [-3.0, -3.0, 0.0, 0.0]]
)


def clustered_batch(batch: int, frames: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B, 4, T) frames drawn from four well separated Gaussian clusters."""
    which = torch.randint(len(CLUSTER_CENTRES), (batch, frames), generator=generator)
    points = CLUSTER_CENTRES[which] + 0.1 * torch.randn(batch, frames, 4, generator=generator)
    return points.transpose(1, 2)


@pytest.mark.parametrize("config", VARIANT_CONFIGS)
def test_variant_learns_clusters_and_uses_several_codes(config: dict) -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=16, code_dim=8, **config)
    encoder, decoder = nn.Conv1d(4, 8, 1), nn.Conv1d(8, 4, 1)
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters(), *vq.parameters()], lr=3e-3)
    losses: List[float] = []
    for _ in range(300):
        x = clustered_batch(8, 32)
        out = vq(encoder(x))
        reconstruction_loss = (decoder(out.quantized) - x).pow(2).mean()
        (reconstruction_loss + out.loss).backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(reconstruction_loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.1 * first, (first, last)
    vq.eval()
    with torch.no_grad():
        out = vq(encoder(clustered_batch(8, 32, torch.Generator().manual_seed(1))))
    # Four clusters need at least four codes to be reconstructed this well.
    assert out.num_codes_used >= 4
    assert out.perplexity.item() > 3.0


def test_output_shapes_and_types() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=10, code_dim=6)
    out = vq(torch.randn(3, 6, 7))
    assert isinstance(out, VQOutput)
    assert out.quantized.shape == (3, 6, 7)
    assert out.indices.shape == (3, 7) and out.indices.dtype == torch.long
    assert out.loss.dim() == 0 and out.perplexity.dim() == 0
    assert isinstance(out.num_codes_used, int)
    with pytest.raises(ValueError):
        VectorQuantizer(variant="kmeans")
    with pytest.raises(ValueError):
        vq(torch.randn(3, 5, 7))


def test_each_frame_vector_is_quantised_and_uniform_usage_has_perplexity_k() -> None:
    torch.manual_seed(0)
    codebook_size, code_dim = 8, 5
    vq = VectorQuantizer(codebook_size=codebook_size, code_dim=code_dim).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(codebook_size, code_dim) * 3)
    # Frame t of item b is exactly code (b * 4 + t) % K: quantising along the right axis recovers it
    # (seed 004's flattening quirk would mix channels of different frames).
    wanted = (torch.arange(2).unsqueeze(1) * 4 + torch.arange(8).unsqueeze(0)) % codebook_size
    z = vq.codebook.detach()[wanted].transpose(1, 2)  # (2, D, 8)
    out = vq(z)
    assert torch.equal(out.indices, wanted)
    torch.testing.assert_close(out.quantized, z)
    assert out.num_codes_used == codebook_size
    assert out.perplexity.item() == pytest.approx(codebook_size, rel=1e-4)
    # The formula itself: uniform usage -> K, one code -> 1.
    uniform = torch.eye(codebook_size).repeat(5, 1)
    assert code_perplexity(uniform).item() == pytest.approx(codebook_size, rel=1e-4)
    single = torch.zeros(20, codebook_size)
    single[:, 3] = 1
    assert code_perplexity(single).item() == pytest.approx(1.0, rel=1e-4)


def test_straight_through_gradients() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=6, code_dim=3, variant="straight_through")
    z = torch.randn(2, 3, 5, requires_grad=True)
    out = vq(z)
    # The reconstruction gradient passes to z unchanged (identity) and not to the codebook.
    upstream = torch.randn_like(out.quantized)
    (out.quantized * upstream).sum().backward()
    torch.testing.assert_close(z.grad, upstream)
    assert vq.codebook.grad is None or torch.count_nonzero(vq.codebook.grad) == 0
    # The codebook loss trains the codebook.
    vq.zero_grad()
    vq(z.detach()).loss.backward()
    assert vq.codebook.grad is not None and torch.count_nonzero(vq.codebook.grad) > 0


def test_ema_codebook_gets_no_gradient_but_moves_in_training_only() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=8, code_dim=4, variant="ema")
    assert "codebook" not in dict(vq.named_parameters())
    assert not vq.codebook.requires_grad
    assert "codebook" in vq.state_dict() and "ema_counts" in vq.state_dict()
    z = (clustered_batch(4, 16)).requires_grad_(True)
    before = vq.codebook.clone()
    out = vq(z)
    (out.loss + out.quantized.pow(2).sum()).backward()
    assert vq.codebook.grad is None
    assert z.grad is not None
    assert not torch.allclose(vq.codebook, before)
    moved = vq.codebook.clone()
    vq.eval()
    vq(z.detach())
    assert torch.equal(vq.codebook, moved)


def test_soft_em_codebook_gets_reconstruction_and_m_step_gradients() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=6, code_dim=3, variant="soft_em", soft_em_beta=0.0)
    assert vq.codebook.requires_grad
    z = torch.randn(2, 3, 5, requires_grad=True)
    out = vq(z)
    # Through the one-hot product the reconstruction gradient reaches the chosen codes ...
    out.quantized.sum().backward()
    chosen = torch.unique(out.indices)
    assert torch.count_nonzero(vq.codebook.grad[chosen]) > 0
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # ... and z, straight through.
    # The M-step term (beta = 0 here) trains only the codebook: every code, weighted by q.
    vq.zero_grad()
    z.grad = None
    vq(z).loss.backward()
    assert torch.count_nonzero(vq.codebook.grad) > 0
    assert z.grad is None or torch.count_nonzero(z.grad) == 0


@pytest.mark.parametrize("config", VARIANT_CONFIGS)
def test_padded_frames_change_nothing(config: dict) -> None:
    torch.manual_seed(0)
    frames, padding = 12, 5
    z = clustered_batch(3, frames)
    garbage = 50.0 * torch.randn(3, 4, padding)  # far away: would win any k-means++ draw
    z_padded = torch.cat([z, garbage], dim=2)
    mask = torch.zeros(3, frames + padding, dtype=torch.bool)
    mask[:, :frames] = True

    reference = VectorQuantizer(codebook_size=8, code_dim=4, **config)
    if config.get("dead_code_revival"):
        reference.usage_countdown[:3] = 1  # codes 0..2 are revived (k-means++ draw) in the 2nd forward
    padded = VectorQuantizer(codebook_size=8, code_dim=4, **config)
    padded.load_state_dict(reference.state_dict())

    for step in range(3):
        torch.manual_seed(100 + step)  # the same random draws (k-means++) for both runs
        z_real = z.clone().requires_grad_(True)
        out_ref = reference(z_real)
        torch.manual_seed(100 + step)
        z_pad = z_padded.clone().requires_grad_(True)
        out_pad = padded(z_pad, mask)
        torch.testing.assert_close(out_pad.quantized[..., :frames], out_ref.quantized)
        assert torch.equal(out_pad.indices[:, :frames], out_ref.indices)
        torch.testing.assert_close(out_pad.loss, out_ref.loss)
        torch.testing.assert_close(out_pad.perplexity, out_ref.perplexity)
        assert out_pad.num_codes_used == out_ref.num_codes_used
        (out_ref.loss + out_ref.quantized.sum()).backward()
        (out_pad.loss + out_pad.quantized[..., :frames].sum()).backward()
        torch.testing.assert_close(z_pad.grad[..., :frames], z_real.grad)
        assert torch.count_nonzero(z_pad.grad[..., frames:]) == 0
        # Buffers (codebook, EMA statistics, usage countdowns) evolve identically.
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(padded.state_dict()[name], value, msg=f"{name} differs")
    if config.get("dead_code_revival"):
        # The revived codes came from real frames, never from the (far) padding.
        assert padded.codebook.abs().max() < 10.0


@pytest.mark.parametrize("variant", ["straight_through", "ema", "soft_em"])
def test_revival_reinitialises_a_never_used_code(variant: str) -> None:
    torch.manual_seed(0)
    patience = 3
    vq = VectorQuantizer(codebook_size=6, code_dim=4, variant=variant,
                         dead_code_revival=True, revival_patience=patience)
    dead_code = 5
    with torch.no_grad():
        vq.codebook[dead_code] = 1000.0  # far from all data: never chosen
        if variant == "ema":
            vq.ema_sums[dead_code] = 1000.0
    x = clustered_batch(4, 16)
    for step in range(patience):
        out = vq(x)
        assert dead_code not in out.indices
        assert vq.usage_countdown[dead_code].item() == patience - step - 1
        # Used codes go back to full patience.
        assert torch.all(vq.usage_countdown[torch.unique(out.indices)] == patience)
    assert vq.usage_countdown[dead_code].item() == 0
    vq(x)  # revival happens at the start of this training forward, from this batch
    revived = vq.codebook[dead_code]
    assert revived.abs().max() < 10.0
    frame_vectors = x.transpose(1, 2).reshape(-1, 4)
    if variant == "ema":
        # The same forward's EMA update may already pull the new code toward the frames it won.
        assert (CLUSTER_CENTRES - revived).norm(dim=1).min() < 1.0
    else:
        assert torch.isclose(frame_vectors, revived.unsqueeze(0), atol=1e-5).all(dim=1).any()
    assert vq.usage_countdown[dead_code].item() >= patience - 1
    if variant == "ema":
        # EMA statistics were reset consistently with the new code.
        assert vq.ema_sums[dead_code].abs().max() < 10.0
        assert vq.ema_counts[dead_code].item() < 2.0
    # Evaluation never revives or counts down.
    vq.eval()
    countdown = vq.usage_countdown.clone()
    vq(x)
    assert torch.equal(vq.usage_countdown, countdown)


def test_jitter_identity_in_eval_and_only_neighbours_in_training() -> None:
    torch.manual_seed(0)
    frames = 2000
    # Every channel of frame t holds t, so the output says where each frame was copied from.
    x = torch.arange(frames, dtype=torch.float32).expand(2, 3, frames).clone()
    jitter = TimeJitter(p=0.12)
    jitter.eval()
    assert torch.equal(jitter(x), x)
    jitter.train()
    out = jitter(x)
    assert out.shape == x.shape
    source = out[:, 0, :]
    assert torch.equal(out, source.unsqueeze(1).expand_as(out))  # whole frames are copied
    offsets = source - torch.arange(frames, dtype=torch.float32)
    assert set(offsets.unique().tolist()) <= {-1.0, 0.0, 1.0}
    changed = (offsets != 0).float().mean().item()
    assert 0.08 < changed < 0.16, changed  # about p
    assert (offsets == -1).sum() > 0 and (offsets == 1).sum() > 0
    assert torch.equal(TimeJitter(p=0.0).train()(x), x)
    # With a mask, real frames never copy padding.
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[:, :10] = True
    for _ in range(50):
        out = TimeJitter(p=1.0).train()(x, mask)
        assert out[:, :, :10].max() <= 9


def tiny_vqvae(**overrides) -> VQVAE:
    config = dict(in_dim=39, out_dim=80, num_speakers=3, hidden_dim=32, code_dim=8,
                  codebook_size=16, speaker_dim=8, jitter_p=0.12, vq_variant="straight_through")
    config.update(overrides)
    return VQVAE(**config)


@pytest.mark.parametrize("num_frames", [1, 2, 7, 20, 21])
def test_vqvae_shapes_even_and_odd(num_frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_vqvae()
    features = torch.randn(2, 39, num_frames)
    speakers = torch.tensor([0, 2])
    expected_codes = math.ceil(num_frames / 2)
    assert code_frames(num_frames) == expected_codes
    z_e = model.encode(features)
    assert z_e.shape == (2, 8, expected_codes)
    out = model(features, speakers)
    assert out["z_e"].shape == (2, 8, expected_codes)
    assert out["vq"].indices.shape == (2, expected_codes)
    assert out["reconstruction"].shape == (2, 80, num_frames)
    assert model.decode(out["vq"].quantized, speakers, num_frames + 3).shape == (2, 80, num_frames + 3)
    mask = torch.ones(2, num_frames, dtype=torch.bool)
    assert code_mask_from_frame_mask(mask).shape == (2, expected_codes)
    assert model(features, speakers, mask)["reconstruction"].shape == (2, 80, num_frames)


@pytest.mark.parametrize("variant", ["straight_through", "ema", "soft_em"])
def test_vqvae_trains_and_speakers_change_the_output(variant: str) -> None:
    torch.manual_seed(0)
    model = tiny_vqvae(vq_variant=variant)
    features = torch.randn(4, 39, 24)
    targets = torch.randn(4, 80, 24)
    speakers = torch.tensor([0, 1, 2, 0])
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        out = model(features, speakers)
        reconstruction_loss = (out["reconstruction"] - targets).pow(2).mean()
        (reconstruction_loss + out["vq"].loss).backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(reconstruction_loss.item())
    assert losses[-1] < losses[0]
    assert model.encoder.input_conv.weight.grad is None  # zeroed; now check one backward reaches it
    out = model(features, speakers)
    (out["reconstruction"].pow(2).mean()).backward()
    assert torch.count_nonzero(model.encoder.input_conv.weight.grad) > 0
    assert torch.count_nonzero(model.speaker_embedding.weight.grad) > 0

    model.eval()
    codes = model.quantize(model.encode(features[:1])).quantized
    as_speaker_0 = model.decode(codes, torch.tensor([0]), 24)
    as_speaker_1 = model.decode(codes, torch.tensor([1]), 24)
    assert not torch.allclose(as_speaker_0, as_speaker_1)
    # The speaker table is persistent (seed 004 re-created it every forward): eval is deterministic.
    torch.testing.assert_close(model.decode(codes, torch.tensor([0]), 24), as_speaker_0)
    torch.testing.assert_close(model.convert(features[:1], torch.tensor([1])), as_speaker_1)


def test_vqvae_residual_layers_have_independent_weights() -> None:
    model = tiny_vqvae()
    layers = model.encoder.residual_stack.layers
    assert len(layers) == 2
    assert layers[0].conv3.weight.data_ptr() != layers[1].conv3.weight.data_ptr()
    assert "speaker_embedding.weight" in model.state_dict()
