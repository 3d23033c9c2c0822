"""HiFi-GAN: the hop check, output lengths, discriminator outputs, the mel loss's features, one GAN step."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.features.spectral import FeatureConfig, FeatureExtractor
from voiceswap.nets.vocoders.hifigan import (
    PUBLISHED_V1_PARAMETERS,
    HiFiGANConfigError,
    HiFiGANDiscriminator,
    HiFiGANGenerator,
    HiFiGANVocoder,
)
from voiceswap.nets.vocoders.hifigan_losses import LogMelSpectrogram
from voiceswap.train.config import load_config
from voiceswap.train.registry import OptimizerStep, get_family

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_GENERATOR = dict(upsample_rates=[10, 4, 2, 2], upsample_kernel_sizes=[20, 8, 4, 4], upsample_initial_channel=32,
                      resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3], [1, 3]])


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_upsampling_that_does_not_multiply_to_the_hop_is_a_clear_error():
    with pytest.raises(HiFiGANConfigError) as error:
        HiFiGANGenerator(hop_length=160, upsample_rates=(8, 8, 2), upsample_kernel_sizes=(16, 16, 4))
    assert str(error.value) == ("upsample_rates (8, 8, 2) multiply to 128 but the features' hop_length is 160: "
                                "choose factors whose product is 160, e.g. (10, 4, 2, 2)")
    with pytest.raises(HiFiGANConfigError, match="use 20"):  # a kernel that cannot give exactly 10x the samples
        HiFiGANGenerator(hop_length=160, upsample_rates=(10, 4, 2, 2), upsample_kernel_sizes=(15, 8, 4, 4))


@pytest.mark.parametrize("frames", [1, 7, 52])
def test_generator_output_is_frames_times_hop(frames):
    torch.manual_seed(0)
    generator = HiFiGANGenerator(in_channels=80, hop_length=160, **TINY_GENERATOR)
    waveform = generator(torch.randn(2, 80, frames))
    assert waveform.shape == (2, 1, frames * 160)
    assert waveform.abs().max() <= 1.0


def test_vocoder_wrapper_removes_weight_norm_without_changing_the_output():
    torch.manual_seed(0)
    generator = HiFiGANGenerator(in_channels=80, hop_length=160, **TINY_GENERATOR).eval()
    mel = torch.randn(1, 80, 9)
    vocoder = HiFiGANVocoder(generator)
    assert not any("parametrizations" in name for name, _ in vocoder.named_parameters())
    with torch.no_grad():
        expected = generator(mel).squeeze(1)
    assert torch.allclose(vocoder(mel), expected, atol=1e-5)
    assert generator(mel).shape == (1, 1, 9 * 160)  # the trained generator is untouched


def test_discriminators_return_logits_and_feature_maps_per_sub_discriminator():
    torch.manual_seed(0)
    discriminator = HiFiGANDiscriminator(width=0.125)
    real, fake = torch.randn(2, 1, 3200), torch.randn(2, 1, 3200)
    outputs = discriminator(real, fake)
    for name, subs, maps in (("mpd", 5, 6), ("msd", 3, 8)):
        real_logits, fake_logits, real_maps, fake_maps = outputs[name]
        assert len(real_logits) == len(fake_logits) == len(real_maps) == len(fake_maps) == subs
        for r, f, rm, fm in zip(real_logits, fake_logits, real_maps, fake_maps):
            assert r.shape == f.shape and r.dim() == 2 and r.shape[0] == 2
            assert len(rm) == len(fm) == maps
            assert all(a.shape == b.shape for a, b in zip(rm, fm))
    # The period discriminator folds by its period: period 2 gives 2 columns, period 11 gives 11.
    assert outputs["mpd"][2][0][0].shape[-1] == 2 and outputs["mpd"][2][4][0].shape[-1] == 11


def test_mel_loss_transform_reproduces_the_logmel_features():
    feature_config = FeatureConfig(type="logmel")
    waveform = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)
                + 0.01 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    expected = FeatureExtractor(feature_config)(waveform)  # (frames, n_mels)
    log_mel = LogMelSpectrogram(**{k: getattr(feature_config, k) for k in
                                   ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max",
                                    "log_floor")})
    actual = log_mel(torch.from_numpy(waveform)[None])[0].T.numpy()
    assert actual.shape == expected.shape == (8000 // 160, 80)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def tiny_config() -> dict:
    config = load_config(REPO_ROOT / "conf" / "vocoder" / "hifigan.yaml")
    config["model"]["generator"] = dict(TINY_GENERATOR)
    config["model"]["discriminator"]["width"] = 0.125
    config["loss"]["adversarial_start_step"] = 0
    return config


def test_one_gan_step_updates_generator_and_discriminator():
    torch.manual_seed(0)
    config = tiny_config()
    family = get_family("hifigan")()
    assert family.ema_targets == ["generator"]
    models = family.build(config, num_speakers=1)
    optimizers = family.optimizers(models, config)
    schedulers = family.schedulers(optimizers, config)
    family.bind(models, optimizers, OptimizerStep(optimizers, grad_clip=None))
    before = {name: copy.deepcopy(model.state_dict()) for name, model in models.items()}
    frames = 16
    batch = {"mel": torch.randn(2, frames, 80) - 4.0, "audio": 0.3 * torch.rand(2, frames * 160) - 0.15}
    metrics = family.train_step(batch, 0)
    for name, model in models.items():
        changed = [key for key, value in model.state_dict().items() if not torch.equal(before[name][key], value)]
        assert changed, f"{name} did not change"
    assert {"loss", "d_loss", "g_adv", "g_fm", "mel_l1", "d_grad_norm", "g_grad_norm"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert all(p.requires_grad for p in models["discriminator"].parameters())  # restored after the G pass
    valid = family.valid_step(batch)
    assert set(valid) == {"mel_l1"} and valid["mel_l1"] > 0
    with pytest.raises(ValueError, match="frame boundaries"):
        family.train_step({"mel": batch["mel"], "audio": batch["audio"][:, :-1]}, 1)

    # The per-step decay reaches gamma after `period` steps (one seed "epoch").
    settings = config["optim"]["generator"]
    for _ in range(settings["scheduler"]["period"]):
        schedulers["generator"].step()
    expected_lr = settings["lr"] * settings["scheduler"]["gamma"]
    assert optimizers["generator"].param_groups[0]["lr"] == pytest.approx(expected_lr)


def test_warm_up_steps_train_the_generator_alone_then_the_gan_starts():
    torch.manual_seed(0)
    config = tiny_config()
    config["loss"]["adversarial_start_step"] = 2
    family = get_family("hifigan")()
    models = family.build(config, num_speakers=1)
    optimizers = family.optimizers(models, config)
    family.bind(models, optimizers, OptimizerStep(optimizers, grad_clip=None))
    batch = {"mel": torch.randn(2, 8, 80) - 4.0, "audio": 0.1 * torch.randn(2, 8 * 160)}
    generator_before = copy.deepcopy(models["generator"].state_dict())
    discriminator_before = copy.deepcopy(models["discriminator"].state_dict())
    for step in (0, 1):
        metrics = family.train_step(batch, step)
        assert set(metrics) == {"loss", "mel_l1", "g_grad_norm"}
        assert metrics["loss"] == pytest.approx(config["loss"]["mel_weight"] * metrics["mel_l1"])
    assert all(torch.equal(discriminator_before[k], v) for k, v in models["discriminator"].state_dict().items())
    assert any(not torch.equal(generator_before[k], v) for k, v in models["generator"].state_dict().items())
    assert all(p.grad is None for p in models["discriminator"].parameters())
    metrics = family.train_step(batch, 2)
    assert {"d_loss", "g_adv", "g_fm"} <= set(metrics)
    assert any(not torch.equal(discriminator_before[k], v) for k, v in models["discriminator"].state_dict().items())


def test_generator_pass_leaves_accumulated_discriminator_gradients_alone():
    """With gradient accumulation the G loss must not add into the discriminator's gradients."""
    torch.manual_seed(0)
    config = tiny_config()
    family = get_family("hifigan")()
    models = family.build(config, num_speakers=1)
    optimizers = family.optimizers(models, config)
    step = OptimizerStep(optimizers, grad_clip=None, accum_steps=2)
    family.bind(models, optimizers, step)
    seen = {}
    original = step.__call__

    def spy(loss, optimizer, retain_graph=False):
        result = original(loss, optimizer, retain_graph)
        if optimizer == "discriminator":
            seen["after_d"] = [p.grad.clone() for p in models["discriminator"].parameters()]
        return result

    family.optimizer_step = spy
    step.micro_step = 0  # first micro-batch of two: gradients only, no update
    family.train_step({"mel": torch.randn(2, 8, 80), "audio": 0.1 * torch.randn(2, 8 * 160)}, 0)
    for grad_after_d, parameter in zip(seen["after_d"], models["discriminator"].parameters()):
        assert torch.equal(grad_after_d, parameter.grad)


