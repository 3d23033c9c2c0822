"""Features against an independent librosa/scipy computation; ark round trip; statistics."""

from __future__ import annotations

import subprocess

import kaldiio
import librosa
import numpy as np
import pytest
import scipy.fft

from conftest import REPO_ROOT, make_data_dir, recipe_env
from voiceswap.data.ark import ArkWriter
from voiceswap.features.spectral import FeatureExtractor, FeatureConfigError, load_feature_config
from voiceswap.features.stats import StatsAccumulator, mean_std_from_kaldi_cmvn

LOGMEL = REPO_ROOT / "conf" / "feats" / "logmel80.yaml"
MFCC = REPO_ROOT / "conf" / "feats" / "mfcc39.yaml"


def speechlike(seconds: float = 1.03, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.3 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def librosa_mel(wave: np.ndarray, config, power: float) -> np.ndarray:
    padded = np.pad(wave, config.padding, mode="reflect")
    return librosa.feature.melspectrogram(
        y=padded, sr=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
        hop_length=config.hop_length, n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max,
        center=False, power=power, htk=False, norm="slaney",
    )


def test_logmel_matches_librosa():
    config = load_feature_config(LOGMEL)
    wave = speechlike()
    ours = FeatureExtractor(config)(wave)
    reference = np.log(np.maximum(librosa_mel(wave, config, power=1.0), config.log_floor)).T
    assert ours.shape == reference.shape == (len(wave) // 160, 80)
    assert np.abs(ours - reference).max() < 2e-3


def regression_deltas(features: np.ndarray, window: int) -> np.ndarray:
    """HTK's delta regression with edge replication, written out independently."""
    half = window // 2
    padded = np.pad(features, ((0, 0), (half, half)), mode="edge")
    frames = features.shape[1]
    numerator = sum(n * (padded[:, half + n : half + n + frames] - padded[:, half - n : half - n + frames])
                    for n in range(1, half + 1))
    return numerator / (2 * sum(n * n for n in range(1, half + 1)))


def test_mfcc39_matches_librosa_and_scipy():
    config = load_feature_config(MFCC)
    wave = speechlike()
    ours = FeatureExtractor(config)(wave)
    log_mel = np.log(librosa_mel(wave, config, power=2.0) + 1e-6)
    cepstra = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=0)[: config.n_mfcc]
    delta = regression_deltas(cepstra, config.delta_window)
    reference = np.concatenate([cepstra, delta, regression_deltas(delta, config.delta_window)]).T
    assert ours.shape == reference.shape == (len(wave) // 160, 39)
    assert np.abs(ours - reference).max() < 5e-3


def test_both_features_have_the_same_frames():
    wave = speechlike(0.777)
    frames = {FeatureExtractor(load_feature_config(c))(wave).shape[0] for c in (LOGMEL, MFCC)}
    assert frames == {len(wave) // 160}


def test_too_short_utterance_is_an_error():
    with pytest.raises(ValueError, match="too short"):
        FeatureExtractor(load_feature_config(LOGMEL))(np.zeros(100, dtype=np.float32))


def test_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: logmel\nn_melz: 80\n")
    with pytest.raises(FeatureConfigError, match=r"unknown key\(s\) \['n_melz'\]"):
        load_feature_config(bad)


def test_ark_round_trip_and_atomicity(tmp_path):
    matrices = {f"utt{i}": np.random.default_rng(i).standard_normal((5 + i, 3)).astype(np.float32) for i in range(3)}
    with ArkWriter(tmp_path / "feats.ark", tmp_path / "feats.scp") as writer:
        for key, matrix in matrices.items():
            writer[key] = matrix
    loaded = kaldiio.load_scp(str(tmp_path / "feats.scp"))
    assert sorted(loaded) == sorted(matrices)
    for key, matrix in matrices.items():
        np.testing.assert_array_equal(loaded[key], matrix)
    assert all(str(tmp_path / "feats.ark:") in line for line in (tmp_path / "feats.scp").read_text().splitlines())

    with pytest.raises(RuntimeError):
        with ArkWriter(tmp_path / "other.ark", tmp_path / "other.scp") as writer:
            writer["x"] = matrices["utt0"]
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.ark", "feats.scp"]


def test_stats_accumulator_matches_numpy():
    rng = np.random.default_rng(1)
    chunks = [rng.normal(3.0, 2.0, size=(n, 4)).astype(np.float32) for n in (7, 11, 20)]
    accumulator = StatsAccumulator(4)
    for chunk in chunks:
        accumulator.add(chunk)
    everything = np.concatenate(chunks).astype(np.float64)
    mean, std = accumulator.mean_std()
    np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(std, everything.std(axis=0), rtol=1e-8)
    cmvn = accumulator.to_kaldi_cmvn()
    assert cmvn.shape == (2, 5) and cmvn[0, 4] == 38
    np.testing.assert_allclose(mean_std_from_kaldi_cmvn(cmvn)[0], mean, rtol=1e-12)


def run_tool(args, **kwargs):
    return subprocess.run(args, env=recipe_env(), capture_output=True, text=True, cwd=REPO_ROOT, **kwargs)


def test_compute_feats_cli_and_failure_rate(tmp_path):
    data = make_data_dir(tmp_path, speakers=("spka", "spkb"), utts_per_speaker=3)
    out = tmp_path / "out"
    result = run_tool(["compute_feats.py", "--config", str(LOGMEL), str(data / "wav.scp"),
                       str(out / "feats.ark"), str(out / "feats.scp"), str(out / "utt2num_frames")])
    assert result.returncode == 0, result.stderr
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    assert frames["spka-u00"] == str(8000 // 160)

    # One bad utterance of six is more than 5 %: the job fails and names it.
    (tmp_path / "wav" / "spkb-u02.wav").write_bytes(b"not audio")
    result = run_tool(["compute_feats.py", "--config", str(LOGMEL), str(data / "wav.scp"),
                       str(out / "f2.ark"), str(out / "f2.scp"), str(out / "n2")])
    assert result.returncode == 1
    assert "utterance 'spkb-u02'" in result.stderr and "1 of 6 utterances" in result.stderr
    # With a tolerance above that rate it succeeds without the bad utterance.
    result = run_tool(["compute_feats.py", "--config", str(LOGMEL), "--max-failure-rate", "0.2",
                       str(data / "wav.scp"), str(out / "f3.ark"), str(out / "f3.scp"), str(out / "n3")])
    assert result.returncode == 0
    assert "spkb-u02" not in (out / "f3.scp").read_text()


def test_stats_and_normalisation_cli(tmp_path):
    data = make_data_dir(tmp_path, speakers=("spka", "spkb"), utts_per_speaker=2)
    raw = tmp_path / "raw"
    assert run_tool(["compute_feats.py", "--config", str(LOGMEL), str(data / "wav.scp"),
                     str(raw / "feats.ark"), str(raw / "feats.scp"), str(raw / "n")]).returncode == 0
    stats = tmp_path / "stats"
    result = run_tool(["compute_stats.py", "--global-stats", str(stats / "global.npz"),
                       "--utt2spk", str(data / "utt2spk"), "--spk-stats", str(stats / "spk.ark"),
                       str(raw / "feats.scp")])
    assert result.returncode == 0, result.stderr
    raw_feats = kaldiio.load_scp(str(raw / "feats.scp"))
    spk_stats = kaldiio.load_scp(str(stats / "spk.scp"))
    spka = np.concatenate([raw_feats["spka-u00"], raw_feats["spka-u01"]]).astype(np.float64)
    np.testing.assert_allclose(mean_std_from_kaldi_cmvn(spk_stats["spka"])[0], spka.mean(axis=0), rtol=1e-6)

    norm = tmp_path / "norm"
    result = run_tool(["normalize_feats.py", "--stats", str(stats / "global.npz"), str(raw / "feats.scp"),
                       str(norm / "feats.ark"), str(norm / "feats.scp")])
    assert result.returncode == 0, result.stderr
    normalised = np.concatenate(list(kaldiio.load_scp(str(norm / "feats.scp")).values()))
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-4)
    assert np.all(np.abs(normalised.std(axis=0) - 1.0) < 1e-3)

    missing = run_tool(["normalize_feats.py", "--stats", str(tmp_path / "nope.npz"), str(raw / "feats.scp"),
                        str(norm / "x.ark"), str(norm / "x.scp")])
    assert missing.returncode == 1 and "run stage 3 (statistics) first" in missing.stderr
