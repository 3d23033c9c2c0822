"""WaveGlow (seed 001): invertibility, log-determinants, weight norm, speaker conditioning, config errors,
the waveglow_vq family's steps and checkpoint averaging. Fast: tiny flows on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.bin import average_checkpoints as average_bin
from voiceswap.nets.vocoders.waveglow import (
    FiLM,
    Invertible1x1Conv,
    WN,
    AffineCoupling,
    WaveGlow,
    WaveGlowConfigError,
    WaveGlowVocoder,
    WaveGlowVocoderNet,
    WaveGlowVQ,
    check_flow_sizes,
    flow_nll,
    squeeze,
    unsqueeze,
)
from voiceswap.train.averaging import AveragingError, average_checkpoints, last_checkpoints
from voiceswap.train.checkpoint import load_checkpoint_for_inference, save_checkpoint
from voiceswap.train.registry import get_family

TINY_FLOW = dict(n_flows=4, n_group=8, n_early_every=2, n_early_size=2, wn_layers=2, wn_channels=8)


def randomise(module: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Give the zero-initialised layers (WN ends, FiLM) random weights: a fresh flow is too close to the
    identity for an invertibility test to mean anything."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for sub in module.modules():
            layers = [sub.end] if isinstance(sub, WN) else [sub.local, sub.global_] if isinstance(sub, FiLM) else []
            for layer in layers:
                if layer is not None:
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                    layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * std)
    return module


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)


# ------------------------------------------------------------------ layers


def test_squeeze_groups_consecutive_samples_and_unsqueeze_inverts_it():
    audio = torch.arange(16.0).reshape(1, 16)
    steps = squeeze(audio, 4)
    assert steps.shape == (1, 4, 4) and steps[0, :, 1].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert torch.equal(unsqueeze(steps), audio)


def test_invertible_conv_starts_as_a_rotation_and_its_log_det_equals_slogdet():
    torch.manual_seed(0)
    conv = Invertible1x1Conv(6)
    weight = conv.weight.detach().double()
    close(weight @ weight.T, torch.eye(6, dtype=torch.float64), atol=1e-6)
    assert torch.det(weight) > 0
    with torch.no_grad():  # a general matrix, not a rotation: the log-det is no longer 0
        conv.weight.mul_(torch.linspace(0.5, 2.0, 6).unsqueeze(1))
    x = torch.randn(3, 6, 10)
    y, log_det = conv(x)
    assert log_det.dtype == torch.float64
    assert math.isclose(log_det.item(), torch.linalg.slogdet(conv.weight.double())[1].item(), rel_tol=1e-12)
    close(y, torch.einsum("ij,bjt->bit", conv.weight, x))
    close(conv.inverse(y), x)


def test_invertible_conv_caches_its_inverse_until_the_weight_changes():
    torch.manual_seed(0)
    conv = Invertible1x1Conv(4)
    first = conv.inverse_weight(torch.float32)
    assert conv.inverse_weight(torch.float32) is first  # computed once
    optimiser = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv(torch.randn(2, 4, 5))[0].pow(2).sum().backward()
    optimiser.step()
    second = conv.inverse_weight(torch.float32)
    assert second is not first
    close(second @ conv.weight.detach(), torch.eye(4), atol=1e-5)
    conv.load_state_dict({"weight": torch.eye(4) * 2})  # a checkpoint or EMA load changes it too
    close(conv.inverse_weight(torch.float32), torch.eye(4) / 2)


@pytest.mark.parametrize("speaker_dim", [0, 5])
def test_coupling_and_film_invert_with_and_without_a_speaker(speaker_dim):
    torch.manual_seed(0)
    speaker = torch.randn(2, speaker_dim) if speaker_dim else None
    cond = torch.randn(2, 7, 12)
    x = torch.randn(2, 6, 12)
    coupling = randomise(AffineCoupling(6, 7, 3, 8, 3, speaker_dim, True))
    y, log_s = coupling(x, cond, speaker)
    assert not torch.allclose(y, x) and log_s.shape == (2, 3, 12)
    close(coupling.inverse(y, cond, speaker), x)
    film = randomise(FiLM(6, 7, speaker_dim))
    y, log_gamma = film(x, cond, speaker)
    assert not torch.allclose(y, x) and log_gamma.shape == (2, 6, 12)
    close(film.inverse(y, cond, speaker), x)


@pytest.mark.parametrize("film,speaker_dim", [(False, 0), (True, 0), (False, 6), (True, 6)])
def test_infer_of_forward_reconstructs_the_waveform(film, speaker_dim):
    torch.manual_seed(0)
    flow = randomise(WaveGlow(cond_channels=10, global_channels=speaker_dim, film=film, **TINY_FLOW))
    audio = torch.randn(2, 8 * 24) * 0.3
    cond = torch.randn(2, 10, 24)
    speaker = torch.randn(2, speaker_dim) if speaker_dim else None
    output = flow(audio, cond, speaker)
    assert output.z.shape == (2, 8, 24)
    assert not torch.allclose(output.z, squeeze(audio, 8))  # the flow really transforms
    with torch.no_grad():
        close(flow.infer(cond, speaker, z=output.z), audio)


def test_early_outputs_leave_the_flow_as_configured():
    flow = WaveGlow(cond_channels=4, n_flows=12, n_group=8, n_early_every=4, n_early_size=2, wn_layers=1, wn_channels=4)
    assert flow.channels == [8] * 4 + [6] * 4 + [4] * 4  # the seed's 8 -> 6 -> 4
    assert [conv.weight.shape[0] for conv in flow.convinv] == flow.channels


def test_log_det_is_the_log_det_of_the_jacobian():
    """The flow's log-det (couplings, FiLM, 1x1 convs in float64) equals log|det dz/dx| computed by autograd."""
    torch.manual_seed(0)
    flow = randomise(WaveGlow(cond_channels=3, global_channels=2, film=True, n_flows=3, n_group=4, n_early_every=2,
                              n_early_size=2, wn_layers=2, wn_channels=4), std=0.3).double()
    with torch.no_grad():  # make the 1x1 convs general matrices with a non-zero log-det
        for conv in flow.convinv:
            conv.weight.mul_(torch.linspace(0.7, 1.6, conv.weight.shape[0], dtype=torch.float64).unsqueeze(1))
    cond, speaker = torch.randn(1, 3, 5, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)
    audio = torch.randn(1, 20, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda a: flow(a, cond, speaker).z.reshape(-1), audio).reshape(20, 20)
    output = flow(audio, cond, speaker)
    total = output.log_det_steps.sum().double() + output.conv_log_det * 5
    assert abs(output.conv_log_det.item()) > 0.1
    assert math.isclose(total.item(), torch.linalg.slogdet(jacobian)[1].item(), rel_tol=1e-4, abs_tol=1e-4)


