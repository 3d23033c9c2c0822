"""The generic training framework: overrides, tags, resolved configs, checkpoints, EMA, registry, Trainer.

The key test kills a training subprocess with SIGKILL after a mid-epoch checkpoint, runs the same
command again, and checks the resumed run logs exactly the losses of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from voiceswap.train import checkpoint as ckpt
from voiceswap.train.config import (
    ConfigError,
    ConfigMismatchError,
    apply_overrides,
    check_config_compatible,
    experiment_tag,
    load_config,
    write_resolved_config,
)
from voiceswap.train.ema import ExponentialMovingAverage
from voiceswap.train.registry import Family, OptimizerStep, UnknownFamilyError, get_family, register_family
from voiceswap.train.trainer import TrainerError

from conftest import REPO_ROOT, recipe_env

TOY = REPO_ROOT / "tests" / "toy_train.py"

BASE = {
    "model": {"size": 32, "encoder": {"channels": 8}},
    "train": {"lr": 0.1, "ema": False, "steps": [1, 2], "note": None},
}


# ---------------------------------------------------------------- overrides


def test_overrides_parse_types_and_nested_keys():
    config = apply_overrides(BASE, [
        "model.size=64", "train.lr=1e-4", "train.ema=true", "train.steps=[10, 4]",
        "model.encoder.channels=16", "train.note=hello", "train.lr=2e-4",  # the last one wins
    ])
    assert config["model"]["size"] == 64 and isinstance(config["model"]["size"], int)
    assert config["train"]["lr"] == 2e-4 and isinstance(config["train"]["lr"], float)
    assert config["train"]["ema"] is True
    assert config["train"]["steps"] == [10, 4]
    assert config["model"]["encoder"]["channels"] == 16
    assert config["train"]["note"] == "hello"
    assert BASE["model"]["size"] == 32, "the input config must not be modified"


def test_unknown_key_is_an_error_naming_it_and_the_valid_keys():
    with pytest.raises(ConfigError) as error:
        apply_overrides(BASE, ["model.sise=64"])
    assert "model.sise" in str(error.value) and "size" in str(error.value) and "encoder" in str(error.value)
    with pytest.raises(ConfigError, match=r"'modle'.*model"):
        apply_overrides(BASE, ["modle.size=64"])
    with pytest.raises(ConfigError, match=r"model.encoder.chanels.*channels"):
        apply_overrides(BASE, ["model.encoder.chanels=3"])


@pytest.mark.parametrize("override", ["model.size", "=3", "model..size=1", "model.size=", "--model.size=1",
                                      "model.size=[1,"])
def test_bad_override_syntax_is_an_error(override):
    with pytest.raises(ConfigError, match="bad override"):
        apply_overrides(BASE, [override])


def test_override_cannot_replace_a_section_or_descend_into_a_value():
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(BASE, ["model=3"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(BASE, ["model.size.x=1"])


def test_load_config_reads_exponent_floats(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text("train:\n  lr: 1e-4\n  eps: 1.0e-8\n  name: 1e-4x\n")
    config = load_config(path)
    assert config["train"] == {"lr": 1e-4, "eps": 1e-8, "name": "1e-4x"}
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- experiment tags


def test_experiment_tag_is_stable_readable_and_distinct():
    tag = experiment_tag("conf/vqvae.yaml", ["train.lr=1e-4", "model.codebook_size=64"])
    assert tag == "vqvae__model.codebook_size=64__train.lr=0.0001"
    assert experiment_tag("conf/vqvae.yaml", ["model.codebook_size=64", "train.lr=1e-4"]) == tag
    assert experiment_tag("conf/vqvae.yaml", []) == "vqvae"
    assert experiment_tag("conf/vqvae.yaml", ["model.codebook_size=128", "train.lr=1e-4"]) != tag
    # The same value written two ways is the same config, hence the same tag ...
    assert experiment_tag("c.yaml", ["a.b=[1, 2]"]) == experiment_tag("c.yaml", ["a.b=[1,2]"])
    # ... while values that only differ in characters we replace still get different tags.
    slash, space = experiment_tag("c.yaml", ["a.b=x/y"]), experiment_tag("c.yaml", ["a.b=x y"])
    assert slash != space
    long = experiment_tag("c.yaml", [f"model.key{i}=value{i}" for i in range(20)])
    other = experiment_tag("c.yaml", [f"model.key{i}=value{i}" for i in range(19)] + ["model.key19=other"])
    for t in (slash, space, long, other):
        assert re.fullmatch(r"[A-Za-z0-9._=+-]+", t), t
    assert len(long) <= 100 and long != other


# ---------------------------------------------------------------- resolved config


def test_resolved_config_and_mismatch_on_resume(tmp_path):
    path = write_resolved_config(BASE, tmp_path)
    written = load_config(path)
    assert written["voiceswap_version"] and written["git_hash"]
    assert not list(tmp_path.glob(".*tmp*")), "temp file left behind"
    check_config_compatible(BASE, tmp_path)  # same config: fine
    longer = apply_overrides({**BASE, "train": {**BASE["train"], "max_steps": 10}}, [])
    write_resolved_config(longer, tmp_path)
    check_config_compatible(apply_overrides(longer, ["train.max_steps=20"]), tmp_path)  # run length may change
    with pytest.raises(ConfigMismatchError) as error:
        check_config_compatible(apply_overrides(longer, ["model.size=64"]), tmp_path)
    message = str(error.value)
    assert f"outdir {tmp_path} was trained with a different config" in message
    assert "key model.size was 32, now 64" in message and "use another --outdir or tag" in message


# ---------------------------------------------------------------- checkpoints


def _state(step):
    return {"step": step, "weight": torch.full((3,), float(step)), "rng": ckpt.capture_rng_state(),
            "config": {"model": {"size": 1}}}


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 10, _state(10), keep_last=5)

    def half_write_then_fail(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 20, _state(20), keep_last=5)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_10.pt"]
    monkeypatch.undo()
    path, state = ckpt.find_latest_valid_checkpoint(tmp_path)
    assert path.name == "step_10.pt" and state["step"] == 10


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    ckpt.save_checkpoint(tmp_path, 10, _state(10), keep_last=5)
    newest = ckpt.save_checkpoint(tmp_path, 20, _state(20), keep_last=5)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated, as by a crash
    with caplog.at_level(logging.WARNING):
        path, state = ckpt.find_latest_valid_checkpoint(tmp_path)
    assert path.name == "step_10.pt" and torch.equal(state["weight"], torch.full((3,), 10.0))
    assert any("step_20.pt" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert ckpt.find_latest_valid_checkpoint(tmp_path / "nothing") is None


def test_keep_last_pruning_spares_the_best(tmp_path):
    ckpt.save_checkpoint(tmp_path, 10, _state(10), keep_last=2)
    ckpt.mark_best(tmp_path, 10)
    for step in (20, 30, 40):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep_last=2)
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path)] == [10, 30, 40]
    best = tmp_path / "checkpoints" / "best.pt"
    assert ckpt.load_checkpoint(best)["step"] == 10
    assert ckpt.find_latest_valid_checkpoint(tmp_path)[0].name == "step_40.pt"


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    path = ckpt.save_checkpoint(tmp_path, 1, _state(1), keep_last=0)
    state = ckpt.load_checkpoint(path)  # weights_only=True inside
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    ckpt.restore_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


# ---------------------------------------------------------------- EMA, optimiser step, registry


def test_ema_maths_swap_and_state():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ExponentialMovingAverage(model, decay=0.5)
    expected = 1.0
    for value in (3.0, 5.0, -1.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
        expected = 0.5 * expected + 0.5 * value
    assert ema.shadow["weight"].item() == pytest.approx(expected)
    with ema.swapped_in(model):
        assert model.weight.item() == pytest.approx(expected)
    assert model.weight.item() == -1.0, "trained weights must come back after the block"
    restored = ExponentialMovingAverage(nn.Linear(1, 1, bias=False), decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.5 and restored.num_updates == 3
    assert restored.shadow["weight"].item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="ema_decay"):
        ExponentialMovingAverage(model, decay=1.0)


def test_optimizer_step_clips_only_when_asked():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = 100.0 * model(torch.ones(2, 4)).sum()
    norm = OptimizerStep({"g": opt}, grad_clip=1.0)(loss, "g")
    assert norm > 1.0
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert clipped.item() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(LookupError, match="'d'.*g"):
        OptimizerStep({"g": opt}, grad_clip=None)(loss, "d")


def test_registry_lists_names_and_refuses_two_classes_under_one_name():
    @register_family("test_dummy")
    class Dummy(Family):
        def build(self, config, num_speakers): return {}
        def optimizers(self, models, config): return {}
        def train_step(self, batch, step): return {}
        def valid_step(self, batch): return {}

    assert get_family("test_dummy") is Dummy
    with pytest.raises(UnknownFamilyError, match="test_dummy"):
        get_family("no_such_family")
    with pytest.raises(ValueError, match="taken"):
        register_family("test_dummy")(type("Other", (Dummy,), {}))


# ---------------------------------------------------------------- the Trainer: kill and resume


def _run_toy(outdir: Path, *extra: str, sleep: float = 0.0) -> subprocess.Popen:
    command = [sys.executable, str(TOY), "--outdir", str(outdir), "--step-sleep", str(sleep), *extra]
    return subprocess.Popen(command, env=recipe_env(), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return output


def _records(outdir: Path):
    return [json.loads(line) for line in (outdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted 60-step toy run."""
    outdir = tmp_path_factory.mktemp("toy") / "uninterrupted"
    _finish(_run_toy(outdir))
    return outdir


