"""``run.sh --models`` / ``--model all``: every family on the same pairs, the ranked comparison (RESULTS.md and
stage 11's exp/report/comparison.md) and the listening report, checked in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from voiceswap.eval.compare import Entry, comparison_rows, notes, rank
from voiceswap.train.config import load_config

from conftest import REPO_ROOT, TINY_CLASSIFIER, recipe_env, run_recipe_in

# ---------------------------------------------------------------- ranking


def _metrics(name: str, wer: float, spk: float, mos: float, source_wer: float = 10.0, pairs: int = 6) -> dict:
    return {"experiment": name, "exp_dir": f"/nonexistent/{name}", "corpus": "synth", "eval_set": "eval",
            "family": name, "vocoder": "griffinlim", "step": 100, "num_conversions": pairs,
            "rows": {"converted": {"wer": wer, "cer": wer / 2, "spk_sim_target": spk, "mos_ovrl": mos},
                     "source": {"wer": source_wer, "cer": source_wer / 2, "spk_sim_target": 0.5, "mos_ovrl": 3.0},
                     "oracle": {"wer": 8.0, "cer": 4.0, "spk_sim_target": 0.9, "mos_ovrl": 2.5}}}


def test_words_rank_first_then_speaker_then_quality():
    entries = [Entry(_metrics("babbles_in_the_right_voice", wer=80.0, spk=0.95, mos=3.5)),
               Entry(_metrics("keeps_words", wer=12.0, spk=0.60, mos=1.5)),
               Entry(_metrics("keeps_words_better_voice", wer=12.0, spk=0.70, mos=1.0)),
               Entry(_metrics("no_numbers", wer=float("nan"), spk=float("nan"), mos=float("nan")))]
    ranked = rank(entries)
    assert [e.metrics["experiment"] for e in ranked] == [
        "keeps_words_better_voice", "keeps_words", "babbles_in_the_right_voice", "no_numbers"]
    best = ranked[0]
    assert best.ranks == {"words": 1, "speaker": 2, "quality": 3, "overall": 1}
    assert ranked[1].ranks["words"] == 1  # an exact tie shares the rank
    assert ranked[2].ranks["speaker"] == 1 and ranked[2].ranks["words"] == 3
    assert ranked[-1].ranks == {"words": 4, "speaker": 4, "quality": 4, "overall": 4}  # missing numbers rank last
    assert best.relative("wer") == pytest.approx(1.2)


def test_table_has_the_floor_and_ceiling_rows_and_notes_different_pairs():
    entries = rank([Entry(_metrics("a", 12.0, 0.8, 2.0)), Entry(_metrics("b", 20.0, 0.8, 2.0, pairs=4))])
    header, rows = comparison_rows(entries)
    assert header[:2] == ["rank", "experiment"] and header[-2:] == ["train time", "RTF"]
    assert [row[1] for row in rows] == ["a", "b", "source (floor)", "oracle (ceiling, griffinlim)"]
    assert all(len(row) == len(header) for row in rows)
    assert rows[2][header.index("WER/src ↓")] == "1.00x" and rows[3][header.index("WER/src ↓")] == "0.80x"
    assert any("different numbers of conversion pairs (4, 6)" in note for note in notes(entries))


def test_decodes_of_one_vocoder_share_one_ceiling_row():
    guided = _metrics("a", 14.0, 0.8, 2.0)
    guided.update(vocoder="griffinlim_guidance-cfg_scale-3", oracle_vocoder="griffinlim")
    plain = {**_metrics("a", 12.0, 0.8, 2.0), "oracle_vocoder": "griffinlim"}
    hifigan = {**_metrics("a", 10.0, 0.8, 2.0), "vocoder": "hifigan", "oracle_vocoder": "hifigan"}
    _, rows = comparison_rows(rank([Entry(plain), Entry(guided), Entry(hifigan)]))
    assert [row[1] for row in rows if row[0] == "-"] == [
        "source (floor)", "oracle (ceiling, hifigan)", "oracle (ceiling, griffinlim)"]


def test_model_all_has_one_default_config_per_conversion_family(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    from voiceswap.bin.plan import default_models
    from voiceswap.train.registry import get_family, registered_families

    names = default_models()
    families = registered_families("conversion")
    assert len(names) == len(families) >= 5
    assert [load_config(REPO_ROOT / "conf" / f"{name}.yaml")["family"] for name in names] == families
    assert get_family("softvc").default_config == "softvc_whisper_ppg"  # the toolkit's default model


# ---------------------------------------------------------------- run.sh --models, stage 11

CORPUS = ["--synth-speakers", "slt ked esf2", "--num-sentences", "5", "--num-dev-sentences", "1",
          "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]
TINY_VQVAE = ("model.hidden_dim=32 model.residual_dim=16 model.code_dim=16 model.codebook_size=8 model.speaker_dim=8 "
              "data.batch_size=4 data.crop_frames=64 data.num_workers=0")
TINY_VAEGAN = ("data.crop_frames=32 data.batch_size=4 data.num_workers=0 model.encoder_channels=[4,8,8] "
               "model.encoder_res_blocks=1 model.generator_res_blocks=1 model.generator_channels=[8,4] "
               "model.discriminator_channels=[4,8] plots.interval=3")
# Plain overrides go to every model, "<model>:" ones to that model; softvc_whisper_ppg's is a typo on purpose.
OVERRIDES = " ".join(["train.max_steps=6 train.valid_interval=3 train.save_interval=3 train.log_interval=3",
                      *(f"vqvae:{o}" for o in TINY_VQVAE.split()), *(f"vaegan:{o}" for o in TINY_VAEGAN.split()),
                      "softvc_whisper_ppg:train.no_such_key=1"])
MODEL_OPTIONS = ["--train-overrides", OVERRIDES, "--inference-overrides", "vaegan:inference.hop=16",
                 "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 1", "--report-pairs", "3"]


@pytest.fixture(scope="module")
def models_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    result = run_recipe_in(tmp, CORPUS, "--models", "vqvae vaegan softvc_whisper_ppg", *MODEL_OPTIONS)
    return tmp, result


def _exp(tmp: Path, prefix: str) -> Path:
    (exp,) = [p for p in (tmp / "exp").iterdir() if p.name.startswith(prefix + "__")]
    return exp


def test_a_failed_model_is_named_with_its_log_and_the_others_are_kept(models_run):
    tmp, result = models_run
    assert result.returncode == 1, result.stderr[-3000:]
    log = tmp / "exp" / "report" / "log" / "softvc_whisper_ppg.log"
    assert f"failed: softvc_whisper_ppg; their logs: {log}" in result.stderr
    assert "unknown config key 'train.no_such_key'" in log.read_text()
    # The other two ran stages 4-10 with their own overrides, vocoder settings and tags.
    assert (_exp(tmp, "vqvae") / "scores_griffinlim" / "metrics.json").is_file()
    assert (_exp(tmp, "vaegan") / "scores_griffinlim_hop-16" / "metrics.json").is_file()
    assert not list((tmp / "exp").glob("softvc_whisper_ppg*"))
    assert json.loads((_exp(tmp, "vqvae") / "train_time.json").read_text())["step"] == 6


def test_results_md_ranks_both_families(models_run):
    tmp, _ = models_run
    results = (tmp / "RESULTS.md").read_text()
    section = results[results.index("### Comparison across families (synth)"):]
    ranked = [line.split(" | ")[1] for line in section.splitlines() if line.startswith("| 1 ") or
              line.startswith("| 2 ")]
    assert sorted(name.split("__")[0] for name in ranked) == ["vaegan", "vqvae"]
    assert "| - | source (floor) |" in section and "| - | oracle (ceiling, griffinlim) |" in section


def test_report_has_every_pair_player_and_relative_paths_only(models_run):
    tmp, _ = models_run
    report = tmp / "exp" / "report"
    page = (report / "index.html").read_text()
    assert page.count('<div class="pair"') == 3
    assert page.count("<audio ") == 3 * 4  # source, target reference, vqvae, vaegan
    assert str(tmp) not in page.split("; made ")[0]  # the table above the players: no absolute path
    assert str(tmp) not in page.split("</code>")[1]  # the players and images use relative paths
    assert "| 1 |" in (report / "comparison.md").read_text()


def test_rerun_resumes_model_by_model(models_run):
    tmp, _ = models_run
    result = run_recipe_in(tmp, CORPUS, "--models", "vqvae", "--stage", "4", "--stop-stage", "8", *MODEL_OPTIONS)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp / "exp" / "report" / "log" / "vqvae.log").read_text()
    assert "Stage 5: " in log and "is up to date; skipping" in log
    assert "Stage 8: " in log and "convert_griffinlim is up to date; skipping" in log and "Stage 9:" not in log
    # training resumed at its last step and took none
    assert "nothing to train" in (_exp(tmp, "vqvae") / "log" / "train.log").read_text()
    assert "Successfully finished stages 4-8 of: vqvae" in result.stderr


# ---------------------------------------------------------------- the report in a real browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("VOICESWAP_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))

CHECK_MEDIA = """async () => {
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const audios = await Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(resolve => {
    const done = () => resolve({src: a.getAttribute('src'), duration: a.duration,
                                expected: parseFloat(a.dataset.duration), error: a.error ? a.error.code : null});
    if (a.readyState >= 1 || a.error) { done(); return; }
    a.addEventListener('loadedmetadata', done);
    a.addEventListener('error', done);
    a.load();
  })));
  const links = [...document.querySelectorAll('a')].map(a => a.getAttribute('href'));
  return {images, audios, links};
}"""


def test_report_loads_in_headless_chromium(models_run):
    from playwright.sync_api import sync_playwright

    tmp, _ = models_run
    index = tmp / "exp" / "report" / "index.html"
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: utils/setup.sh installs Debian's chromium (as root)"
    failed_requests = []
    with sync_playwright() as playwright:
        # As root (CI) Chromium needs --no-sandbox; no background networking on a machine without internet.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            media = page.evaluate(CHECK_MEDIA)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report_index.png"), full_page=True)
        finally:
            browser.close()
    assert not failed_requests
    assert len(media["images"]) == 3 and all(image["ok"] for image in media["images"]), media["images"]
    assert len(media["audios"]) == 12
    for audio in media["audios"]:
        assert audio["error"] is None, audio
        assert audio["duration"] == pytest.approx(audio["expected"], abs=0.01), audio
    plot_links = [link for link in media["links"] if link.startswith("plots/")]
    assert plot_links and all((index.parent / unquote(link)).is_file() for link in plot_links)
    assert (ARTIFACTS / "report_index.png").stat().st_size > 10000


def test_model_all_rejects_a_tag(tmp_path):
    result = subprocess.run(["./run.sh", "--model", "all", "--tag", "mine", "--exp-dir", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, env=recipe_env(), timeout=120)
    assert result.returncode == 2
    assert "--model-config and --tag name one experiment" in result.stderr
