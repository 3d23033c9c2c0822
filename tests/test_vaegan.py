"""VAE-GAN (seed 003): shapes, learning, the separation of the G and D updates, sliding-window
inference, the seed's features, bad input, and a tiny recipe run (stages 4-9)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, TINY_CLASSIFIER, run_recipe_in

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.ark import ArkWriter
from voiceswap.data.dataset import FeatsDataset, make_spk2id, warn_few_windows
from voiceswap.data.kaldi_dir import DataDirError
from voiceswap.families.vaegan import hann_weights, overlap_add, window_starts
from voiceswap.features.spectral import FeatureExtractor, load_feature_config
from voiceswap.nets.vaegan import Encoder, PatchDiscriminator, SpeakerGenerator, pad_to_multiple
from voiceswap.train.config import ConfigError, apply_overrides, load_config
from voiceswap.train.registry import OptimizerStep, get_family

MELS = 12
#: Small enough that a step takes milliseconds; the structure (downsamplings, blocks) is the default's.
TINY = ["data.crop_frames=16", "data.batch_size=6", f"model.in_dim={MELS}", f"model.out_dim={MELS}",
        "model.encoder_channels=[4,8,8]", "model.encoder_res_blocks=1", "model.generator_res_blocks=1",
        "model.generator_channels=[8,4]", "model.discriminator_channels=[4,8]", "inference.hop=4"]


def tiny_config(*overrides: str) -> dict:
    return apply_overrides(load_config(REPO_ROOT / "conf" / "vaegan.yaml"), TINY + list(overrides))


def bound(config: dict, num_speakers: int = 3, step: OptimizerStep = None):
    """A family with built models and optimisers, bound as the Trainer binds it."""
    family = get_family("vaegan")()
    models = family.build(config, num_speakers)
    optimizers = family.optimizers(models, config)
    family.bind(models, optimizers, step or OptimizerStep(optimizers, grad_clip=None))
    return family


def toy_speech(speakers: List[int], frames: int, seed: int = 0) -> torch.Tensor:
    """Each speaker a different spectral envelope, times a shared random "content" gain per frame."""
    generator = torch.Generator().manual_seed(seed)
    bins = torch.linspace(0, 1, MELS)
    envelopes = torch.stack([torch.cos(torch.pi * (s + 1) * bins) for s in range(4)])
    content = torch.rand(len(speakers), frames, 1, generator=generator)
    return torch.stack([envelopes[s] for s in speakers])[:, None, :] * (0.5 + content) + \
        0.1 * torch.randn(len(speakers), frames, MELS, generator=generator)


def toy_batch(speakers: List[int], frames: int = 16, seed: int = 0, lengths: List[int] = None) -> Dict:
    features = toy_speech(speakers, frames, seed)
    lengths = lengths or [frames] * len(speakers)
    mask = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
    features = features * mask[..., None]
    return {"input": features, "target": features, "speakers": torch.tensor(speakers), "mask": mask,
            "utts": [f"u{i}" for i in range(len(speakers))]}


def parameters_of(family, names) -> Dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone() for name in names
            for key, value in family.models[name].state_dict().items()}


# ------------------------------------------------------------------ nets and shapes


@pytest.mark.parametrize("frames", [1, 15, 16, 17, 33, 50])
def test_conversion_keeps_the_frame_count_of_any_length(frames):
    torch.manual_seed(0)
    family = bound(tiny_config())
    for model in family.models.values():
        model.eval()
    output = family.convert(torch.randn(frames, MELS), target_speaker=2)
    assert output.shape == (frames, MELS) and torch.isfinite(output).all()


@pytest.mark.parametrize("height, width", [(80, 64), (80, 37), (13, 21)])
def test_nets_restore_the_input_size_after_padding_to_the_encoder_scale(height, width):
    encoder = Encoder((4, 8, 8), num_res_blocks=1)
    generator = SpeakerGenerator(8, (8, 4), num_res_blocks=1, output_scale=3.0)
    images, size = pad_to_multiple(torch.randn(2, 1, height, width), encoder.scale)
    assert size == (height, width) and images.shape[-2] % 4 == 0 and images.shape[-1] % 4 == 0
    mu = encoder(images)
    assert mu.shape == (2, 8, images.shape[-2] // 4, images.shape[-1] // 4)
    output = generator(mu)
    assert output.shape == images.shape and output.abs().max() <= 3.0
    patches = PatchDiscriminator((4, 8))(images)
    assert patches.shape == (2, 1, images.shape[-2] // 4, images.shape[-1] // 4)


def test_training_on_odd_widths_and_padded_items():
    torch.manual_seed(0)
    family = bound(tiny_config())
    batch = toy_batch([0, 1, 2, 0, 1, 2], frames=19, lengths=[19, 19, 11, 19, 7, 19])
    metrics = family.train_step(batch, 0)
    assert {"loss", "identity", "cycle", "kl", "kl_cycle", "latent", "g_adv", "d_loss"} <= set(metrics)
    assert all(np.isfinite(value) for value in metrics.values())
    valid = family.valid_step(batch)
    assert {"loss", "identity", "cycle", "kl", "d_real", "d_fake"} == set(valid)


# ------------------------------------------------------------------ learning


def test_own_speaker_path_reconstructs_better_after_a_few_dozen_steps():
    torch.manual_seed(0)
    family = bound(tiny_config("optim.generators.lr=3e-3", "optim.discriminators.lr=3e-3"))
    held_out = toy_batch([0, 1, 2, 0, 1, 2], seed=99)

    def identity_error() -> float:
        for model in family.models.values():
            model.eval()
        error = family.valid_step(held_out)["identity"]
        for model in family.models.values():
            model.train()
        return error

    before = identity_error()
    for step in range(40):
        family.train_step(toy_batch([0, 1, 2, 0, 1, 2], seed=step), step)
    after = identity_error()
    assert after < 0.4 * before, (before, after)


# ------------------------------------------------------------------ the two updates


class RecordingStep(OptimizerStep):
    """An OptimizerStep that records, per call, which models' weights changed and which had gradients."""

    def __init__(self, optimizers, models, **kwargs):
        super().__init__(optimizers, grad_clip=None, **kwargs)
        self.models = models
        self.calls = []

    def __call__(self, loss, optimizer, retain_graph=False):
        before = {name: [p.detach().clone() for p in model.parameters()] for name, model in self.models.items()}
        norm = super().__call__(loss, optimizer, retain_graph)
        changed = {name for name, model in self.models.items()
                   if any(not torch.equal(a, p) for a, p in zip(before[name], model.parameters()))}
        with_grads = {name for name, model in self.models.items()
                      if any(p.grad is not None for p in model.parameters())}
        self.calls.append((optimizer, changed, with_grads))
        return norm