def test_v1_and_cpu_parameter_counts():
    sizes = {}
    for name in ("hifigan_v1", "hifigan"):
        config = load_config(REPO_ROOT / "conf" / "vocoder" / f"{name}.yaml")
        models = get_family("hifigan")().build(config, num_speakers=1)
        sizes[name] = {key: count(model) for key, model in models.items()}
        print(f"{name}: generator {sizes[name]['generator'] / 1e6:.2f}M, "
              f"discriminator {sizes[name]['discriminator'] / 1e6:.2f}M parameters")
    # V1 adapted to hop 160 (rates (10, 4, 2, 2), kernels (20, 8, 4, 4)) against the published 13.92M.
    assert abs(sizes["hifigan_v1"]["generator"] - PUBLISHED_V1_PARAMETERS) / PUBLISHED_V1_PARAMETERS < 0.03
    # With the published rates (8, 8, 2, 2) and kernels (16, 16, 4, 4) for hop 256 it is V1 exactly.
    published = HiFiGANGenerator(in_channels=80, hop_length=256, upsample_rates=(8, 8, 2, 2),
                                 upsample_kernel_sizes=(16, 16, 4, 4), upsample_initial_channel=512)
    assert abs(count(published) - PUBLISHED_V1_PARAMETERS) / PUBLISHED_V1_PARAMETERS < 0.002
    assert sizes["hifigan"]["generator"] < 1.5e6
