"""The recipe end to end on a tiny synth corpus, and its option and input errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, run_recipe_in

TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
        "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]


def run_recipe(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return run_recipe_in(tmp, TINY, *args)


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    result = run_recipe(tmp, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp


def test_data_dirs(recipe_dir):
    data = recipe_dir / "data"
    for name in ("train", "dev", "eval"):
        utt2spk = dict(line.split() for line in (data / name / "utt2spk").read_text().splitlines())
        assert set(utt2spk.values()) == {"slt", "ked", "esf2"}
        for f in ("wav.scp", "spk2utt", "text", "utt2dur", "spk2gender", "phones.ctm"):
            assert (data / name / f).is_file(), f
    sentences = {
        name: {utt.split("-", 1)[1] for utt in (data / name / "utt2spk").read_text().split()[::2]}
        for name in ("train", "dev", "eval")
    }
    assert len(sentences["train"]) == 4
    assert not sentences["train"] & (sentences["dev"] | sentences["eval"])
    pairs = (data / "eval" / "pairs").read_text().splitlines()
    assert len(pairs) == 3 * 2  # every ordered pair of 3 speakers on 1 sentence


def test_features_and_normalisation(recipe_dir):
    dump = recipe_dir / "dump"
    for feat, dim in (("logmel80", 80), ("mfcc39", 39)):
        raw = kaldiio.load_scp(str(dump / "raw" / feat / "train" / "feats.scp"))
        assert len(raw) == 12
        frames = dict(line.split()
                      for line in (dump / "raw" / feat / "train" / "utt2num_frames").read_text().splitlines())
        for utt, matrix in raw.items():
            assert matrix.shape == (int(frames[utt]), dim)
        stats = np.load(dump / "stats" / feat / "global_stats.npz")
        assert stats["mean"].shape == (dim,)
        norm = np.concatenate(list(kaldiio.load_scp(str(dump / "norm" / feat / "train" / "feats.scp")).values()))
        np.testing.assert_allclose(norm.mean(axis=0), 0.0, atol=1e-3)
        assert (dump / "stats" / feat / "eval" / "spk_stats.scp").is_file()
    mel = kaldiio.load_scp(str(dump / "raw" / "logmel80" / "eval" / "feats.scp"))
    mfcc = kaldiio.load_scp(str(dump / "raw" / "mfcc39" / "eval" / "feats.scp"))
    assert {k: v.shape[0] for k, v in mel.items()} == {k: v.shape[0] for k, v in mfcc.items()}


def test_rerun_is_a_quick_noop(recipe_dir):
    scp = recipe_dir / "dump" / "norm" / "logmel80" / "train" / "feats.scp"
    before = scp.stat().st_mtime_ns
    start = time.time()
    result = run_recipe(recipe_dir, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.time() - start < 30
    assert "up to date" in result.stderr
    assert scp.stat().st_mtime_ns == before


def test_stage_before_its_inputs_names_the_stage(tmp_path):
    result = run_recipe(tmp_path, "--stage", "2", "--stop-stage", "2")
    assert result.returncode != 0
    assert "run stage 1 first" in result.stderr


def test_unknown_corpus_lists_valid_ones(tmp_path):
    result = run_recipe(tmp_path, "--corpus", "timit")
    assert result.returncode == 2
    message = next(line for line in result.stderr.splitlines() if "unknown corpus" in line)
    assert "unknown corpus 'timit'; valid corpora:" in message and " synth" in message


def test_unknown_option_is_an_error(tmp_path):
    result = run_recipe(tmp_path, "--no-such-option", "1")
    assert result.returncode != 0
    assert "no-such-option" in result.stderr


# ---------------------------------------------------------------- model stages (vqvae)

TINY_MODEL = ("model.hidden_dim=32 model.residual_dim=16 model.code_dim=16 model.codebook_size=8 "
              "model.speaker_dim=8 data.batch_size=4 data.crop_frames=64 data.num_workers=0")


def run_train(recipe_dir: Path, outdir: Path, *overrides: str, **popen) -> subprocess.CompletedProcess:
    command = [str(REPO_ROOT / ".venv" / "bin" / "python"), "voiceswap/bin/train.py", "--config", "conf/vqvae.yaml",
               "--exp-dir", str(outdir), "--dump-dir", str(recipe_dir / "dump"),
               "--data-dir", str(recipe_dir / "data"), "--num-threads", "1"]
    for override in (*TINY_MODEL.split(), *overrides):
        command += ["--set", override]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def model_exp(recipe_dir):
    overrides = f"{TINY_MODEL} train.max_steps=30 train.valid_interval=15 train.save_interval=15 train.log_interval=5"
    result = run_recipe(recipe_dir, "--model", "vqvae", "--stage", "4", "--stop-stage", "8",
                        "--train-overrides", overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    experiments = list((recipe_dir / "exp").iterdir())
    assert len(experiments) == 1
    assert f"tag {experiments[0].name}" in result.stderr
    return experiments[0]


def test_training_outputs(model_exp):
    config = (model_exp / "config.yaml").read_text()
    assert "voiceswap_version" in config and "git_hash" in config and "codebook_size: 8" in config
    assert (model_exp / "checkpoints" / "best.pt").exists()
    assert (model_exp / "spk2id").read_text().split() == ["esf2", "0", "ked", "1", "slt", "2"]


def test_unit_dump_has_half_the_frames(recipe_dir, model_exp):
    for name in ("train", "dev", "eval"):
        units = recipe_dir / "dump" / "units" / model_exp.name / name
        indices = kaldiio.load_scp(str(units / "indices.scp"))
        vectors = kaldiio.load_scp(str(units / "vectors.scp"))
        frames = dict(line.split() for line in
                      (recipe_dir / "dump" / "norm" / "mfcc39" / name / "utt2num_frames").read_text().splitlines())
        assert set(indices) == set(frames)
        for utt, codes in indices.items():
            assert codes.dtype == np.int32 and codes.shape == ((int(frames[utt]) + 1) // 2,)
            assert vectors[utt].shape == (codes.shape[0], 16)
            assert codes.min() >= 0 and codes.max() < 8


def test_conversion_outputs(recipe_dir, model_exp):
    import soundfile as sf

    convert = model_exp / "convert_griffinlim"
    rows = [line.split() for line in (convert / "conversions").read_text().splitlines()]
    assert sum(row[5] == "conversion" for row in rows) == 6
    assert sum(row[5] == "reconstruction" for row in rows) == 3
    mels = kaldiio.load_scp(str(convert / "mel.scp"))
    frames = dict(line.split() for line in
                  (recipe_dir / "dump" / "raw" / "logmel80" / "eval" / "utt2num_frames").read_text().splitlines())
    for output_id, source, source_spk, target_spk, reference, kind in rows:
        assert output_id == f"{source}_to_{target_spk}" and source.startswith(source_spk + "-")
        assert reference == (source if kind == "reconstruction" else f"{target_spk}-{source.split('-', 1)[1]}")
        audio, rate = sf.read(convert / "wav" / f"{output_id}.wav")
        assert rate == 16000 and audio.ndim == 1
        assert mels[output_id].shape == (int(frames[source]), 80)
        assert len(audio) == int(frames[source]) * 160
        assert 0 < np.abs(audio).max() <= 1.0


def test_rerunning_model_stages_is_a_noop(recipe_dir, model_exp):
    before = (model_exp / "convert_griffinlim" / "mel.scp").stat().st_mtime_ns
    overrides = f"{TINY_MODEL} train.max_steps=30 train.valid_interval=15 train.save_interval=15 train.log_interval=5"
    result = run_recipe(recipe_dir, "--model", "vqvae", "--stage", "4", "--stop-stage", "8",
                        "--train-overrides", overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Stage 8: " in result.stderr and "is up to date; skipping" in result.stderr
    assert (model_exp / "convert_griffinlim" / "mel.scp").stat().st_mtime_ns == before


def test_conversion_to_own_speaker_is_the_reconstruction(recipe_dir, model_exp):
    import voiceswap.families  # noqa: F401
    from voiceswap.train.experiment import Experiment

    experiment = Experiment(model_exp).load()
    model = experiment.models["model"]
    features = kaldiio.load_scp(str(recipe_dir / "dump" / "norm" / "mfcc39" / "eval" / "feats.scp"))
    utt = sorted(features)[0]
    source = torch.from_numpy(np.array(features[utt], dtype=np.float32))
    own = experiment.spk2id[utt.split("-")[0]]
    with torch.no_grad():
        reconstruction = model(source.T[None], torch.tensor([own]))["reconstruction"][0].T
    torch.testing.assert_close(experiment.family.convert(source, own), reconstruction)
    other = (own + 1) % len(experiment.spk2id)
    assert not torch.allclose(experiment.family.convert(source, other), reconstruction)


def test_override_errors_name_the_key(recipe_dir, tmp_path):
    result = run_train(recipe_dir, tmp_path / "x", "model.codebook_sise=4")
    assert result.returncode == 1
    assert "model.codebook_sise" in result.stderr and "codebook_size" in result.stderr
    result = run_train(recipe_dir, tmp_path / "y", "model.in_dim=80")
    assert result.returncode == 1 and "use --set model.in_dim=39" in result.stderr


def test_tag_follows_the_overrides():
    def tag(*overrides):
        command = [str(REPO_ROOT / ".venv" / "bin" / "python"), "voiceswap/bin/plan.py", "tag",
                   "--config", "conf/vqvae.yaml"]
        for override in overrides:
            command += ["--set", override]
        return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()

    assert tag() == "vqvae"
    assert tag("model.codebook_size=64") != tag("model.codebook_size=32") != tag()
    assert tag("model.codebook_size=64", "train.seed=3") == tag("train.seed=3", "model.codebook_size=64")


def metrics_after(outdir: Path, step: int) -> list:
    return [line for line in (outdir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["step"] > step]


def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(recipe_dir, tmp_path):
    schedule = ("train.max_steps=120", "train.save_interval=20", "train.log_interval=5", "train.valid_interval=40")
    reference = run_train(recipe_dir, tmp_path / "uninterrupted", *schedule)
    assert reference.returncode == 0, reference.stderr[-2000:]

    outdir = tmp_path / "killed"
    command = [str(REPO_ROOT / ".venv" / "bin" / "python"), "voiceswap/bin/train.py", "--config", "conf/vqvae.yaml",
               "--exp-dir", str(outdir), "--dump-dir", str(recipe_dir / "dump"),
               "--data-dir", str(recipe_dir / "data"), "--num-threads", "1"]
    for override in (*TINY_MODEL.split(), *schedule):
        command += ["--set", override]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (outdir / "checkpoints" / "step_40.pt").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(p.stem.split("_")[1]) for p in (outdir / "checkpoints").glob("step_*.pt"))
    assert saved and saved[-1] < 120, "the run finished before it could be killed"

    resumed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {outdir / 'checkpoints' / f'step_{saved[-1]}.pt'} at step {saved[-1]}" in resumed.stderr
    assert metrics_after(outdir, saved[-1]) == metrics_after(tmp_path / "uninterrupted", saved[-1])


DDP_MODEL = ("model.vq_variant=straight_through", "model.jitter_p=0.0", "model.dead_code_revival=false",
             "train.max_steps=6", "train.save_interval=6", "train.valid_interval=6", "train.log_interval=2")


def final_parameters(outdir: Path) -> dict:
    state = torch.load(outdir / "checkpoints" / "step_6.pt", map_location="cpu", weights_only=True)
    return state["models"]["model"]


def test_ddp_two_ranks_equal_one_process_with_double_batch(recipe_dir, tmp_path):
    """gloo DDP, 2 ranks x batch 2 == 1 process x batch 4 on the same data (12 train utterances)."""
    single = run_train(recipe_dir, tmp_path / "single", *DDP_MODEL, "data.batch_size=4")
    assert single.returncode == 0, single.stderr[-2000:]

    command = [str(REPO_ROOT / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2",
               "voiceswap/bin/train.py", "--config", "conf/vqvae.yaml", "--exp-dir", str(tmp_path / "ddp"),
               "--dump-dir", str(recipe_dir / "dump"), "--data-dir", str(recipe_dir / "data"),
               "--num-threads", "1"]
    for override in (*TINY_MODEL.split(), *DDP_MODEL, "data.batch_size=2"):
        command += ["--set", override]
    ddp = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world size 2 x grad_accum_steps 1" in ddp.stderr

    expected, actual = final_parameters(tmp_path / "single"), final_parameters(tmp_path / "ddp")
    assert set(expected) == set(actual)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
    # And training did move the weights (the comparison is not between two untrained models).
    import yaml
    from voiceswap.nets.vqvae import VQVAE

    config = yaml.safe_load((tmp_path / "single" / "config.yaml").read_text())
    torch.manual_seed(config["train"]["seed"])
    initial = VQVAE(num_speakers=3, **config["model"]).state_dict()
    assert max(float((initial[n].float() - expected[n].float()).abs().max()) for n in expected) > 1e-3


def test_gradient_accumulation_equals_the_larger_batch(recipe_dir, tmp_path):
    """2 micro-batches of 2 accumulate to the step of one batch of 4."""
    big = run_train(recipe_dir, tmp_path / "big", *DDP_MODEL, "data.batch_size=4")
    accumulated = run_train(recipe_dir, tmp_path / "accum", *DDP_MODEL, "data.batch_size=2",
                            "train.grad_accum_steps=2")
    assert big.returncode == 0 and accumulated.returncode == 0, accumulated.stderr[-2000:]
    expected, actual = final_parameters(tmp_path / "big"), final_parameters(tmp_path / "accum")
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