def test_generator_step_leaves_discriminators_alone_and_vice_versa():
    torch.manual_seed(0)
    config = tiny_config()
    family = get_family("vaegan")()
    models = family.build(config, 3)
    optimizers = family.optimizers(models, config)
    assert list(optimizers) == ["generators", "discriminator_0", "discriminator_1", "discriminator_2"]
    recorder = RecordingStep(optimizers, models)
    family.bind(models, optimizers, recorder)
    generator_side = {"encoder", "shared_block", "generator_0", "generator_1", "generator_2"}

    family.train_step(toy_batch([0, 1, 2, 0, 1, 2]), 0)
    name, changed, with_grads = recorder.calls[0]
    assert name == "generators" and changed == generator_side
    assert not with_grads & {"discriminator_0", "discriminator_1", "discriminator_2"}  # frozen during the G loss
    assert all(p.requires_grad for model in models.values() for p in model.parameters())  # and unfrozen after
    for name, changed, with_grads in recorder.calls[1:]:
        assert name.startswith("discriminator_") and changed == {name}
    assert {call[0] for call in recorder.calls[1:]} == {"discriminator_0", "discriminator_1", "discriminator_2"}

    # Only the discriminators of this batch's targets learn: with speakers 0 and 1 present, D_2 waits.
    recorder.calls.clear()
    family.train_step(toy_batch([0, 1, 0, 1, 0, 1]), 1)
    assert {call[0] for call in recorder.calls[1:]} == {"discriminator_0", "discriminator_1"}


