"""Soft-VC: the soft-unit head learns discrete units, the acoustic model's frame counts, masking and speakers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.families.softvc import masked_l1
from voiceswap.nets.softvc import AcousticModel, SoftUnitHead, masked_instance_norm
from voiceswap.train.config import load_config
from voiceswap.train.registry import OptimizerStep, get_family

REPO_ROOT = Path(__file__).resolve().parents[1]

SMALL = dict(in_dim=16, out_dim=12, speaker_dim=8, embedding_dim=16, prenet_dim=16, channels=24,
             decoder_prenet_dim=16, lstm_dim=32)


def bound(family_name: str, config: dict, num_speakers: int = 3):
    """A family with built models and optimisers, bound as the Trainer would (no Trainer)."""
    family = get_family(family_name)()
    models = family.build(config, num_speakers)
    optimizers = family.optimizers(models, config)
    family.bind(models, optimizers, OptimizerStep(optimizers, grad_clip=5.0))
    return family


def test_soft_unit_head_learns_discrete_units_far_above_chance():
    torch.manual_seed(0)
    num_units, batch, frames = 16, 8, 20
    config = {"model": {"in_dim": num_units, "num_units": num_units, "unit_dim": 32, "num_layers": 0},
              "optim": {"model": {"type": "adamw", "lr": 1e-2, "betas": [0.9, 0.98], "weight_decay": 0.0}}}
    family = bound("softvc_units", config)

    def toy_batch():
        labels = torch.randint(num_units, (batch, frames))
        features = F.one_hot(labels, num_units).float() + 0.3 * torch.randn(batch, frames, num_units)
        return {"input": features, "units": labels, "mask": torch.ones(batch, frames, dtype=torch.bool)}

    first = family.train_step(toy_batch(), 0)
    for step in range(1, 80):
        metrics = family.train_step(toy_batch(), step)
    family.models["model"].eval()
    valid = family.valid_step(toy_batch())
    assert metrics["loss"] < first["loss"]
    assert valid["accuracy"] > 0.8 > 10 / num_units  # chance is 1/16

    encoded = family.encode_units(toy_batch()["input"][0])
    assert encoded["indices"].shape == (frames,) and encoded["indices"].dtype == torch.long
    assert encoded["vectors"].shape == (frames, 32)


def test_soft_unit_head_downsamples_and_masks_labels():
    torch.manual_seed(0)
    head = SoftUnitHead(in_dim=5, num_units=7, unit_dim=8, num_layers=2, hidden_dim=8, downsample=2)
    for frames in (10, 11):
        units = head(torch.randn(2, frames, 5))
        assert units.shape == (2, (frames + 1) // 2, 8)
        assert head.logits(units).shape == (2, (frames + 1) // 2, 7)
    config = {"model": {"in_dim": 5, "num_units": 7, "unit_dim": 8, "num_layers": 1, "downsample": 2},
              "optim": {"model": {"type": "adamw", "lr": 1e-3, "betas": [0.9, 0.98], "weight_decay": 0.0}}}
    family = bound("softvc_units", config)
    mask = torch.tensor([[True] * 11, [True] * 6 + [False] * 5])
    labels = torch.randint(7, (2, 6))
    labels[1, 3:] = 99  # labels of padded units are never read (out of range on purpose)
    metrics = family.train_step({"input": torch.randn(2, 11, 5), "units": labels, "mask": mask}, 0)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="downsample"):
        family.train_step({"input": torch.randn(2, 11, 5), "units": torch.randint(7, (2, 11))}, 1)


@pytest.mark.parametrize("unit_frames", [7, 8])
def test_teacher_forced_and_free_running_frame_counts_agree(unit_frames):
    torch.manual_seed(0)
    model = AcousticModel(num_speakers=2, **SMALL).eval()
    units, speakers = torch.randn(2, unit_frames, 16), torch.tensor([0, 1])
    generated = model.generate(units, speakers)
    assert generated.shape == (2, 2 * unit_frames, 12) == (2, model.output_frames(unit_frames), 12)
    for mel_frames in (2 * unit_frames - 1, 2 * unit_frames, 2 * unit_frames + 1):  # crop / exact / extend
        target = torch.randn(2, mel_frames, 12)
        assert model(units, target, speakers).shape == target.shape
        assert model.generate(units, speakers, num_frames=mel_frames).shape == target.shape
    # Teacher forcing with the model's own outputs reproduces the free-running frames.
    assert torch.allclose(model(units, generated, speakers), generated, atol=1e-5)


def test_discrete_units_from_a_float_stream_with_padding():
    torch.manual_seed(0)
    model = AcousticModel(num_speakers=1, discrete=True, num_units=10, **{**SMALL, "in_dim": 1}).eval()
    ids = torch.randint(10, (2, 6, 1)).float()
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    ids[1, 4:] = 0.0  # collate pads with zeros, a valid id: the mask must turn it into the padding id
    out = model.generate(ids, torch.tensor([0, 0]), unit_mask=mask)
    assert out.shape == (2, 12, 12)
    assert torch.all(out[1, 8:] == 0)
    with pytest.raises(ValueError, match="in_dim=1"):
        AcousticModel(discrete=True, in_dim=256)


def test_padding_does_not_change_an_utterances_output():
    """Masked InstanceNorm and zeroed padding: an utterance's mels do not depend on its batch-mates."""
    torch.manual_seed(0)
    model = AcousticModel(num_speakers=2, **SMALL).eval()
    long_units, short_units = torch.randn(1, 9, 16), torch.randn(1, 6, 16)
    short_target = torch.randn(1, 11, 12)  # an odd mel length: 2 * 6 - 1
    alone_tf = model(short_units, short_target, torch.tensor([1]))
    alone_free = model.generate(short_units, torch.tensor([1]), num_frames=11)

    units = torch.cat([long_units, F.pad(short_units, (0, 0, 0, 3), value=7.0)])  # garbage in the padding
    unit_mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    target = torch.cat([torch.randn(1, 18, 12), F.pad(short_target, (0, 0, 0, 7), value=-3.0)])
    lengths = torch.tensor([18, 11])
    batch_tf = model(units, target, torch.tensor([0, 1]), unit_mask, lengths)
    batch_free = model.generate(units, torch.tensor([0, 1]), unit_mask, lengths, num_frames=18)
    assert torch.allclose(batch_tf[1, :11], alone_tf[0], atol=1e-5)
    assert torch.allclose(batch_free[1, :11], alone_free[0], atol=1e-5)

    x, mask = torch.randn(2, 4, 10), torch.ones(2, 10, dtype=torch.bool)
    assert torch.allclose(masked_instance_norm(x, mask), F.instance_norm(x), atol=1e-5)