def test_killed_run_resumes_with_exactly_the_same_losses(reference_run, tmp_path):
    outdir = tmp_path / "killed"
    process = _run_toy(outdir, sleep=0.05)
    deadline = time.monotonic() + 90
    while not any(step >= 20 for step, _ in ckpt.list_checkpoints(outdir)):
        assert process.poll() is None, "the run ended before it could be killed:\n" + process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint at step >= 20 within 90 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    latest_step = ckpt.list_checkpoints(outdir)[-1][0]
    assert 20 <= latest_step < 60

    output = _finish(_run_toy(outdir))  # the very same command
    resumed = re.search(r"resumed from (\S+) at step (\d+)", (outdir / "train.log").read_text())
    assert resumed, output
    assert Path(resumed.group(1)).name == f"step_{resumed.group(2)}.pt" and int(resumed.group(2)) >= 20

    expected, got = _records(reference_run), _records(outdir)
    after = int(resumed.group(2))
    assert [r for r in got if r["step"] > after] == [r for r in expected if r["step"] > after]
    assert got == expected, "records up to the checkpoint must survive, later ones of the killed run must go"
    assert any(r["split"] == "valid" for r in got if r["step"] > after)
    assert ckpt.find_latest_valid_checkpoint(outdir)[1]["step"] == 60
    assert (outdir / "checkpoints" / "best.pt").exists()