def test_generator_loss_adds_nothing_to_accumulated_discriminator_gradients():
    torch.manual_seed(0)
    config = tiny_config()
    family = get_family("vaegan")()
    models = family.build(config, 2)
    optimizers = family.optimizers(models, config)
    step = OptimizerStep(optimizers, grad_clip=None, accum_steps=2)
    family.bind(models, optimizers, step)
    step.micro_step = 0  # the first micro-batch of two: gradients only
    family.train_step(toy_batch([0, 1, 0, 1]), 0)
    after_first = [p.grad.clone() for p in models["discriminator_0"].parameters()]
    step.micro_step = 1
    original = step.__call__
    seen = {}

    def spy(loss, optimizer, retain_graph=False):
        if optimizer == "discriminator_0":  # before D_0's own backward: only the generator loss has run
            seen["before_d"] = [p.grad.clone() for p in models["discriminator_0"].parameters()]
        return original(loss, optimizer, retain_graph)

    family.optimizer_step = spy
    family.train_step(toy_batch([0, 1, 0, 1], seed=1), 0)
    for grad, first in zip(seen["before_d"], after_first):
        assert torch.equal(grad, first)


def test_targets_are_other_speakers_of_the_batch():
    torch.manual_seed(0)
    family = bound(tiny_config(), num_speakers=5)
    speakers = torch.tensor([0, 3, 3, 4, 0, 4, 3, 0])
    for _ in range(20):
        targets = family._targets(speakers)
        assert (targets != speakers).all() and set(targets.tolist()) <= {0, 3, 4}
    assert family._targets(torch.tensor([2, 2, 2])) is None  # one speaker: no translation
    metrics = family.train_step(toy_batch([1, 1, 1, 1]), 0)
    assert "g_adv" not in metrics and np.isfinite(metrics["identity"])


def test_one_generator_optimiser_is_required_and_one_to_one_needs_two_speakers():
    config = tiny_config()
    config["optim"]["generators"]["params"] = "generator_*"  # one optimiser per generator ...
    config["optim"]["encoder"] = {"type": "adam", "lr": 1e-4, "params": ["encoder", "shared_block"]}
    family = get_family("vaegan")()
    models = family.build(config, 2)
    with pytest.raises(ConfigError, match="learn from one loss, so one optimiser must update them all, but optim "
                                          "splits them over encoder, generator_0, generator_1"):
        family.bind(models, family.optimizers(models, config), None)
    with pytest.raises(ConfigError, match="one_to_one trains two speakers, but the train set has 3: name two with "
                                          r"data.speakers=\[A,B\]"):
        get_family("vaegan")().build(tiny_config("model.mode=one_to_one"), 3)
    with pytest.raises(ConfigError, match="generator_channels"):
        get_family("vaegan")().build(tiny_config("model.generator_channels=[4]"), 2)
    with pytest.raises(ConfigError, match="inference.hop"):
        get_family("vaegan")().build(tiny_config("inference.hop=40"), 2)


# ------------------------------------------------------------------ inference


def test_sliding_window_of_one_window_is_a_single_forward_pass():
    torch.manual_seed(0)
    family = bound(tiny_config())
    for model in family.models.values():
        model.eval()
    features = torch.randn(16, MELS)  # exactly data.crop_frames, the window
    with torch.no_grad():
        image, _ = pad_to_multiple(features.T[None, None], 4)
        direct = family.models["generator_1"](family.models["shared_block"](family.models["encoder"](image)))
    torch.testing.assert_close(family.convert(features, 1), direct[0, 0, :MELS].T)


