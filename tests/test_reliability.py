"""No poisoned output can pass as success (issue 13): one test per way bad input used to slip through.

Each test makes a bad input with :mod:`bad_inputs`, runs the step that meets it, and checks that the
step stops with one line naming the culprit (utterance, file, key, step) and leaves no output
behind. New library symbols are imported inside the tests, so that on the code before these guards
every test fails on its own assertion rather than the whole module on an import.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import bad_inputs
from conftest import REPO_ROOT
from voiceswap.data.dataset import collate_padded
from voiceswap.train.registry import Family

LOGMEL = REPO_ROOT / "conf" / "feats" / "logmel80.yaml"


def run_main(module, argv, monkeypatch) -> int:
    """Run an entry script's ``main()`` in this process (no interpreter start-up: fast)."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *map(str, argv)])
    try:
        return module.main()
    except SystemExit as exit_:
        return int(exit_.code or 0)


def leftovers(directory: Path):
    """Every file in ``directory`` (temp files included)."""
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# ---------------------------------------------------------------- audio


def test_nan_sample_in_a_float_wav_is_an_error_naming_utterance_and_file(tmp_path):
    from voiceswap.data.audio import AudioError, load_audio
    from voiceswap.data.kaldi_dir import validate_data_dir

    wav = bad_inputs.float_wav_with(tmp_path / "bad.wav", float("nan"), index=1234)
    with pytest.raises(AudioError) as error:
        load_audio(str(wav), sample_rate=16000)
    message = str(error.value)
    assert str(wav) in message and "1 non-finite value" in message and "1234" in message and "\n" not in message
    with pytest.raises(AudioError, match="utterance 'spk-bad'"):
        load_audio(str(wav), sample_rate=16000, utt="spk-bad")
    inf_wav = bad_inputs.float_wav_with(tmp_path / "inf.wav", float("inf"), index=7)
    with pytest.raises(AudioError, match="non-finite"):
        load_audio(str(inf_wav))

    # The data-dir validator (stage 1) reads the audio through the same function.
    data = tmp_path / "data"
    bad_inputs.wav_scp(data / "wav.scp", [("spk-bad", wav)])
    (data / "utt2spk").write_text("spk-bad spk\n")
    (data / "spk2utt").write_text("spk spk-bad\n")
    problems = validate_data_dir(data, sample_rate=16000)
    assert len(problems) == 1 and "spk-bad" in problems[0] and "non-finite" in problems[0]


def test_compute_feats_drops_a_nan_utterance_by_name_and_never_writes_nan(tmp_path, monkeypatch, caplog):
    from voiceswap.bin import compute_feats
    from conftest import write_tone

    good = write_tone(tmp_path / "good.wav")
    bad = bad_inputs.float_wav_with(tmp_path / "bad.wav")
    scp = bad_inputs.wav_scp(tmp_path / "wav.scp", [("spk-good", good), ("spk-bad", bad)])
    out = tmp_path / "out"
    args = ["--config", LOGMEL, scp, out / "feats.ark", out / "feats.scp", out / "utt2num_frames"]
    with caplog.at_level(logging.WARNING):
        assert run_main(compute_feats, ["--max-failure-rate", "0.6", *args], monkeypatch) == 0
    assert "utterance 'spk-bad'" in caplog.text and str(bad) in caplog.text and "non-finite" in caplog.text
    written = dict(kaldiio.load_scp(str(out / "feats.scp")))
    assert list(written) == ["spk-good"] and np.isfinite(written["spk-good"]).all()
    # Above the failure rate the job fails, as for any other unreadable utterance.
    assert run_main(compute_feats, args, monkeypatch) == 1


# ---------------------------------------------------------------- feature writing


