"""run.sh refuses what cannot work before doing any work: stage ranges, --nj, configs, overrides, checkpoints.

Each of these used to pass silently or fail with a message that did not name the option (issue 13).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_recipe_in

PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return run_recipe_in(tmp, [], *args)


@pytest.mark.parametrize("args, message", [
    (["--stage", "12"], "the last stage is 11"),
    (["--stop-stage", "13"], "the last stage is 11"),
    (["--stage", "5", "--stop-stage", "2"], "--stop-stage 2 is below --stage 5"),
    (["--stage", "abc"], "must be stage numbers 0-11"),
    (["--report-pairs", "0"], "--report-pairs must be a positive integer"),
    (["--nj", "0"], "--nj must be a positive integer"),
    (["--nj", "abc"], "--nj must be a positive integer"),
    (["--ngpu", "x"], "--ngpu must be 0"),
])
def test_bad_stage_and_job_options_are_errors(tmp_path, args, message):
    result = run(tmp_path, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Successfully finished" not in result.stderr
    assert not (tmp_path / "db").exists() and not (tmp_path / "data").exists()  # nothing was done


def test_unknown_model_and_vocoder_list_the_configs(tmp_path):
    result = run(tmp_path, "--stage", "8", "--model", "nosuchmodel")
    assert result.returncode == 1
    assert "no config conf/nosuchmodel.yaml for --model 'nosuchmodel'" in result.stderr
    assert "vqvae (vqvae)" in result.stderr and "softvc (softvc)" in result.stderr
    result = run(tmp_path, "--stage", "8", "--vocoder", "nosuchvocoder")
    assert result.returncode == 1
    assert "--vocoder takes one of:" in result.stderr and "griffinlim (griffinlim)" in result.stderr
    result = run(tmp_path, "--stage", "8", "--model-config", "conf/vocoder/hifigan.yaml")
    assert result.returncode == 1 and "is a vocoder, not a conversion family" in result.stderr


def test_a_mistyped_override_is_one_line_before_any_work(tmp_path):
    result = run(tmp_path, "--model", "vqvae", "--stage", "4", "--train-overrides", "model.codebook_size=abc")
    assert result.returncode == 1
    assert "model.codebook_size takes an integer (the config has 44), not a string 'abc'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "exp").exists()


def test_a_stage_after_a_failed_training_names_the_stage_to_rerun(tmp_path):
    exp = tmp_path / "exp" / "vqvae"
    exp.mkdir(parents=True)
    (exp / "spk2id").write_text("slt 0\n")  # what a killed stage 4 leaves: a speaker table, no checkpoint
    jobs = subprocess.run([PYTHON, "voiceswap/bin/plan.py", "jobs", "--stage", "5", "--config", "conf/vqvae.yaml",
                           "--exp-dir", str(exp)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert jobs.returncode == 1
    assert f"{exp}: no checkpoint in checkpoints/" in jobs.stderr and "run stage 4 first" in jobs.stderr
    checkpoint = subprocess.run([PYTHON, "voiceswap/bin/plan.py", "checkpoint", "--made-by", "stages 4-6", str(exp)],
                                cwd=REPO_ROOT, capture_output=True, text=True)
    assert checkpoint.returncode == 1 and "run stages 4-6 first" in checkpoint.stderr
    assert "Traceback" not in jobs.stderr + checkpoint.stderr


def test_a_corrupt_checkpoint_at_conversion_is_one_line(tmp_path):
    exp = tmp_path / "exp" / "vqvae"
    (exp / "checkpoints").mkdir(parents=True)
    (exp / "spk2id").write_text("slt 0\n")
    (exp / "checkpoints" / "step_100.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (tmp_path / "items").write_text("a slt -\n")
    (tmp_path / "utt2spk").write_text("a slt\n")
    result = subprocess.run([PYTHON, "voiceswap/bin/convert.py", "--exp-dir", str(exp), "--utt2spk",
                             str(tmp_path / "utt2spk"), str(tmp_path / "items"), str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"cannot load checkpoint {exp / 'checkpoints' / 'step_100.pt'}" in result.stderr
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
