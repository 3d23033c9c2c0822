"""Sweeps: expanding override sets x seeds into runs, the report over their metrics, and utils/sweep.sh end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, TINY_CLASSIFIER, run_recipe_in
from voiceswap.eval.sweep import Sweep, SweepError, expand, split_values, write_report
from voiceswap.train.config import experiment_tag

CONFIG = str(REPO_ROOT / "conf" / "vqvae.yaml")


def read_tsv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# ------------------------------------------------------------------------------------------ expand

def test_expand_grid_sets_and_seeds_give_distinct_tags_of_plan_py():
    sweep = expand(CONFIG, base=["train.max_steps=10"], sweeps=["model.codebook_size=32,64"],
                   sets=["model.vq_variant=ema", "model.vq_variant=soft_em model.jitter_p=0.0"], seeds=[0, 1])
    assert len(sweep.runs) == 2 * 2 * 2
    assert len({run.tag for run in sweep.runs}) == 8
    first = sweep.runs[0]
    assert first.point == "model.vq_variant=ema model.codebook_size=32" and first.seed == 0
    assert first.overrides == ["train.max_steps=10", "model.vq_variant=ema", "model.codebook_size=32", "train.seed=0"]
    # The tag is the one plan.py tag (and so run.sh) gives for the same overrides.
    assert all(run.tag == experiment_tag(CONFIG, run.overrides) for run in sweep.runs)
    assert sweep.points() == ["model.vq_variant=ema model.codebook_size=32",
                              "model.vq_variant=ema model.codebook_size=64",
                              "model.vq_variant=soft_em model.jitter_p=0.0 model.codebook_size=32",
                              "model.vq_variant=soft_em model.jitter_p=0.0 model.codebook_size=64"]


def test_seeds_alone_sweep_the_config_itself():
    sweep = expand(CONFIG, seeds=[3, 4], seed_keys=["train.seed"])
    assert [run.point for run in sweep.runs] == ["", ""]
    assert [run.overrides for run in sweep.runs] == [["train.seed=3"], ["train.seed=4"]]


def test_list_values_keep_their_commas():
    assert split_values("32,[10,4],{a: 1, b: 2}") == ["32", "[10,4]", "{a: 1, b: 2}"]


@pytest.mark.parametrize("kwargs, message", [
    ({"sweeps": ["model.codebok_size=32,64"]}, "did you mean 'codebook_size'"),
    ({"sweeps": ["model.codebook_size=32,big"]}, "model.codebook_size takes an integer"),
    ({"sweeps": ["model.codebook_size"]}, "write KEY=V1,V2"),
    ({"sweeps": ["model.codebook_size=32,32"]}, "names a value twice"),
    ({"sets": ["model.codebook_size=32", "model.codebook_size=32"]}, "same tag"),
    ({"base": ["optim.model.betas=[0.9, 0.99]"], "seeds": [0]}, "contains whitespace"),
    ({"sets": ["optim.model.betas=[0.9, 0.99]"]}, "values cannot contain spaces"),
    ({"sweeps": ["train.seed=1,2"], "seeds": [0]}, "both swept and the seed key"),
    ({}, "nothing to sweep"),
])
def test_bad_sweeps_fail_before_any_run(kwargs, message):
    with pytest.raises(SweepError, match=message):
        expand(CONFIG, **kwargs)


# ------------------------------------------------------------------------------------------ report

def fake_metrics(wer: float, spk_sim: float, perplexity: float) -> dict:
    """The parts of a stage-9 metrics.json the report reads."""
    return {"rows": {"converted": {"wer": wer, "cer": wer / 2, "spk_sim_target": spk_sim, "mcd": None},
                     "source": {"wer": 10.0}},
            "codes": {"model": {"perplexity": perplexity, "codes_used": 30}}}


def test_report_from_hand_made_metrics(tmp_path):
    sweep = expand(CONFIG, sweeps=["model.codebook_size=32,64"], seeds=[0, 1, 2])
    exp = tmp_path / "exp"
    wers = {("32", 0): 50.0, ("32", 1): 60.0, ("32", 2): 70.0, ("64", 0): 40.0, ("64", 1): 44.0}
    for run in sweep.runs:
        size = run.point.split("=")[1]
        if (size, run.seed) not in wers:
            continue  # (64, seed 2) has not finished stage 9: listed, not counted
        scores = exp / run.tag / "scores_griffinlim"
        scores.mkdir(parents=True)
        metrics = fake_metrics(wers[size, run.seed], 0.7 + 0.01 * run.seed, float(size) / 2)
        (scores / "metrics.json").write_text(json.dumps(metrics))
    manifest = tmp_path / "report" / "sweep.json"
    sweep.save(manifest)
    assert Sweep.load(manifest) == sweep

    paths = write_report(Sweep.load(manifest), exp, "griffinlim", manifest.parent)

    points = {row["point"]: row for row in read_tsv(paths["tsv"])}
    assert set(points) == {"model.codebook_size=32", "model.codebook_size=64"}
    p32, p64 = points["model.codebook_size=32"], points["model.codebook_size=64"]
    assert p32["model.codebook_size"] == "32" and p32["n"] == "3" and p64["n"] == "2"
    assert float(p32["converted.wer_mean"]) == pytest.approx(60.0)
    assert float(p32["converted.wer_std"]) == pytest.approx(np.std([50, 60, 70], ddof=1))
    assert float(p32["converted.wer_min"]) == 50.0 and float(p32["converted.wer_max"]) == 70.0
    assert float(p64["converted.wer_mean"]) == pytest.approx(42.0) and p64["converted.wer_n"] == "2"
    assert float(p64["codes.perplexity_mean"]) == pytest.approx(32.0)
    assert "converted.mcd_mean" not in p32  # no run has it: no column
    runs = read_tsv(paths["runs_tsv"])
    assert len(runs) == 6 and sum(row["scored"] == "1" for row in runs) == 5
    assert {row["seed"] for row in runs} == {"0", "1", "2"}

    md = paths["md"].read_text()
    row32 = next(line for line in md.splitlines() if line.startswith("| model.codebook_size=32 | 3 |"))
    assert "| 0.710 ± 0.010 | 60.0 ± 10.0 | 10.0 ± 0.0 | 30.0 ± 5.0 |" in row32  # SpkSim, WER, WER src, CER
    assert "not scored" in md and "5 of 6 runs scored" in md
    for name in ("converted.wer", "converted.cer", "converted.spk_sim_target", "codes.perplexity", "overview"):
        png = paths["md"].parent / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"plots/{name}.png" in md
    assert not (paths["md"].parent / "plots" / "converted.mcd.png").exists()


def test_report_before_any_run_is_scored(tmp_path):
    sweep = expand(CONFIG, sets=["model.vq_variant=ema", "model.vq_variant=soft_em"])
    sweep.save(tmp_path / "sweep.json")
    paths = write_report(sweep, tmp_path / "exp", "griffinlim", tmp_path)
    assert "No run has finished stage 9 yet" in paths["md"].read_text()
    assert not (tmp_path / "plots").exists() or not list((tmp_path / "plots").glob("*.png"))


# ------------------------------------------------------------------------------------------ end to end

TINY = ["--synth-speakers", "slt esf2", "--num-sentences", "4", "--num-dev-sentences", "1",
        "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]
TINY_MODEL = ("model.hidden_dim=16 model.residual_dim=8 model.code_dim=8 model.speaker_dim=4 data.batch_size=4 "
              "data.crop_frames=32 data.num_workers=0 train.max_steps=4 train.valid_interval=4 "
              "train.save_interval=4 train.log_interval=2")


def run_sweep(tmp: Path) -> subprocess.CompletedProcess:
    dirs = ["--db-dir", str(tmp / "db"), "--data-dir", str(tmp / "data"),
            "--dump-dir", str(tmp / "dump"), "--exp-dir", str(tmp / "exp")]
    command = ["utils/sweep.sh", "--model", "vqvae", "--sweep", "model.codebook_size=4,8",
               "--train-overrides", TINY_MODEL,
               "--report-dir", str(tmp / "sweep"), *dirs, *TINY, "--classifier-overrides", TINY_CLASSIFIER,
               "--convert-reconstruct", "false", "--score-opts", "--measures mcep"]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


def test_sweep_end_to_end_tags_resume_and_table(tmp_path):
    prepared = run_recipe_in(tmp_path, TINY, "--stage", "0", "--stop-stage", "3")
    assert prepared.returncode == 0, prepared.stderr[-3000:]

    first = run_sweep(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    base = TINY_MODEL.split()
    tags = [experiment_tag("conf/vqvae.yaml", [*base, f"model.codebook_size={size}"]) for size in (4, 8)]
    for tag in tags:
        assert (tmp_path / "exp" / tag / "scores_griffinlim" / "metrics.json").is_file(), tag
        assert (tmp_path / "sweep" / "log" / f"{tag}.status").read_text().strip() == "finished"
    checkpoints = {p: p.stat().st_mtime_ns for tag in tags for p in (tmp_path / "exp" / tag).rglob("*.pt")}
    metrics = {tag: (tmp_path / "exp" / tag / "scores_griffinlim" / "metrics.json").stat().st_mtime_ns
               for tag in tags}
    table = {row["point"]: row for row in read_tsv(tmp_path / "sweep" / "sweep.tsv")}
    assert set(table) == {"model.codebook_size=4", "model.codebook_size=8"}
    for size, tag in zip((4, 8), tags):
        row = table[f"model.codebook_size={size}"]
        recorded = json.loads((tmp_path / "exp" / tag / "scores_griffinlim" / "metrics.json").read_text())
        assert float(row["converted.mcd_logmel_mean"]) == pytest.approx(recorded["rows"]["converted"]["mcd_logmel"],
                                                                        rel=1e-5)
        assert row["n"] == "1" and row["converted.mcd_logmel_std"] == ""  # one seed: no spread
    assert (tmp_path / "sweep" / "plots" / "overview.png").is_file()
    assert "| model.codebook_size=4 | 1 |" in (tmp_path / "sweep" / "sweep.md").read_text()

    # The same command again: run.sh's stamps and train.py's resume make every run a no-op.
    start = time.time()
    second = run_sweep(tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    for tag in tags:
        assert (tmp_path / "sweep" / "log" / f"{tag}.status").read_text().strip() == "up-to-date"
        log = (tmp_path / "sweep" / "log" / f"{tag}.log").read_text()
        assert "Stage 8: " in log and "is up to date; skipping" in log and "Stage 9:" in log
    assert "was finished before: nothing redone" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    assert {tag: (tmp_path / "exp" / tag / "scores_griffinlim" / "metrics.json").stat().st_mtime_ns
            for tag in tags} == metrics
    print(f"second sweep: {time.time() - start:.0f} s")


def test_sweep_rejects_a_tag_and_a_typo_before_running(tmp_path):
    tag = subprocess.run(["utils/sweep.sh", "--sweep", "model.codebook_size=4,8", "--tag", "x"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert tag.returncode == 2 and "--tag cannot be given" in tag.stderr
    typo = subprocess.run(["utils/sweep.sh", "--model", "vqvae", "--sweep", "model.codebok_size=4,8",
                           "--exp-dir", str(tmp_path / "exp")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert typo.returncode != 0 and "did you mean 'codebook_size'" in typo.stderr
    assert not list((tmp_path / "exp").glob("vqvae*"))  # nothing ran
