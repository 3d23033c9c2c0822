"""WaveGlow through the recipe: ``--vocoder waveglow`` (stage 7, copy synthesis in stage 9) and
``--model waveglow_vq`` (stages 4-10: waveform stream, training, code dump, conversion to audio)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from conftest import TINY_CLASSIFIER, run_recipe_in

TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
        "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]

# Tiny sizes and a few steps: the point is the wiring, not the quality.
TINY_FLOW = ("model.n_flows=2 model.n_group=8 model.n_early_every=1 model.n_early_size=2 model.wn_layers=2 "
             "model.wn_channels=8")
TINY_STEPS = "train.max_steps=2 train.valid_interval=2 train.save_interval=2 train.log_interval=1"
TINY_VQ = (f"{TINY_FLOW} {TINY_STEPS} model.speaker_dim=4 model.encoder_channels=8 model.code_dim=8 "
           "model.codebook_size=16 model.upsampler_channels=8 model.cond_channels=2 data.batch_size=2 "
           "data.crop_frames=16 data.num_workers=0")
TINY_VOCODER = (f"{TINY_FLOW} {TINY_STEPS} model.cond_channels=16 data.batch_size=2 data.segment_frames=8 "
                "data.num_workers=0 data.valid_max_utts=2")


@pytest.fixture(scope="module")
def waveglow_recipe(tmp_path_factory):
    """Stages 0-3 of a tiny corpus, then stages 4-10 of waveglow_vq with the waveglow vocoder (stage 7)."""
    tmp = tmp_path_factory.mktemp("waveglow_recipe")
    result = run_recipe_in(tmp, TINY, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    options = ["--model", "waveglow_vq", "--vocoder", "waveglow", "--train-overrides", TINY_VQ,
               "--vocoder-overrides", TINY_VOCODER, "--classifier-overrides", TINY_CLASSIFIER,
               "--score-opts", "--mos-max-pairs 1"]
    # Two calls, each within run_recipe_in's 10-minute limit on a busy machine.
    for first, last in (("4", "8"), ("9", "10")):
        result = run_recipe_in(tmp, TINY, *options, "--stage", first, "--stop-stage", last)
        assert result.returncode == 0, result.stderr[-3000:]
    experiments = [p for p in (tmp / "exp").iterdir() if p.name.startswith("waveglow_vq")]
    assert len(experiments) == 1
    return tmp, experiments[0]


def mel_frames(root: Path, subset: str) -> dict:
    path = root / "dump" / "raw" / "logmel80" / subset / "utt2num_frames"
    return {utt: int(n) for utt, n in (line.split() for line in path.read_text().splitlines())}


def test_the_waveform_stream_and_the_code_dump_of_every_set(waveglow_recipe):
    root, exp = waveglow_recipe
    for subset in ("train", "dev", "eval"):
        frames = mel_frames(root, subset)
        wave = kaldiio.load_scp(str(root / "dump" / "content" / "waveform_sr16000_hop160" / subset / "feats.scp"))
        assert set(wave) == set(frames)
        units = root / "dump" / "units" / exp.name / subset
        indices = kaldiio.load_scp(str(units / "indices.scp"))
        assert set(indices) == set(frames)
        for utt, samples in wave.items():
            assert samples.shape == (frames[utt], 160)  # the samples the log-mel frames were made from
            audio, _ = sf.read(dict(line.split() for line in (root / "data" / subset / "wav.scp").read_text()
                                    .splitlines())[utt], dtype="float32")
            np.testing.assert_allclose(samples.reshape(-1), audio[: frames[utt] * 160], atol=1e-6)
            assert indices[utt].dtype == np.int32 and indices[utt].shape == (math.ceil(frames[utt] * 160 / 64),)
            assert 0 <= indices[utt].min() and indices[utt].max() < 16
        assert (units / "num_units").read_text().strip() == "16"


def test_the_model_and_the_vocoder_are_trained(waveglow_recipe):
    root, exp = waveglow_recipe
    assert (exp / "checkpoints" / "best.pt").exists() and "family: waveglow_vq\n" in (exp / "config.yaml").read_text()
    vocoder = root / "exp" / "vocoder_waveglow_synth"
    assert (vocoder / "checkpoints" / "best.pt").exists()
    assert "family: waveglow\n" in (vocoder / "config.yaml").read_text()


def test_conversions_are_the_models_own_audio_of_the_source_length(waveglow_recipe):
    root, exp = waveglow_recipe
    out = exp / "convert_waveglow"
    rows = [line.split() for line in (out / "conversions").read_text().splitlines()]
    assert sum(row[5] == "conversion" for row in rows) == 6 and sum(row[5] == "reconstruction" for row in rows) == 3
    frames = mel_frames(root, "eval")
    mels = kaldiio.load_scp(str(out / "mel.scp"))
    for output_id, source, *_ in rows:
        audio, rate = sf.read(out / "wav" / f"{output_id}.wav")
        assert rate == 16000 and len(audio) == frames[source] * 160 and np.isfinite(audio).all()
        assert mels[output_id].shape == (frames[source], 80) and np.isfinite(mels[output_id]).all()


def test_scores_with_waveglow_copy_synthesis_as_the_oracle(waveglow_recipe):
    root, exp = waveglow_recipe
    metrics = json.loads((exp / "scores_waveglow" / "metrics.json").read_text())
    assert metrics["family"] == "waveglow_vq" and metrics["vocoder"] == "waveglow"
    assert {"converted", "oracle"} <= set(metrics["rows"])
    assert len(list((exp / "scores_waveglow" / "oracle_wav").glob("*.wav"))) > 0  # real log-mel through WaveGlow
    assert metrics["rows"]["oracle"]["mcd"] > 0
    table = (root / "RESULTS.md").read_text()
    assert any(line.startswith(f"| {exp.name} | waveglow |") for line in table.splitlines())
