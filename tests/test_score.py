"""Stages 9-10 end to end on a tiny experiment: score.py, plot.py and the results table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY_CLASSIFIER, run_recipe_in

TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
        "--num-eval-sentences", "2", "--num-pair-sentences", "1", "--nj", "2"]
TINY_MODEL = ("model.hidden_dim=32 model.residual_dim=16 model.code_dim=16 model.codebook_size=8 "
              "model.speaker_dim=8 data.batch_size=4 data.crop_frames=64 data.num_workers=0 "
              "train.max_steps=20 train.valid_interval=10 train.save_interval=10 train.log_interval=5")


def run_recipe(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return run_recipe_in(tmp, TINY, *args)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("score")
    result = run_recipe(tmp, "--model", "vqvae", "--stage", "0", "--stop-stage", "10", "--train-overrides", TINY_MODEL,
                        "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 2")
    assert result.returncode == 0, result.stderr[-4000:]
    (exp,) = [p for p in (tmp / "exp").iterdir() if p.name.startswith("vqvae")]
    return tmp, exp, result


def test_metrics_json_has_every_row_and_metric(scored):
    _, exp, _ = scored
    metrics = json.loads((exp / "scores_griffinlim" / "metrics.json").read_text())
    assert metrics["corpus"] == "synth" and metrics["vocoder"] == "griffinlim" and metrics["parallel"]
    assert metrics["num_conversions"] == 6 and metrics["num_reconstructions"] == 3
    assert set(metrics["rows"]) == {"converted", "source", "oracle", "reconstruction"}
    for name, row in metrics["rows"].items():
        for key in ("spk_sim_target", "spk_sim_source", "spk_acc", "class_score", "mcd_logmel",
                    "wer", "cer", "wer_ps", "cer_ps"):
            assert row[key] is not None, (name, key)
        # WORLD MCD and F0 compare voiced frames only: a 20-step model's output may have none (then it is counted).
        assert row["mcd"] is not None or row["num_mcd_unvoiced"] == row["num_pairs"], name
        assert row["f0_rmse"] is not None or row["num_f0_unvoiced"] == row["num_pairs"], name
        assert -1.0 <= row["spk_sim_target"] <= 1.0 and 0.0 <= row["spk_acc"] <= 1.0
    for name in ("source", "oracle"):  # real speech against real speech: always voiced frames in both
        assert metrics["rows"][name]["f0_rmse"] is not None and metrics["rows"][name]["num_f0_unvoiced"] == 0
    rows = metrics["rows"]
    assert rows["source"]["wer_delta"] == 0.0
    assert rows["converted"]["mos_ovrl"] is not None and rows["converted"]["num_mos_pairs"] == 2
    # Real target speech through Griffin-Lim is far closer to the reference than another speaker is.
    assert rows["oracle"]["mcd"] < rows["source"]["mcd"]
    assert rows["oracle"]["mcd_logmel"] < rows["source"]["mcd_logmel"]
    assert metrics["asr_judges"]["whisper"]["beam_size"] == 5
    assert rows["oracle"]["spk_sim_target"] > rows["source"]["spk_sim_target"]
    assert rows["source"]["spk_sim_source"] > rows["source"]["spk_sim_target"]
    codes = metrics["codes"]
    assert codes["model"]["codebook_size"] == 8 and codes["kmeans_mfcc"]["codebook_size"] == 8
    assert 0.0 <= codes["model"]["phone_purity"] <= 1.0 and 1.0 - 1e-6 <= codes["model"]["perplexity"] <= 8.0
    assert metrics["environment"]["torch"] and metrics["command"].startswith("score.py summarize")
    assert (exp / "scores_griffinlim" / "oracle_wav").is_dir()
    report = (exp / "scores_griffinlim" / "RESULTS.md").read_text()
    assert "| converted |" in report and "| oracle |" in report and "griffinlim" in report
    pairs = [json.loads(line) for line in (exp / "scores_griffinlim" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 6 * 3 + 3


def test_plots_are_non_empty_pngs(scored):
    _, exp, _ = scored
    names = {p.name for p in (exp / "plots_griffinlim").glob("*.png")}
    expected = {"loss_curves.png", "spectrogram_1.png", "speaker_similarity.png", "code_usage.png",
                "codebook_pca.png", "bigrams_phones.png", "bigrams_codes.png", "p_code_given_phone.png"}
    assert expected <= names
    for name in names:
        data = (exp / "plots_griffinlim" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name


def test_results_table_and_rerun_skips(scored):
    tmp, exp, _ = scored
    table = (tmp / "RESULTS.md").read_text()
    assert "## Corpus synth" in table and exp.name in table and "Git hash" in table and "pytorch version" in table
    header = next(line for line in table.splitlines() if line.startswith("| experiment"))
    row = next(line for line in table.splitlines() if line.startswith(f"| {exp.name}"))
    assert header.count("|") == row.count("|")
    again = run_recipe(tmp, "--model", "vqvae", "--stage", "9", "--stop-stage", "9", "--train-overrides", TINY_MODEL,
                       "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "up to date" in again.stderr


def test_score_without_conversions_names_stage_8(tmp_path):
    exp = tmp_path / "exp" / "x"
    exp.mkdir(parents=True)
    result = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "python"), "voiceswap/bin/score.py", "summarize",
                             "--exp-dir", str(exp)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "conversions is missing: run stage 8" in result.stderr


def test_one_results_row_per_experiment_and_vocoder(scored, tmp_path):
    """Stages 8-10 write per-vocoder dirs, so the same model scored with two vocoders gives two rows."""
    tmp, exp, _ = scored
    exp_copy = tmp_path / "exp" / exp.name
    for vocoder in ("griffinlim", "hifigan"):
        metrics = json.loads((exp / "scores_griffinlim" / "metrics.json").read_text())
        metrics["vocoder"] = vocoder
        (exp_copy / f"scores_{vocoder}").mkdir(parents=True)
        (exp_copy / f"scores_{vocoder}" / "metrics.json").write_text(json.dumps(metrics))
    result = subprocess.run(["utils/show_results.sh", str(tmp_path / "exp")], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:3] for line in result.stdout.splitlines() if line.startswith(f"| {exp.name}")]
    assert [[cell.strip() for cell in row] for row in rows] == [[exp.name, "griffinlim"], [exp.name, "hifigan"]]