def test_ark_writer_refuses_a_nan_matrix_by_key_and_ark_and_leaves_nothing(tmp_path):
    from voiceswap.data.ark import ArkWriter

    out = tmp_path / "out"
    with ArkWriter(out / "feats.ark", out / "feats.scp") as writer:  # an older, good output
        writer["old"] = np.zeros((2, 3), np.float32)
    before = (out / "feats.ark").read_bytes(), (out / "feats.scp").read_text()

    bad = np.ones((4, 3), np.float32)
    bad[2, 1] = np.nan
    writer = ArkWriter(out / "feats.ark", out / "feats.scp")
    writer["utt-ok"] = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError) as error:
        writer["utt-nan"] = bad
    assert type(error.value).__name__ == "NonFiniteError"
    message = str(error.value)
    assert "'utt-nan'" in message and str(out / "feats.ark") in message and "(2, 1)" in message
    # The writer aborted by itself: a caller that catches the error and goes on cannot finish it.
    with pytest.raises(RuntimeError, match="aborted"):
        writer["utt-later"] = np.ones((4, 3), np.float32)
    with pytest.raises(RuntimeError, match="aborted"):
        writer.close()
    assert leftovers(out) == ["feats.ark", "feats.scp"], "temp files left behind"
    assert ((out / "feats.ark").read_bytes(), (out / "feats.scp").read_text()) == before


# ---------------------------------------------------------------- statistics and normalisation


def test_compute_stats_refuses_nan_features_naming_the_utterance(tmp_path, monkeypatch, caplog):
    from voiceswap.bin import compute_stats

    scp, _ = bad_inputs.feats_with_nan(tmp_path / "raw", bad_utt="utt-02")
    stats = tmp_path / "stats"
    with caplog.at_level(logging.ERROR):
        code = run_main(compute_stats, ["--global-stats", stats / "global.npz", "--utt2spk", scp.parent / "utt2spk",
                                        "--spk-stats", stats / "spk.ark", scp], monkeypatch)
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "utterance 'utt-02'" in errors[0] and str(scp) in errors[0]
    assert "no statistics written" in errors[0]
    assert leftovers(stats) == [], "stats written from NaN input"


def test_normalize_feats_refuses_nan_stats_and_nan_features(tmp_path, monkeypatch, caplog):
    from voiceswap.bin import normalize_feats

    good_scp, _ = bad_inputs.feats_with_nan(tmp_path / "good", bad_utt=None)
    out = tmp_path / "norm"
    stats = bad_inputs.nan_stats(tmp_path / "nan_stats.npz")
    with caplog.at_level(logging.ERROR):
        assert run_main(normalize_feats, ["--stats", stats, good_scp, out / "feats.ark", out / "feats.scp"],
                        monkeypatch) == 1
    assert str(stats) in caplog.text and "non-finite" in caplog.text
    assert leftovers(out) == []

    good_stats = tmp_path / "stats.npz"
    np.savez(good_stats, mean=np.zeros(5), std=np.ones(5))
    bad_scp, _ = bad_inputs.feats_with_nan(tmp_path / "bad", bad_utt="utt-03")
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert run_main(normalize_feats, ["--stats", good_stats, bad_scp, out / "feats.ark", out / "feats.scp"],
                        monkeypatch) == 1
    assert "utterance 'utt-03'" in caplog.text and str(bad_scp) in caplog.text
    assert leftovers(out) == [], "a partial normalised set was left behind"


# ---------------------------------------------------------------- training


