"""The diffusion family (seed 000): schedules, the reverse step, the sampler, guidance, bad settings.

Fast tests on the maths with oracle or toy models; the family contract test (``-k diffusion``)
and the tiny recipe run at the end (stages 4-9 with the classifier experiment and classifier
guidance) cover training, reloading, conversion and scoring.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, TINY_CLASSIFIER, run_recipe_in

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.families.diffusion import DiffusionFamily, InferenceSettings, mu_law_decode, mu_law_encode
from voiceswap.nets.diffusion.classifier import AttentionPool1d, NoisyClassifier
from voiceswap.nets.diffusion.encoder import VQDiffusion
from voiceswap.nets.diffusion.sampler import (
    DiffusionSampler,
    NonFiniteSample,
    cfg_eps,
    classifier_grad,
    reverse_mean,
    step_coefficients,
)
from voiceswap.nets.diffusion.schedules import CosSchedule, ExpSchedule, noise_schedule, timesteps
from voiceswap.nets.diffusion.unet import UNet
from voiceswap.train.config import load_config

CONF = REPO_ROOT / "conf"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Thousands of tiny ops: threads only add synchronisation (seconds on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Schedules.

def test_exp_schedule_ends():
    schedule = ExpSchedule()
    assert schedule.alpha_bar(torch.tensor(0.0)).item() == 1.0
    assert schedule.alpha_bar(torch.tensor(1.0)).item() == pytest.approx(1e-5, rel=1e-4)
    assert schedule.k == pytest.approx(11.5129, abs=1e-3)  # the seed's -ln(1e-5)
    assert schedule.alpha_bar(torch.tensor(0.5)).item() == pytest.approx(math.exp(-schedule.k / 4), rel=1e-5)


def test_cos_schedule_ends():
    schedule = CosSchedule()
    assert schedule.alpha_bar(torch.tensor(0.0)).item() == 1.0
    assert schedule.alpha_bar(torch.tensor(0.5)).item() == pytest.approx(0.5, rel=1e-5)
    assert schedule.alpha_bar(torch.tensor(1.0)).item() == pytest.approx(1e-5)  # the floor, not the seed's 0


def test_timesteps_identity_and_square():
    assert torch.allclose(timesteps(4, "identity"), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    assert torch.allclose(timesteps(4, "square"), torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_timesteps_reject_bad_step_counts(steps):
    with pytest.raises(ValueError, match="integer >= 1"):
        timesteps(steps)


def test_unknown_schedule_names():
    with pytest.raises(ValueError, match="unknown noise schedule 'linear'; schedules: exp, cos"):
        noise_schedule("linear")
    with pytest.raises(ValueError, match="unknown sampling schedule 'cube'; schedules: identity, square"):
        timesteps(10, "cube")


# The reverse step.

@pytest.mark.parametrize("schedule", [ExpSchedule(), CosSchedule()])
def test_q_sample_then_true_eps_mean_recovers_x0(schedule):
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 80, 20), torch.randn(3, 80, 20)
    t = 0.02
    x_t = schedule.q_sample(x0, torch.full((3,), t), eps)
    # To s = 0 the mean with the true noise is x0 itself ...
    assert torch.allclose(reverse_mean(schedule, x_t, t, 0.0, eps), x0, atol=1e-4)
    # ... and to s > 0 it is the mean of q(x_s | x_t, x0) (Ho et al., eq. 7).
    s = 0.01
    abar_t, abar_s = (float(schedule.alpha_bar(torch.tensor(v, dtype=torch.float64))) for v in (t, s))
    alpha = abar_t / abar_s
    posterior = (math.sqrt(abar_s) * (1 - alpha) * x0 + math.sqrt(alpha) * (1 - abar_s) * x_t) / (1 - abar_t)
    assert torch.allclose(reverse_mean(schedule, x_t, t, s, eps), posterior, atol=1e-4)


def test_posterior_variance_vanishes_at_the_last_step():
    schedule = ExpSchedule()
    _, beta, variance = step_coefficients(schedule, 0.1, 0.0)
    assert variance == 0.0 and beta > 0
    assert step_coefficients(schedule, 0.1, 0.0, sigma_large=True)[2] == pytest.approx(beta)


@pytest.mark.parametrize("schedule_name", ["identity", "square"])
def test_sampler_with_oracle_eps_returns_the_data_point(schedule_name):
    """An eps predictor that knows x0 (eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)) must lead back to x0."""
    schedule = ExpSchedule()
    torch.manual_seed(1)
    x0 = torch.randn(2, 80, 16)

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return schedule.x0_to_eps(x.double(), t.double(), x0.double()).float()

    sampler = DiffusionSampler(schedule, steps=20, sampling_schedule=schedule_name)
    sample = sampler.sample(oracle, torch.randn(2, 80, 16), torch.Generator().manual_seed(0))
    assert torch.allclose(sample, x0, atol=1e-3)


def test_sampler_refuses_non_finite_values():
    sampler = DiffusionSampler(ExpSchedule(), steps=5)

    def diverged(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float("nan")) if t[0] < 0.5 else torch.zeros_like(x)

    with pytest.raises(NonFiniteSample, match=r"sampling step 4/5 \(t 0.4 -> 0.2\)"):
        sampler.sample(diverged, torch.randn(1, 4, 8))


# Guidance.

class ToyClassifier(torch.nn.Module):
    """Two classes told apart by the mean of the input: logits (-m, m) scaled, whatever t."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = 4.0 * x.mean(dim=(1, 2))
        return torch.stack([-m, m], dim=1)