def test_masked_l1_and_padded_frames_do_not_change_the_loss():
    torch.manual_seed(0)
    prediction, target = torch.randn(3, 10, 12), torch.randn(3, 10, 12)
    assert torch.allclose(masked_l1(prediction, target, torch.ones(3, 10, dtype=torch.bool)),
                          F.l1_loss(prediction, target))

    config = {"model": SMALL,
              "optim": {"model": {"type": "adamw", "lr": 4e-4, "betas": [0.8, 0.99], "weight_decay": 1e-5}}}
    family = bound("softvc", config, num_speakers=2)
    family.models["model"].eval()  # no dropout: two passes must be comparable
    units = torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])  # a unit-rate mask: target mask derived (x2)
    batch = {"input": units, "target": torch.randn(2, 10, 12), "mask": mask, "speakers": torch.tensor([0, 1])}
    changed = copy.deepcopy(batch)
    changed["target"][1, 6:] = 100.0  # target frames beyond 2 x 3 real units are padding
    changed["input"][1, 3:] = -50.0
    assert family.valid_step(batch)["loss"] == pytest.approx(family.valid_step(changed)["loss"], abs=1e-6)
    changed["target"][1, 5] += 1.0  # a real frame does count
    assert family.valid_step(batch)["loss"] != pytest.approx(family.valid_step(changed)["loss"], abs=1e-6)