def test_resume_with_a_different_config_is_an_error(reference_run, tmp_path):
    import toy_train

    with pytest.raises(ConfigMismatchError, match=r"key model.hidden was 16, now 8"):
        toy_train.build_trainer(str(reference_run), ["model.hidden=8"])
    # A longer run of the same experiment is fine and resumes where it stopped.
    trainer = toy_train.build_trainer(str(reference_run), ["train.max_steps=60"])
    try:
        assert trainer.resume() and trainer.step == 60
    finally:
        trainer.close()


def test_training_over_existing_checkpoints_without_resume_is_an_error(reference_run):
    import toy_train

    trainer = toy_train.build_trainer(str(reference_run))
    with pytest.raises(TrainerError, match="already has checkpoints"):
        trainer.train()


def test_best_mode_last_points_best_at_the_newest_validated_step(tmp_path):
    import toy_train

    best_steps = {}
    for mode in ("min", "last"):
        trainer = toy_train.build_trainer(str(tmp_path / mode), [f"train.best_mode={mode}", "train.max_steps=40"])
        losses = iter([1.0, 0.5, 2.0])  # validations at steps 15, 30 and 40: the lowest is not the last
        trainer.validate = lambda: {"loss": next(losses)}
        trainer.train()
        best_steps[mode] = (trainer.best_step, ckpt.best_checkpoint_target(tmp_path / mode).name)
    assert best_steps == {"min": (30, "step_30.pt"), "last": (40, "step_40.pt")}
    with pytest.raises(ConfigError, match="'min', 'max' or 'last'"):
        toy_train.build_trainer(str(tmp_path / "bad"), ["train.best_mode=newest"])