class PoisonableNet(nn.Module):
    """A linear map after a running mean of its input, updated in training forwards: like a VQ-VAE's
    EMA codebook, one NaN batch poisons the buffer and every later output."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer("running", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.running.mul_(0.9).add_(0.1 * x.mean(dim=(0, 1)))
        return self.linear(x - self.running)


class PoisonableFamily(Family):
    def build(self, config, num_speakers):
        return {"model": PoisonableNet()}

    def optimizers(self, models, config):
        return {"model": torch.optim.SGD(models["model"].parameters(), lr=0.1)}

    def train_step(self, batch, step):
        loss = self.models["model"](batch["input"]).pow(2).mean()
        grad_norm = self.optimizer_step(loss, "model")
        return {"loss": loss.item(), "grad_norm": grad_norm}

    def valid_step(self, batch):
        return {"loss": self.models["model"](batch["input"]).pow(2).mean().item()}


def poisoned_trainer(outdir: Path, bad_utt: str = "utt-3", limit: int = 4):
    """A Trainer over 8 utterances (batches of 2, in order) collated by collate_padded; ``bad_utt``
    has a NaN frame, so from its batch (step 2 for utt-3) on every loss is NaN."""
    from voiceswap.train.trainer import Trainer

    torch.manual_seed(0)
    items = []
    for i in range(8):
        features = torch.randn(4, 3)
        if f"utt-{i}" == bad_utt:
            features[1, 2] = float("nan")
        items.append({"utt": f"utt-{i}", "speaker": 0, "input": features})
    loader = DataLoader(items, batch_size=2, shuffle=False, collate_fn=collate_padded)
    family = PoisonableFamily()
    models = family.build({}, 1)
    optimizers = family.optimizers(models, {})
    config = {"train": {"max_steps": 12, "log_interval": 1, "valid_interval": 100, "save_interval": 100,
                        "ema_decay": 0.5, "max_nonfinite_steps": limit}}
    return Trainer(family, models, optimizers, None, loader, None, config, outdir)


def test_nonfinite_losses_stop_the_run_naming_the_step_and_utterances(tmp_path):
    from voiceswap.train.trainer import TrainerError, with_train_defaults

    trainer = poisoned_trainer(tmp_path / "exp", bad_utt="utt-3", limit=4)
    with pytest.raises(TrainerError) as error:
        trainer.train()
    message = str(error.value)
    assert "4 consecutive steps" in message and "from step 2" in message and "to step 5" in message
    assert "'utt-2', 'utt-3'" in message and "max_nonfinite_steps" in message and "\n" not in message
    assert trainer.step == 5, "the run went on after the limit"
    assert not (tmp_path / "exp" / "checkpoints").exists(), "a poisoned run saved a final checkpoint"
    assert with_train_defaults({})["train"]["max_nonfinite_steps"] == 20


def test_ema_weights_are_not_updated_from_nonfinite_weights(tmp_path):
    from voiceswap.train.ema import ExponentialMovingAverage
    from voiceswap.train.trainer import TrainerError

    trainer = poisoned_trainer(tmp_path / "exp", bad_utt="utt-3", limit=4)
    with pytest.raises(TrainerError):
        trainer.train()
    assert not torch.isfinite(trainer.models["model"].running).all(), "the test's poison did not take"
    ema = trainer.ema["model"]
    assert all(torch.isfinite(t).all() for t in ema.shadow.values()), "EMA weights turned NaN"
    assert ema.num_updates == 1 and ema.num_skipped == 4  # step 1 only; steps 2-5 were refused

    model = nn.Linear(2, 2)
    average = ExponentialMovingAverage(model, decay=0.9)
    before = {name: t.clone() for name, t in average.shadow.items()}
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    assert average.update(model) is False
    assert all(torch.equal(before[name], t) for name, t in average.shadow.items())


def test_vq_ema_codebook_ignores_a_nan_batch():
    from voiceswap.nets.vq import VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=8, code_dim=4, variant="ema").train()
    vq(torch.randn(2, 4, 10))
    codebook = vq.codebook.clone()
    poisoned = torch.randn(2, 4, 10)
    poisoned[1, 2, 3] = float("nan")
    vq(poisoned)
    assert torch.isfinite(vq.codebook).all() and torch.equal(vq.codebook, codebook)
    vq(torch.randn(2, 4, 10))  # and it goes on learning from good batches
    assert torch.isfinite(vq.codebook).all() and not torch.equal(vq.codebook, codebook)


@pytest.mark.parametrize("mode,nan_at", [("min", 15), ("last", 45)])
def test_nan_validation_metric_is_never_best(tmp_path, caplog, mode, nan_at):
    from toy_train import build_trainer

    trainer = build_trainer(str(tmp_path / "exp"), [
        "train.max_steps=45", "train.valid_interval=15", "train.save_interval=15", "train.keep_last=0",
        f"train.best_mode={mode}"])
    valid_step = trainer.family.valid_step
    trainer.family.valid_step = lambda batch: ({"loss": float("nan")} if trainer.step == nan_at
                                               else valid_step(batch))
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert trainer.best_step != nan_at and math.isfinite(trainer.best_metric)
    best = tmp_path / "exp" / "checkpoints" / "best.pt"
    assert best.resolve().name == f"step_{trainer.best_step}.pt"
    assert torch.load(best, weights_only=True)["step"] != nan_at
    assert f"valid loss is nan at step {nan_at}: not a best checkpoint" in caplog.text


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("kind", sorted(bad_inputs.BAD_CHECKPOINTS))
def test_unusable_checkpoint_is_one_line_naming_the_path(tmp_path, kind):
    from voiceswap.train.checkpoint import CheckpointError, load_checkpoint_for_inference

    path = bad_inputs.BAD_CHECKPOINTS[kind](tmp_path / "checkpoints" / "best.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_for_inference(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert "re-train" in message and "pick another checkpoint" in message
    assert "weights_only" not in message, "PyTorch's advice to load unsafely leaked through"


def test_good_checkpoint_loads_for_inference(tmp_path):
    from voiceswap.train.checkpoint import load_checkpoint_for_inference

    state = load_checkpoint_for_inference(bad_inputs.good_checkpoint(tmp_path / "step_10.pt"))
    assert state["step"] == 10 and torch.equal(state["models"]["model"]["weight"], torch.ones(2, 2))


# ---------------------------------------------------------------- overrides


def test_override_of_the_wrong_type_is_a_one_line_error_naming_key_type_and_value():
    from voiceswap.train.config import ConfigError, apply_overrides

    config = {"model": {"codebook_size": 44, "jitter": 0.12, "revival": True, "note": None, "betas": [0.9, 0.99]},
              "train": {"amp": "none"}}
    with pytest.raises(ConfigError) as error:
        apply_overrides(config, ["model.codebook_size=abc"])
    message = str(error.value)
    assert "model.codebook_size" in message and "an integer" in message and "'abc'" in message
    assert "\n" not in message
    for bad in ("model.codebook_size=1.5", "model.revival=1", "model.jitter=fast", "model.betas=[0.9, x]",
                "model.betas=0.9", "train.amp=3"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            apply_overrides(config, [bad])
    fine = apply_overrides(config, ["model.jitter=1", "model.note=[1, a]", "model.revival=false",
                                    "model.betas=[1, 0.5]", "train.amp=bf16", "model.codebook_size=null"])
    assert fine["model"]["jitter"] == 1.0 and isinstance(fine["model"]["jitter"], float)
    assert fine["model"]["note"] == [1, "a"] and fine["model"]["revival"] is False


# ---------------------------------------------------------------- metrics.jsonl


def test_metrics_have_one_row_per_step_after_restarts_before_the_first_checkpoint(tmp_path):
    from toy_train import build_trainer

    outdir = tmp_path / "exp"
    overrides = ["train.max_steps=12", "train.log_interval=1", "train.save_interval=100",
                 "train.valid_interval=100"]
    for crash_at in (5, 7, None):  # killed twice before any checkpoint, then run to the end
        trainer = build_trainer(str(outdir), overrides)
        trainer.resume()
        if crash_at is not None:
            train_step = trainer.family.train_step

            def crashing(batch, step, train_step=train_step, crash_at=crash_at):
                if step == crash_at:
                    raise KeyboardInterrupt  # what a kill looks like from inside the loop
                return train_step(batch, step)

            trainer.family.train_step = crashing
            with pytest.raises(KeyboardInterrupt):
                trainer.train()
            assert not (outdir / "checkpoints").exists()
        else:
            trainer.train()
    rows = [json.loads(line) for line in (outdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [row["step"] for row in rows if row["split"] == "train"]
    assert train_steps == list(range(1, 13)), train_steps
    valid_steps = [row["step"] for row in rows if row["split"] == "valid"]
    assert valid_steps == [12]