def test_speakers_change_the_output_and_the_family_trains_and_converts():
    torch.manual_seed(0)
    config = {"model": SMALL,
              "optim": {"model": {"type": "adamw", "lr": 4e-4, "betas": [0.8, 0.99], "weight_decay": 1e-5}}}
    family = bound("softvc", config, num_speakers=3)
    model = family.models["model"]
    before = copy.deepcopy(model.state_dict())
    batch = {"input": torch.randn(2, 6, 16), "target": torch.randn(2, 12, 12),
             "mask": torch.ones(2, 6, dtype=torch.bool), "speakers": torch.tensor([0, 2])}
    metrics = family.train_step(batch, 0)
    assert metrics["loss"] > 0 and metrics["grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())

    model.eval()
    units = torch.randn(5, 16)
    first, second = family.convert(units, 0), family.convert(units, 2)
    assert first.shape == second.shape == (10, 12)
    assert not torch.allclose(first, second)
    valid = family.valid_step(batch)
    assert set(valid) == {"loss", "l1_free_running"}

    with pytest.raises(ValueError, match="upsample=false"):  # units at the mel rate into an x2 model
        family.train_step({**batch, "input": torch.randn(2, 12, 16), "mask": torch.ones(2, 12, dtype=torch.bool)}, 1)


def test_conf_softvc_builds_both_families():
    config = load_config(REPO_ROOT / "conf" / "softvc.yaml")
    assert set(config["train"]) == {"max_steps", "seed", "log_interval", "valid_interval", "save_interval",
                                    "keep_last", "grad_clip", "ema_decay", "best_metric", "best_mode", "init_from"}
    acoustic = get_family(config["family"])().build(config, num_speakers=8)["model"]
    content_config = {**config, **config["content"]}
    head = get_family(content_config["family"])().build(content_config, num_speakers=8)["model"]
    assert config["model"]["in_dim"] == config["content"]["model"]["unit_dim"]
    # Content features at 50 Hz (spkcmvn stacks 2 frames; HuBERT's stride is 20 ms) -> 50 Hz units -> 100 Hz mels.
    soft_units = head(torch.randn(1, 40, config["content"]["model"]["in_dim"]))
    assert soft_units.shape == (1, 40 // config["content"]["model"]["downsample"], 256)
    acoustic.eval()
    assert acoustic.generate(soft_units, torch.tensor([3])).shape == (1, 2 * soft_units.shape[1], 80)
    print(f"softvc small: acoustic model {sum(p.numel() for p in acoustic.parameters()) / 1e6:.2f}M, "
          f"unit head {sum(p.numel() for p in head.parameters()) / 1e6:.2f}M parameters")


def test_an_acoustic_model_on_content_features_needs_no_units_and_converts_audio():
    """``data.input_feats: content`` (conf/softvc_whisper_ppg.yaml): no k-means, head or unit dump; the
    content features themselves are the model's input, also when converting your own audio."""
    import numpy as np

    config = load_config(REPO_ROOT / "conf" / "softvc_whisper_ppg.yaml")
    family = get_family(config["family"])()
    assert [(step.stage, step.kind) for step in family.plan(config)] == [(4, "pitch"), (4, "content_features"),
                                                                         (6, "train")]
    assert family.requires(config) == {}
    units = load_config(REPO_ROOT / "conf" / "softvc_whisper_f0.yaml")
    assert [step.kind for step in family.plan(units)].count("dump_units") == 1
    assert family.requires(units) == {"content": 4}

    # The features reach the model unchanged (waveform frames stand in for Whisper here: no model load).
    config["content"]["features"] = {"kind": "waveform", "sample_rate": 16000, "hop_length": 160}
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    features = family.prepare_input({"audio": audio}, {}, config)
    np.testing.assert_array_equal(features.numpy(), audio[:16000 // 160 * 160].reshape(-1, 160))