def test_training_time_is_recorded_and_summed_over_resumed_runs(tmp_path):
    import toy_train
    from voiceswap.train.trainer import TRAIN_TIME_FILE

    outdir = tmp_path / "timed"
    trainer = toy_train.build_trainer(str(outdir), ["train.max_steps=20"])
    trainer.train()
    first = json.loads((outdir / TRAIN_TIME_FILE).read_text())
    assert first["step"] == 20 and first["seconds"] > 0

    trainer = toy_train.build_trainer(str(outdir), ["train.max_steps=40"])
    try:
        assert trainer.resume()
        assert trainer.train_seconds == pytest.approx(first["seconds"], abs=1e-3)  # restored, not reset
        trainer.train()
    finally:
        trainer.close()
    second = json.loads((outdir / TRAIN_TIME_FILE).read_text())
    assert second["step"] == 40 and second["seconds"] > first["seconds"]
    state = ckpt.find_latest_valid_checkpoint(outdir)[1]
    assert state["train_seconds"] == pytest.approx(second["seconds"], abs=1e-3)


def test_init_from_starts_a_new_run_from_another_runs_weights(reference_run, tmp_path):
    import toy_train

    source = reference_run / "checkpoints" / "step_60.pt"
    trained = ckpt.load_checkpoint_for_inference(source)["models"]["model"]
    trainer = toy_train.build_trainer(str(tmp_path / "fine"), [f"train.init_from={source}", "train.max_steps=5"])
    try:
        assert not trainer.resume()
        trainer.initialize_from(trainer.conf["init_from"])
        weights = trainer.models["model"].state_dict()
        assert all(torch.equal(weights[k], trained[k]) for k in trained)  # the weights, not a fresh init
        assert trainer.step == 0 and trainer.ema["model"].shadow["0.weight"].equal(trained["0.weight"])
        assert not trainer.optimizers["model"].state  # optimiser moments start afresh
        trainer.train()
    finally:
        trainer.close()
    assert ckpt.find_latest_valid_checkpoint(tmp_path / "fine")[1]["step"] == 5
    # Experiments made before the key existed still resume: only a run at step 0 reads it.
    older = {**trainer.config, "train": {k: v for k, v in trainer.config["train"].items() if k != "init_from"}}
    check_config_compatible(trainer.config, tmp_path / "fine", previous=older)
    # A run whose model does not fit the checkpoint is one line naming the model and the shapes.
    other = toy_train.build_trainer(str(tmp_path / "wide"), [f"train.init_from={source}", "model.hidden=8"])
    try:
        with pytest.raises(TrainerError, match=r"model 'model' does not fit this run's \(size mismatch"):
            other.initialize_from(source)
        with pytest.raises(ckpt.CheckpointError, match=r"does not exist; fix train.init_from"):
            other.initialize_from(tmp_path / "missing.pt")
    finally:
        other.close()
