"""The recipe end to end on a tiny synth corpus, and its option and input errors."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from conftest import REPO_ROOT

TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
        "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]


def run_recipe(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    dirs = ["--db-dir", str(tmp / "db"), "--data-dir", str(tmp / "data"),
            "--dump-dir", str(tmp / "dump"), "--exp-dir", str(tmp / "exp")]
    return subprocess.run(["./run.sh", *dirs, *TINY, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


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
        frames = dict(line.split() for line in (dump / "raw" / feat / "train" / "utt2num_frames").read_text().splitlines())
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
    assert "unknown corpus 'timit'; valid corpora: synth" in result.stderr


def test_unknown_option_is_an_error(tmp_path):
    result = run_recipe(tmp_path, "--no-such-option", "1")
    assert result.returncode != 0
    assert "no-such-option" in result.stderr