def test_nll_of_a_fresh_flow_is_the_gaussian_energy_and_the_mask_leaves_padding_out():
    # A fresh flow is a product of rotations (couplings and FiLM start as the identity): z has the
    # norm of x and no log-det, so the NLL per dimension is mean(x^2) / 2.
    torch.manual_seed(0)
    flow = WaveGlow(cond_channels=3, film=True, **TINY_FLOW)
    audio = torch.randn(2, 8 * 10)
    output = flow(audio, torch.randn(2, 3, 10))
    close(flow_nll(output), audio.pow(2).mean() / 2)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False  # the last 4 steps (32 samples) of the second example are padding
    real = torch.cat([audio[0], audio[1, :48]])
    close(flow_nll(output, mask), real.pow(2).mean() / 2)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("sizes,hop,message", [
    (dict(n_group=7, n_flows=12, n_early_every=4, n_early_size=2), 160, "n_group is 7: it must be even"),
    (dict(n_group=12, n_flows=12, n_early_every=4, n_early_size=2), 160,
     "n_group 12 does not divide the features' hop_length 160"),
    (dict(n_group=8, n_flows=12, n_early_every=4, n_early_size=4), 160,
     "leave 0 of n_group 8 channels for the last flow"),
    (dict(n_group=8, n_flows=12, n_early_every=4, n_early_size=3), 160, "n_early_size is 3: it must be even"),
])
def test_impossible_flow_sizes_are_one_clear_line(sizes, hop, message):
    with pytest.raises(WaveGlowConfigError) as error:
        check_flow_sizes(hop_length=hop, **sizes)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_vocoder_family_rejects_a_hop_the_group_does_not_divide():
    from voiceswap.train.config import apply_overrides, load_config

    config = apply_overrides(load_config("conf/vocoder/waveglow.yaml"), ["model.n_group=48"])
    with pytest.raises(ValueError, match="model.n_group 48 does not divide the features' hop_length 160"):
        get_family("waveglow")().build(config, num_speakers=1)