def test_overlap_add_averages_with_positive_hann_weights():
    assert window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert window_starts(41, 16, 8) == [0, 8, 16, 24, 25]  # one more, flush with the end
    weights = hann_weights(16)
    assert (weights > 0).all() and torch.allclose(weights, weights.flip(0))
    assert weights.argmax() in (7, 8)
    # Windows that agree give their common value back, whatever the weights.
    constant = torch.full((5, 16, 3), 2.5)
    torch.testing.assert_close(overlap_add(constant, window_starts(41, 16, 8), 41), torch.full((41, 3), 2.5))
    # Where two windows overlap, the output is their Hann-weighted mean.
    outputs = torch.stack([torch.zeros(16, 1), torch.ones(16, 1)])
    mixed = overlap_add(outputs, [0, 8], 24)
    expected = weights[8:] * 0 + weights[:8] * 1
    torch.testing.assert_close(mixed[8:16, 0], expected / (weights[8:] + weights[:8]))
    torch.testing.assert_close(mixed[:8, 0], torch.zeros(8))


def test_short_utterance_is_padded_and_said_so_at_debug_level(caplog):
    torch.manual_seed(0)
    family = bound(tiny_config())
    with caplog.at_level(logging.DEBUG, logger="voiceswap.families.vaegan"):
        output = family.convert(torch.randn(5, MELS), 0)
    assert output.shape == (5, MELS)
    assert "an utterance of 5 frames is shorter than the 16-frame window: padded" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="voiceswap.families.vaegan"):
        family.convert(torch.randn(16, MELS), 0)
    assert "shorter than" not in caplog.text


# ------------------------------------------------------------------ data: speakers and windows


def write_features(root: Path, utts: Dict[str, tuple]) -> Path:
    """``{utt: (speaker, frames)}`` -> a feats.scp with utt2num_frames and an utt2spk beside it."""
    root.mkdir(parents=True, exist_ok=True)
    with ArkWriter(root / "feats.ark", root / "feats.scp") as writer:
        for utt, (_, frames) in sorted(utts.items()):
            writer[utt] = np.random.default_rng(0).standard_normal((frames, 4)).astype(np.float32)
    (root / "utt2num_frames").write_text("".join(f"{u} {f}\n" for u, (_, f) in sorted(utts.items())))
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, (s, _) in sorted(utts.items())))
    return root