def test_classifier_guidance_raises_the_chosen_class_log_prob_with_the_scale():
    schedule = ExpSchedule()
    classifier = ToyClassifier()
    labels = torch.ones(16, dtype=torch.long)

    def gaussian_data(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # The exact eps predictor for data x0 ~ N(0, I): E[eps | x_t] = sqrt(1 - abar) x_t.
        return (1.0 - schedule.alpha_bar(t)).sqrt().view(-1, 1, 1) * x

    log_probs = []
    for scale in (0.0, 1.0, 4.0, 16.0):
        sampler = DiffusionSampler(schedule, steps=20)
        sample = sampler.sample(gaussian_data, torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(0)),
                                torch.Generator().manual_seed(1), classifier_grad(classifier, labels), scale)
        log_p = torch.log_softmax(classifier(sample, torch.zeros(16)), dim=1)[:, 1].mean().item()
        log_probs.append(log_p)
    # The same noise for every scale: the guided samples move toward class 1, more with more scale.
    assert log_probs == sorted(log_probs) and log_probs[-1] > log_probs[0] + 0.3, log_probs


def test_cfg_scale_zero_is_the_conditional_model():
    torch.manual_seed(0)
    unet = UNet(in_channels=8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, middle_dilations=(2,),
                num_classes=3, cond_channels=4)
    for p in unet.parameters():  # non-zero weights everywhere, so label and no-label really differ
        torch.nn.init.normal_(p, std=0.05)
    labels, codes = torch.tensor([0, 2]), torch.randn(2, 4, 5)
    conditional = lambda x, t: unet(x, t, labels, codes)  # noqa: E731
    unconditional = lambda x, t: unet(x, t, None, codes)  # noqa: E731
    x, t = torch.randn(2, 8, 10), torch.tensor([0.3, 0.7])
    with torch.no_grad():
        assert torch.equal(cfg_eps(conditional, unconditional, 0.0)(x, t), conditional(x, t))
        guided = cfg_eps(conditional, unconditional, 2.0)(x, t)
        assert torch.allclose(guided, 3 * conditional(x, t) - 2 * unconditional(x, t), atol=1e-5)
        assert not torch.allclose(guided, conditional(x, t))
        sampler = DiffusionSampler(ExpSchedule(), steps=4)
        a = sampler.sample(cfg_eps(conditional, unconditional, 0.0), x.clone(), torch.Generator().manual_seed(3))
        b = sampler.sample(conditional, x.clone(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# Nets.

def test_unet_any_length_and_zero_output_at_init():
    unet = UNet(in_channels=80, base_channels=16, channel_mult=(5, 5, 6), num_res_blocks=1, middle_dilations=(4,),
                num_classes=4, cond_channels=8)
    for frames in (37, 64, 101):
        codes = torch.randn(2, 8, (frames + 1) // 2)
        out = unet(torch.randn(2, 80, frames), torch.rand(2), torch.tensor([0, 4]), codes)
        assert out.shape == (2, 80, frames)
        assert torch.count_nonzero(out) == 0  # zero-initialised output conv: eps_hat = 0 untrained


def test_unet_narrower_than_its_input_is_refused():
    with pytest.raises(ValueError, match=r"channel_mult\[0\] = 32 channels, fewer than its 80 input channels"):
        UNet(in_channels=80, base_channels=32, channel_mult=(1, 2))
    UNet(in_channels=1, base_channels=32, channel_mult=(1, 2))  # the seed's waveform UNet


def test_attention_pooling_ignores_masked_frames():
    torch.manual_seed(0)
    pool = AttentionPool1d(channels=32, out_dim=16, head_dim=8)
    x = torch.randn(1, 32, 10)
    padded = torch.cat([x, 100 * torch.randn(1, 32, 6)], dim=2)
    mask = torch.arange(16)[None] < 10
    assert torch.allclose(pool(padded, mask), pool(x, torch.ones(1, 10, dtype=torch.bool)), atol=1e-5)
    assert not torch.allclose(pool(padded, torch.ones(1, 16, dtype=torch.bool)), pool(x, mask[:, :10]), atol=1e-3)


def test_noisy_classifier_shapes():
    classifier = NoisyClassifier(num_classes=3, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                                 feature_dim=32, head_dim=16)
    out = classifier(torch.randn(2, 80, 37), torch.rand(2), torch.arange(37)[None].expand(2, -1) < 30)
    assert out["logits"].shape == (2, 3) and out["features"].shape == (2, 32)
    assert torch.count_nonzero(out["logits"]) == 0  # zero-initialised head: uniform before training


def test_vq_encoder_gives_one_code_per_two_frames():
    model = VQDiffusion(num_speakers=2, in_dim=39, out_dim=80, encoder_channels=16, code_dim=8, codebook_size=4,
                        base_channels=8, channel_mult=(10, 10), num_res_blocks=1, middle_dilations=(2,))
    for frames in (20, 21):
        assert model.quantize(torch.randn(1, 39, frames)).quantized.shape == (1, 8, (frames + 1) // 2)


def test_eps_skip_is_x_t_at_high_noise_and_the_unet_at_none():
    torch.manual_seed(0)
    model = VQDiffusion(num_speakers=2, in_dim=39, out_dim=80, encoder_channels=16, code_dim=8, codebook_size=4,
                        base_channels=8, channel_mult=(10, 10), num_res_blocks=1, middle_dilations=(2,),
                        eps_skip=True, schedule=ExpSchedule())
    for p in model.unet.parameters():  # an untrained, non-zero UNet
        torch.nn.init.normal_(p, std=0.05)
    x, codes, labels = torch.randn(2, 80, 16), torch.randn(2, 8, 8), torch.tensor([0, 1])
    with torch.no_grad():
        raw = model.unet(x, torch.ones(2), labels, codes)
        assert (raw - x).abs().mean() > 0.1
        assert torch.allclose(model.eps(x, torch.ones(2), labels, codes), x, atol=0.02)
        assert torch.allclose(model.eps(x, torch.zeros(2), labels, codes), model.unet(x, torch.zeros(2), labels, codes))
    with pytest.raises(ValueError, match="eps_skip needs the noise schedule"):
        VQDiffusion(num_speakers=2, base_channels=8, channel_mult=(10, 10), eps_skip=True)


def test_mu_law_round_trip():
    audio = torch.linspace(-1.0, 1.0, 101)
    encoded = mu_law_encode(audio)
    assert encoded.abs().max() <= 1.0 and encoded[60] > audio[60]  # small amplitudes are expanded
    assert torch.allclose(mu_law_decode(encoded), audio, atol=1e-5)


# The family's settings (bad input: one line naming the option).

def _config(**inference):
    config = load_config(CONF / "diffusion.yaml")
    config["inference"].update(inference)
    return config


@pytest.mark.parametrize("inference, message", [
    ({"sampling_schedule": "cube"}, "inference.sampling_schedule is 'cube'; sampling schedules: identity, square"),
    ({"steps": 0}, "inference.steps is 0; the sampler needs an integer >= 1 step"),
    ({"guidance": "both"}, "inference.guidance is 'both'; choose one of none, classifier, cfg"),
    ({"scale": -1.0}, "inference.scale (-1.0)"),
])
def test_bad_inference_settings_are_one_line(inference, message):
    with pytest.raises(ValueError) as error:
        InferenceSettings.of(_config(**inference))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "--inference-overrides" in str(error.value)


def test_bad_noise_schedule_names_the_option():
    config = _config()
    config["diffusion"]["schedule"] = "linear"
    with pytest.raises(ValueError, match=r"diffusion.schedule is 'linear'; noise schedules: exp, cos"):
        DiffusionFamily().build(config, num_speakers=2)


def test_classifier_guidance_needs_a_classifier_section_and_names_stage_6():
    config = _config(guidance="classifier")
    assert DiffusionFamily().requires(config) == {"classifier": 6}
    assert DiffusionFamily().requires(_config(guidance="cfg")) == {}
    del config["classifier"]
    with pytest.raises(ValueError, match="needs a classifier: section .* stage 6"):
        DiffusionFamily().build(config, num_speakers=2)


def test_guidance_without_a_loaded_classifier_is_a_clear_error():
    family = DiffusionFamily()
    config = _config(guidance="classifier", steps=2)
    config["model"].update(encoder_channels=16, code_dim=8, codebook_size=4, base_channels=8, channel_mult=[10, 10],
                           num_res_blocks=1, middle_dilations=[2])
    family.models = family.build(config, num_speakers=2)
    with pytest.raises(RuntimeError, match="no guidance classifier was loaded.*stage 6"):
        family.convert(torch.randn(20, 39), 1)


def test_plan_trains_the_classifier_in_stage_6():
    steps = DiffusionFamily().plan(_config())
    assert [(s.stage, s.kind, s.section) for s in steps] == [(4, "train", ""), (5, "dump_units", ""),
                                                              (6, "train", "classifier")]


# The recipe: stages 4-9 with the classifier experiment and classifier guidance.

TINY_CORPUS = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
               "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]
TINY_DIFFUSION = ("model.encoder_channels=16 model.code_dim=8 model.codebook_size=8 model.base_channels=8 "
                  "model.channel_mult=[10,10] model.num_res_blocks=1 model.middle_dilations=[2] "
                  "data.batch_size=4 data.crop_frames=64 data.num_workers=0 train.max_steps=4 "
                  "train.valid_interval=4 train.save_interval=4 train.log_interval=2 "
                  "classifier.model.base_channels=8 classifier.model.channel_mult=[1,2] "
                  "classifier.model.num_res_blocks=1 classifier.model.feature_dim=16 classifier.model.head_dim=8 "
                  "classifier.data.batch_size=4 classifier.data.crop_frames=64 classifier.data.num_workers=0 "
                  "classifier.train.max_steps=4 classifier.train.valid_interval=4 classifier.train.save_interval=4 "
                  "classifier.train.log_interval=2")
GUIDED = "inference.guidance=classifier inference.scale=2 inference.steps=3"


@pytest.fixture(scope="module")
def diffusion_recipe(tmp_path_factory):
    """A tiny corpus (stages 0-3), then stages 4-9 of conf/diffusion.yaml with classifier guidance."""
    tmp = tmp_path_factory.mktemp("diffusion_recipe")
    # One torch thread per training job (train.py divides the CPUs by LOCAL_WORLD_SIZE): a 4-step run
    # is all synchronisation, and two spinning threads on a busy machine made it minutes, not seconds.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(os.cpu_count() or 1))
    result = run_recipe_in(tmp, TINY_CORPUS, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_recipe_in(tmp, TINY_CORPUS, "--model", "diffusion", "--stage", "4", "--stop-stage", "9",
                           "--train-overrides", TINY_DIFFUSION, "--inference-overrides", GUIDED,
                           "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--measures emb,clf")
    monkeypatch.undo()
    assert result.returncode == 0, result.stderr[-3000:]
    experiments = [p for p in (tmp / "exp").iterdir() if p.name.startswith("diffusion")]
    assert len(experiments) == 1
    return tmp, experiments[0], result.stderr


def test_recipe_trains_the_classifier_in_stage_6_and_converts_with_guidance(diffusion_recipe):
    root, exp, log = diffusion_recipe
    assert re.search(r"Stage 6: train diffusion_classifier -> \S+/classifier", log)
    assert "family: diffusion_classifier" in (exp / "classifier" / "config.yaml").read_text()
    assert (exp / "classifier" / "checkpoints" / "best.pt").exists()
    units = root / "dump" / "units" / exp.name / "eval"  # stage 5: the VQ codes, for stage 9's unit metrics
    assert (units / "num_units").read_text().strip() == "8"
    convert = exp / "convert_griffinlim_guidance-classifier_scale-2_steps-3"
    conversions = (convert / "conversions").read_text().splitlines()
    assert conversions and all((convert / "wav" / f"{line.split()[0]}.wav").is_file() for line in conversions)
    metrics = json.loads((exp / "scores_griffinlim_guidance-classifier_scale-2_steps-3" / "metrics.json").read_text())
    converted = metrics["rows"]["converted"]
    assert converted["num_pairs"] == len([c for c in conversions if c.endswith(" conversion")])
    assert math.isfinite(converted["spk_sim_target"]) and 0.0 <= converted["spk_acc"] <= 1.0


def test_guidance_without_the_classifier_experiment_names_stage_6(diffusion_recipe, tmp_path):
    from voiceswap.bin import convert

    root, exp, _ = diffusion_recipe
    hidden = exp.parent / "classifier_hidden"
    (exp / "classifier").rename(hidden)
    try:
        pair = (root / "data" / "eval" / "pairs").read_text().splitlines()[0]
        (tmp_path / "items").write_text(pair + "\n")
        args = ["--exp-dir", str(exp), "--dump-dir", str(root / "dump"), "--utt2spk",
                str(root / "data" / "eval" / "utt2spk"), "--set", "inference.guidance=classifier",
                str(tmp_path / "items"), str(tmp_path / "out")]
        with_guidance = convert.main(args)
        without = convert.main(args[:-4] + ["--set", "inference.guidance=none", *args[-2:]])
    finally:
        hidden.rename(exp / "classifier")
    assert with_guidance == 1 and without == 0


def test_bad_sampling_schedule_at_stage_8_is_one_line(diffusion_recipe, tmp_path):
    root, exp, _ = diffusion_recipe
    command = [sys.executable, str(REPO_ROOT / "voiceswap" / "bin" / "convert.py"), "--exp-dir", str(exp),
               "--dump-dir", str(root / "dump"), "--utt2spk", str(root / "data" / "eval" / "utt2spk"),
               "--set", "inference.sampling_schedule=cubic", str(root / "data" / "eval" / "pairs"),
               str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert result.returncode == 1 and len(errors) == 1
    assert "inference.sampling_schedule is 'cubic'; sampling schedules: identity, square" in errors[0]


def test_generate_scores_samples_like_the_seed(diffusion_recipe, tmp_path):
    from voiceswap.bin import generate

    root, exp, _ = diffusion_recipe
    out = tmp_path / "generate"
    assert generate.main(["--exp-dir", str(exp), "--num-samples", "6", "--seconds", "0.5", "--batch-size", "4",
                          "--set", "inference.steps=2", "--dump-dir", str(root / "dump"),
                          "--data-dir", str(root / "data"), "--dev-set", "dev",
                          "--classifier-dir", str(root / "exp" / "speaker_classifier_synth"), str(out)]) == 0
    samples = (out / "samples").read_text().split()
    assert samples[::2] == [f"sample_{i:06d}" for i in range(6)]
    assert samples[1::2] == ["esf2", "ked", "slt", "esf2", "ked", "slt"]  # the speakers in turn
    assert all((out / "wav" / f"sample_{i:06d}.wav").is_file() for i in range(6))
    scores = json.loads((out / "scores.json").read_text())
    assert 1.0 <= scores["class_score"] <= 3.0 + 1e-6  # exp(KL) is at most the number of speakers
    assert math.isfinite(scores["frechet_score"]) and scores["frechet_score"] >= 0.0
    assert sorted(scores["dev_eps_mse"]) == ["eps_mse", "eps_mse_q1", "eps_mse_q2", "eps_mse_q3", "eps_mse_q4"]
    assert scores["real_time_factor"] > 0