def test_waveglow_vq_rejects_a_crop_that_is_not_a_whole_number_of_codes():
    from voiceswap.train.config import apply_overrides, load_config

    config = apply_overrides(load_config("conf/waveglow_vq.yaml"), ["data.crop_frames=63"])
    message = "data.crop_frames 63 x hop 160 = 10080 samples is not a multiple of 64"
    with pytest.raises(WaveGlowConfigError, match=message):
        get_family("waveglow_vq")().build(config, num_speakers=2)


def _normalised(module: torch.nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight")


@pytest.mark.parametrize("enabled", [True, False])
def test_weight_norm_sits_on_the_wn_kernels_only(enabled):
    net = WaveGlowVQ(num_speakers=2, film=True, weight_norm=enabled, speaker_dim=3, encoder_channels=4, code_dim=4,
                     codebook_size=4, upsampler_channels=4, cond_channels=2, **TINY_FLOW)
    for coupling in net.flow.couplings:
        wn = coupling.wn
        for layer in [wn.start, wn.cond_layer, wn.global_layer, *wn.in_layers, *wn.res_skip_layers]:
            assert _normalised(layer) == enabled
        assert not _normalised(wn.end)  # zero-initialised end layer: never normalised (the seed)
    others = [*net.flow.convinv, *net.flow.films, *net.encoder.modules(), *net.upsampler.modules()]
    assert not any(_normalised(module) for module in others)  # 1x1 convs, FiLM, conditioner


def test_the_vocoder_folds_weight_norm_away_without_changing_the_audio():
    torch.manual_seed(0)
    net = randomise(WaveGlowVocoderNet(n_mels=5, hop_length=16, cond_channels=6, film=True, **TINY_FLOW)).eval()
    mel = torch.randn(1, 5, 7)
    vocoder = WaveGlowVocoder(net, sigma=0.7, seed=3)
    assert not any(_normalised(m) for m in vocoder.modules())
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        expected = net.infer(mel, 0.7, generator=generator)
    audio = vocoder(mel)
    assert audio.shape == (1, 7 * 16)
    close(audio, expected)
    close(vocoder(mel), audio)  # seeded: repeatable


# ------------------------------------------------------------------ waveglow_vq


def tiny_vq(**extra) -> WaveGlowVQ:
    torch.manual_seed(0)
    sizes = dict(num_speakers=3, film=True, speaker_dim=4, encoder_channels=8, encoder_kernel_size=8,
                 encoder_strides=(4, 4), code_dim=6, codebook_size=8, upsampler_channels=8, cond_channels=2)
    return randomise(WaveGlowVQ(**{**sizes, **TINY_FLOW, **extra}))


def test_waveglow_vq_reconstructs_from_its_own_z_and_the_speaker_changes_the_sample():
    net = tiny_vq().eval()
    audio = torch.randn(2, 160) * 0.3
    speakers = torch.tensor([0, 2])
    output = net(audio, speakers)
    assert output.vq.indices.shape == (2, 10)  # one code per 16 samples (strides 4 x 4)
    with torch.no_grad():
        condition = net.condition(net.quantize(audio).quantized)
        close(net.flow.infer(condition, net.speaker(speakers), z=output.flow.z), audio)
    sample = lambda speaker: net.convert(audio[:1], torch.tensor([speaker]), 0.9,  # noqa: E731
                                         torch.Generator().manual_seed(0))
    close(sample(1), sample(1))  # the same seed and speaker: the same audio
    assert (sample(1) - sample(2)).abs().max() > 1e-3  # another speaker embedding: other audio


def test_waveglow_vq_family_trains_masks_padding_and_converts_to_audio():
    family = get_family("waveglow_vq")()
    config = {"family": "waveglow_vq", "content": {"features": {"kind": "waveform", "sample_rate": 16000,
                                                                "hop_length": 16}},
              "data": {"crop_frames": 10},
              "model": dict(film=True, speaker_dim=4, encoder_channels=8, encoder_kernel_size=8, encoder_strides=[4, 4],
                            code_dim=6, codebook_size=8, upsampler_channels=8, cond_channels=2, **TINY_FLOW)}
    torch.manual_seed(0)
    family.models = family.build(config, num_speakers=3)
    frames = torch.randn(2, 10, 16) * 0.3
    mask = torch.ones(2, 10, dtype=torch.bool)
    batch = {"input": frames, "mask": mask, "speakers": torch.tensor([0, 1])}
    loss, metrics = family.losses(batch)
    assert math.isfinite(loss.item()) and {"nll", "vq", "perplexity", "codes_used"} <= set(metrics)
    loss.backward()
    codebook = family.models["model"].vq.codebook
    assert codebook.grad is not None and codebook.grad.abs().sum() > 0  # soft-EM: the codebook learns by gradient
    # Padding at the end of the second utterance is left out: its content does not change the loss.
    mask[1, 7:] = False
    padded = frames.clone()
    first, _ = family.losses({**batch, "input": padded, "mask": mask})
    padded[1, 7:] = 5.0
    second, _ = family.losses({**batch, "input": padded, "mask": mask})
    assert abs(first.item() - second.item()) < 0.05 * abs(first.item()) + 1e-3
    # Conversion: a waveform of the source's length, and code indices at 1 per 16 samples.
    family.models["model"].eval()
    source = torch.randn(9, 16) * 0.3  # 144 samples: not a multiple of the encoder's 16 x n_group 8
    audio = family.convert_audio(source, 2)
    assert audio.shape == (144,) and torch.isfinite(audio).all()
    assert family.encode_units(source)["indices"].shape == (9,)
    assert family.unit_inventory() == 8


# ------------------------------------------------------------------ checkpoint averaging


def _checkpoint(directory, step: int, value: float, counter: int, ema: bool = True):
    models = {"model": {"w": torch.full((2, 3), value), "n": torch.tensor(counter)}}
    state = {"models": models, "config": {"family": "toy"}, "step": step, "optimizers": {}}
    if ema:
        state["ema"] = {"model": {"decay": 0.9, "num_updates": step,
                                  "shadow": {"w": torch.full((2, 3), 10 * value), "n": torch.tensor(counter)}}}
    return save_checkpoint(directory, step, state, keep_last=None)


def test_averaging_two_known_checkpoints(tmp_path):
    _checkpoint(tmp_path, 10, 1.0, 3)
    _checkpoint(tmp_path, 20, 2.0, 5)
    _checkpoint(tmp_path, 30, 4.0, 7)
    assert [p.name for p in last_checkpoints(tmp_path, 2)] == ["step_20.pt", "step_30.pt"]
    assert average_bin.main(["--exp-dir", str(tmp_path), "--last", "2"]) == 0
    out = tmp_path / "checkpoints" / "avg_20-30.pt"
    state = load_checkpoint_for_inference(out)  # a checkpoint inference can load
    torch.testing.assert_close(state["models"]["model"]["w"], torch.full((2, 3), 3.0))
    assert state["models"]["model"]["n"].item() == 7  # integers come from the newest
    torch.testing.assert_close(state["ema"]["model"]["shadow"]["w"], torch.full((2, 3), 30.0))
    assert state["step"] == 30 and state["averaged_steps"] == [20, 30]
    assert last_checkpoints(tmp_path, 3)[-1].name == "step_30.pt"  # the average is never taken for a step checkpoint


def test_averaging_refuses_what_does_not_average(tmp_path):
    first = _checkpoint(tmp_path / "a", 10, 1.0, 3)
    without_ema = _checkpoint(tmp_path / "b", 20, 2.0, 5, ema=False)
    with pytest.raises(AveragingError, match="some checkpoints have EMA weights and some do not"):
        average_checkpoints([first, without_ema])
    with pytest.raises(AveragingError, match="fewer than the 4 to average"):
        last_checkpoints(tmp_path / "a", 4)
    other = tmp_path / "c"
    save_checkpoint(other, 5, {"models": {"model": {"w": torch.zeros(3, 2)}}, "config": {"family": "toy"},
                               "step": 5}, keep_last=None)
    other_shape = str(other / "checkpoints" / "step_5.pt")
    assert average_bin.main(["--out", str(tmp_path / "x.pt"), str(first), other_shape]) == 1
    assert not (tmp_path / "x.pt").exists()


def test_an_averaged_checkpoint_loads_as_the_experiment(tmp_path):
    """The averaged checkpoint of a real family loads through Experiment.load (EMA weights averaged too)."""
    from voiceswap.train.averaging import save_averaged
    from voiceswap.train.experiment import Experiment

    config = {"family": "waveglow", "features": {"n_mels": 4, "hop_length": 16},
              "model": dict(cond_channels=4, **TINY_FLOW)}
    family = get_family("waveglow")()
    exp = tmp_path / "exp"
    (exp).mkdir()
    (exp / "spk2id").write_text("a 0\n")
    import yaml
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    states = []
    for step in (1, 2):
        torch.manual_seed(step)
        model = family.build(config, 1)["model"]
        state = {"models": {"model": model.state_dict()}, "config": config, "step": step,
                 "ema": {"model": {"decay": 0.9, "num_updates": step, "shadow": model.state_dict()}}}
        states.append(state)
        save_checkpoint(exp, step, state, keep_last=None)
    averaged = save_averaged(average_checkpoints(last_checkpoints(exp, 2)), exp / "checkpoints" / "avg.pt")
    loaded = Experiment(exp).load(checkpoint=averaged)
    key = "flow.convinv.0.weight"
    expected = (states[0]["models"]["model"][key] + states[1]["models"]["model"][key]) / 2
    torch.testing.assert_close(loaded.models["model"].state_dict()[key], expected)
    vocoder = loaded.family.vocoder(config, {"n_mels": 4, "hop_length": 16})
    assert np.isfinite(vocoder(torch.randn(1, 4, 3)).numpy()).all()


# ------------------------------------------------------------------ conversion without a vocoder


class _AudioFamily:
    """A family that makes audio itself: a 440 Hz tone of 1000 samples, whatever it is asked."""

    def convert_audio(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        self.asked = (features.shape, target_speaker)
        return 2.0 * torch.sin(torch.arange(1000) * 2 * math.pi * 440 / 16000)


def test_converter_takes_a_familys_own_audio_skips_the_vocoder_and_writes_its_log_mel():
    from pathlib import Path

    from voiceswap.conversion import Converter, TargetFeatures
    from voiceswap.features.spectral import FeatureConfig, FeatureExtractor
    from voiceswap.train.experiment import Experiment, LoadedExperiment

    family = _AudioFamily()
    model = LoadedExperiment(Experiment("exp/x"), family, {}, {"family": "toy"}, {"a": 0, "b": 1}, Path("x.pt"), 0)
    config = FeatureConfig(type="logmel")
    target = TargetFeatures(config, torch.zeros(80), torch.ones(80))
    # A trained vocoder without its dir would fail to load: it must not even be loaded.
    converter = Converter(model, target, {"family": "hifigan"}, vocoder_dir=None)
    assert converter.vocoder is None
    log_mel, audio = converter.convert(torch.zeros(9, 160), "b", num_frames=9)
    assert family.asked == ((9, 160), 1)
    assert audio.shape == (9 * 160,) and np.all(audio[1000:] == 0)  # padded to the source's frames x hop
    assert np.abs(audio).max() <= 0.99 + 1e-6  # peak-limited as vocoded audio is
    np.testing.assert_allclose(log_mel, FeatureExtractor(config)(audio.astype(np.float32)))
    assert log_mel.shape == (9, 80)
    _, cropped = converter.convert(torch.zeros(5, 160), "a", num_frames=5)
    assert cropped.shape == (800,)


def test_under_autocast_the_conv_log_det_stays_float64_and_the_loss_finite():
    """The fp16 path autocasts the convolutions; the 1x1 convs' log-det must not drop to half precision.
    (CPU autocast runs bfloat16; the GPU config's fp16 takes the same code path.)"""
    torch.manual_seed(0)
    net = randomise(WaveGlowVocoderNet(n_mels=5, hop_length=16, cond_channels=6, film=True, **TINY_FLOW))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = net(torch.randn(2, 64) * 0.3, torch.randn(2, 5, 4))
        loss = flow_nll(output)
    assert output.conv_log_det.dtype == torch.float64 and loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