def test_speaker_selection_and_the_few_windows_warning(tmp_path, caplog):
    utts = {f"a-{i}": ("spka", 40) for i in range(3)}
    utts.update({f"b-{i}": ("spkb", 10 if i else 40) for i in range(3)})
    utts.update({f"c-{i}": ("spkc", 40) for i in range(3)})
    root = write_features(tmp_path, utts)
    utt2spk = {u: s for u, (s, _) in utts.items()}
    with pytest.raises(DataDirError, match="data.speakers names 'spkz', not a speaker of utt2spk; its speakers are: "
                                           "spka spkb spkc"):
        make_spk2id(utt2spk, ["spka", "spkz"])
    spk2id = make_spk2id(utt2spk, ["spkc", "spkb"])
    assert spk2id == {"spkb": 0, "spkc": 1}
    scps = {"input": root / "feats.scp", "target": root / "feats.scp"}
    dataset = FeatsDataset(scps, root / "utt2spk", spk2id, crop_frames=32, speakers=list(spk2id))
    assert sorted({utt.split("-")[0] for utt in dataset.utts}) == ["b", "c"]
    with caplog.at_level(logging.WARNING):
        few = warn_few_windows(dataset, spk2id, minimum=2)
    assert few == {"spkb": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("speaker(s) spkb (1): fewer than 2 training utterances of "
                                                         "at least 32 frames")
    with pytest.raises(DataDirError, match="not in the model's speaker table"):  # no selection: all must be known
        FeatsDataset(scps, root / "utt2spk", spk2id, crop_frames=32)


# ------------------------------------------------------------------ the seed's features and data split


def test_the_seeds_feature_config_clips_at_0_db():
    config = load_feature_config(REPO_ROOT / "conf" / "feats" / "logmel128_vaegan.yaml")
    sizes = (config.n_mels, config.n_fft, config.win_length, config.hop_length, config.f_min)
    assert sizes == (128, 2048, 800, 200, 40)
    rng = np.random.default_rng(0)
    loud = (0.9 * np.sign(rng.standard_normal(16000))).astype(np.float32)  # full-scale noise: mels above 0 dB
    features = FeatureExtractor(config)(loud)
    assert features.shape == (16000 // 200, 128)
    assert features.max() == pytest.approx(0.0) and features.min() >= np.log(1e-5) - 1e-6
    unclipped = FeatureExtractor(load_feature_config(REPO_ROOT / "conf" / "feats" / "logmel80.yaml"))(loud)
    assert unclipped.max() > 0.0  # the same signal without a ceiling goes above 0 dB


def test_flickr8k_split_is_80_10_10_per_speaker_unless_counts_are_given():
    # Loaded under its own name: every corpus of local/ has a data_prep.py.
    spec = importlib.util.spec_from_file_location("flickr8k_data_prep",
                                                  REPO_ROOT / "local" / "flickr8k" / "data_prep.py")
    data_prep = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = data_prep  # dataclasses look their module up there
    spec.loader.exec_module(data_prep)
    utts = [data_prep.Utt(f"spk{s:03d}-{i:03d}", f"spk{s:03d}", Path("x.wav"), None, 1.0)
            for s, count in ((4, 50), (7, 31)) for i in range(count)]
    splits = data_prep.split_utterances(utts, 0, 0, 10.0, 10.0)
    sizes = {name: {spk: sum(u.spk == spk for u in splits[name]) for spk in ("spk004", "spk007")}
             for name in ("train", "dev", "eval")}
    assert sizes == {"train": {"spk004": 40, "spk007": 25}, "dev": {"spk004": 5, "spk007": 3},
                     "eval": {"spk004": 5, "spk007": 3}}
    splits = data_prep.split_utterances(utts, 2, 1, 10.0, 10.0)
    assert len(splits["dev"]) == 4 and len(splits["eval"]) == 2


# ------------------------------------------------------------------ the recipe


RECIPE_CORPUS = ["--synth-speakers", "slt ked esf2", "--num-sentences", "5", "--num-dev-sentences", "1",
                 "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]
TINY_RECIPE = ("data.crop_frames=32 data.batch_size=4 data.num_workers=0 model.encoder_channels=[4,8,8] "
               "model.encoder_res_blocks=1 model.generator_res_blocks=1 model.generator_channels=[8,4] "
               "model.discriminator_channels=[4,8] train.max_steps=6 train.valid_interval=3 "
               "train.save_interval=3 train.log_interval=3 plots.interval=3")


def test_tiny_recipe_trains_in_stage_6_converts_and_scores(tmp_path):
    result = run_recipe_in(tmp_path, RECIPE_CORPUS, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_recipe_in(tmp_path, RECIPE_CORPUS, "--model", "vaegan", "--stage", "4", "--stop-stage", "9",
                           "--train-overrides", TINY_RECIPE, "--inference-overrides", "inference.hop=16",
                           "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stage 4: vaegan has nothing to do in this stage" in result.stderr
    (exp,) = [p for p in (tmp_path / "exp").iterdir() if p.name.startswith("vaegan")]
    assert (exp / "checkpoints" / "best.pt").exists()
    assert (exp / "spk2id").read_text().split() == ["esf2", "0", "ked", "1", "slt", "2"]
    plots = sorted(p.name for p in (exp / "plots" / "train").glob("*.png"))
    assert plots and all(p.startswith("step_") and "_to_" in p for p in plots)
    assert len(plots) == 2  # the validations at steps 3 and 6
    rows = [line.split() for line in (exp / "convert_griffinlim_hop-16" / "conversions").read_text().splitlines()]
    assert sum(row[5] == "conversion" for row in rows) == 6 and sum(row[5] == "reconstruction" for row in rows) == 3
    metrics = json.loads((exp / "scores_griffinlim_hop-16" / "metrics.json").read_text())
    assert metrics["family"] == "vaegan" and np.isfinite(metrics["rows"]["converted"]["mcd"])
