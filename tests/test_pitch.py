"""The pitch stream (issue 12 item 3): frames aligned with the log-mel, F0 recovered, the range shift, and
Soft-VC conditioned on it (trains, converts, and the contour changes the output)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO_ROOT, make_data_dir

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.bin import extract_pitch
from voiceswap.conversion import ConversionConditions, ConversionError
from voiceswap.data.loaders import build_loaders
from voiceswap.data.streams import StreamLayout, stream_dir
from voiceswap.features.pitch import (
    LOG_F0,
    LOG_F0_REL,
    MIN_STD,
    VOICED,
    F0Stats,
    PitchError,
    converted_stream,
    extract_log_f0,
    pitch_name,
    pitch_stream,
    read_f0_stats,
    shift_range,
    speaker_stats,
    write_f0_stats,
)
from voiceswap.features.spectral import FeatureExtractor, load_feature_config
from voiceswap.train.config import apply_overrides, load_config
from voiceswap.train.jobs import RecipeContext, stage_jobs
from voiceswap.train.registry import OptimizerStep, get_family

RATE, HOP = 16000, 160
F0_CONFIG = REPO_ROOT / "conf" / "softvc_whisper_f0.yaml"


def tone(samples: int, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.003 * rng.standard_normal(samples)).astype(np.float32)


@pytest.mark.parametrize("samples", [500, 1599, 1600, 1601, 4879, 16000, 16037, 24159])
def test_pitch_frames_are_the_log_mel_frames(samples):
    mel = FeatureExtractor(load_feature_config(REPO_ROOT / "conf" / "feats" / "logmel80.yaml"))
    waveform = tone(samples)
    log_f0, voiced = extract_log_f0(waveform, RATE, HOP)
    assert len(log_f0) == len(voiced) == samples // HOP == mel(waveform).shape[0]
    assert log_f0.dtype == np.float32 and voiced.dtype == bool


@pytest.mark.parametrize("samples", [0, 79, 159])
def test_shorter_than_a_hop_gives_no_frame(samples):
    log_f0, voiced = extract_log_f0(tone(samples), RATE, HOP)
    assert log_f0.shape == voiced.shape == (0,)


def test_frame_t_is_the_f0_at_the_centre_of_mel_frame_t():
    # A glide of 300 Hz/s: half a hop (5 ms) of misalignment is a 1.5 Hz error, far above StoneMask's.
    samples = RATE + 37
    t = np.arange(samples) / RATE
    waveform = 0.5 * np.sin(2 * np.pi * np.cumsum(100.0 + 300.0 * t) / RATE)
    log_f0, voiced = extract_log_f0(waveform, RATE, HOP)
    frames = np.arange(len(log_f0))
    inner = voiced & (frames > 5) & (frames < len(frames) - 5)
    assert inner.sum() > 0.9 * (len(frames) - 11)
    f0 = np.exp(log_f0[inner])
    at_centre = 100.0 + 300.0 * (frames[inner] * HOP + HOP // 2) / RATE
    at_start = 100.0 + 300.0 * (frames[inner] * HOP) / RATE
    centre_error, start_error = np.median(np.abs(f0 - at_centre)), np.median(np.abs(f0 - at_start))
    assert centre_error < 0.6 and centre_error < 0.5 * start_error


@pytest.mark.parametrize("method, freq", [("dio", 220.0), ("dio", 95.0), ("harvest", 180.0)])
def test_a_pure_tone_gives_its_f0(method, freq):
    log_f0, voiced = extract_log_f0(tone(8000, freq), RATE, HOP, method=method)
    assert voiced.mean() > 0.9
    assert np.median(np.exp(log_f0[voiced])) == pytest.approx(freq, rel=0.005)
    assert (log_f0[~voiced] == 0).all()


def test_silence_is_unvoiced():
    log_f0, voiced = extract_log_f0(np.zeros(4000, np.float32), RATE, HOP)
    assert not voiced.any() and (log_f0 == 0).all()


def test_speaker_stats_use_voiced_frames_only_and_round_trip(tmp_path):
    tracks = {"a1": (np.array([math.log(100.0), 0.0, math.log(200.0)]), np.array([True, False, True])),
              "a2": (np.array([math.log(100.0), 7.0]), np.array([True, False])),
              "b1": (np.zeros(4), np.zeros(4, bool))}
    stats = speaker_stats(tracks, {"a1": "a", "a2": "a", "b1": "b"})
    assert set(stats) == {"a"}  # b has no voiced frame
    expected = np.log([100.0, 200.0, 100.0])
    assert stats["a"].mean == pytest.approx(expected.mean()) and stats["a"].std == pytest.approx(expected.std())
    assert stats["a"].frames == 3
    write_f0_stats(tmp_path / "spk_f0_stats", stats)
    loaded = read_f0_stats(tmp_path / "spk_f0_stats")
    assert loaded["a"].mean == pytest.approx(stats["a"].mean, abs=1e-6) and loaded["a"].frames == 3
    with pytest.raises(PitchError, match="pitch step of stage 4"):
        read_f0_stats(tmp_path / "missing")


def test_range_shift_maps_the_source_mean_and_std_to_the_target():
    rng = np.random.default_rng(0)
    voiced = rng.random(400) > 0.3
    log_f0 = np.where(voiced, math.log(110.0) + 0.15 * rng.standard_normal(400), 0.0)
    source = F0Stats.of(log_f0, voiced)
    target = F0Stats(math.log(210.0), 0.08, 1000)
    shifted = shift_range(log_f0, voiced, source, target)
    assert shifted[voiced].mean() == pytest.approx(target.mean, abs=1e-5)
    assert shifted[voiced].std() == pytest.approx(target.std, abs=1e-5)
    assert (shifted[~voiced] == 0).all()
    # The contour is kept: an affine map of the source's voiced log-F0.
    assert np.corrcoef(shifted[voiced], log_f0[voiced])[0, 1] == pytest.approx(1.0, abs=1e-6)

    # The stream as the target speaker's: same voicing, relative column about the target's mean.
    stream = pitch_stream(log_f0, voiced, source.mean)
    for given in (source, None):  # None: the utterance's own statistics (your own audio)
        moved = converted_stream(stream, given, target)
        assert moved.shape == stream.shape and moved.dtype == np.float32
        np.testing.assert_array_equal(moved[:, VOICED], stream[:, VOICED])
        np.testing.assert_allclose(moved[:, LOG_F0], shifted, atol=1e-5)
        np.testing.assert_allclose(moved[voiced, LOG_F0_REL], shifted[voiced] - target.mean, atol=1e-5)
        assert (moved[~voiced] == 0).all()


def test_a_flat_source_is_not_blown_up_and_an_unvoiced_one_stays_unvoiced():
    voiced = np.ones(50, bool)
    flat = np.full(50, math.log(100.0)) + 1e-4 * np.arange(50)
    source, target = F0Stats.of(flat, voiced), F0Stats(math.log(200.0), 0.1, 10)
    shifted = shift_range(flat, voiced, source, target)
    assert shifted.std() <= target.std * source.std / MIN_STD + 1e-6
    unvoiced = converted_stream(pitch_stream(np.zeros(20), np.zeros(20, bool), 0.0), None, target)
    assert (unvoiced == 0).all()
    with pytest.raises(PitchError, match="3 columns"):
        converted_stream(np.zeros((5, 2), np.float32), None, target)


def test_pitch_name_and_settings_are_checked():
    assert pitch_name({"method": "dio", "f0_min": 50, "f0_max": 500}) == "dio_50-500"
    with pytest.raises(PitchError, match="harvest"):
        pitch_name({"method": "yin"})
    with pytest.raises(PitchError, match="f0_min"):
        pitch_name({"f0_min": 400, "f0_max": 100})


def write_raw_mel_dir(dump: Path, subset: str, data: Path) -> None:
    """What stage 2 leaves for the pitch step: the log-mel's feats_config.yaml and utt2num_frames."""
    raw = dump / "raw" / "logmel80" / subset
    raw.mkdir(parents=True)
    (raw / "feats_config.yaml").write_text((REPO_ROOT / "conf" / "feats" / "logmel80.yaml").read_text())
    lines = []
    for line in (data / "wav.scp").read_text().splitlines():
        utt, path = line.split()
        lines.append(f"{utt} {len(sf.read(path)[0]) // HOP}")
    (raw / "utt2num_frames").write_text("\n".join(lines) + "\n")


def test_extract_pitch_writes_the_stream_and_speaker_stats(tmp_path):
    # Tones of 150 + 40 s + 7 i Hz (conftest.make_data_dir): speaker s, utterance i.
    data = make_data_dir(tmp_path / "train", speakers=("spka", "spkb"), utts_per_speaker=2)
    dev = make_data_dir(tmp_path / "dev", speakers=("spka", "spkc"), utts_per_speaker=1)
    root = tmp_path / "corpus"
    (root / "data").mkdir(parents=True)
    (root / "data" / "train").symlink_to(data)
    (root / "data" / "dev").symlink_to(dev)
    for subset, where in (("train", data), ("dev", dev)):
        write_raw_mel_dir(root / "dump", subset, where)
    out = root / "dump" / "pitch" / "train"
    args = ["--config", str(F0_CONFIG), "--dump-dir", str(root / "dump"), "--data-dir", str(root / "data")]
    assert extract_pitch.main([*args, "train", str(out)]) == 0
    stats = read_f0_stats(out / "spk_f0_stats")
    assert math.exp(stats["spka"].mean) == pytest.approx(np.exp(np.mean(np.log([150.0, 157.0]))), rel=0.01)
    assert math.exp(stats["spkb"].mean) == pytest.approx(np.exp(np.mean(np.log([190.0, 197.0]))), rel=0.01)
    streams = dict(kaldiio.load_scp(str(out / "feats.scp")))
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    for utt, stream in streams.items():
        assert stream.shape == (int(frames[utt]), 3)
        voiced = stream[:, VOICED] > 0.5
        assert voiced.mean() > 0.9
        mean = stats[utt.split("-")[0]].mean
        np.testing.assert_allclose(stream[voiced, LOG_F0_REL], stream[voiced, LOG_F0] - mean, atol=1e-5)

    # dev: spka's mean from the train set's table, spkc (not trained on) from dev itself.
    dev_out = root / "dump" / "pitch" / "dev"
    assert extract_pitch.main([*args, "--speaker-stats", str(out / "spk_f0_stats"), "dev", str(dev_out)]) == 0
    dev_streams, dev_stats = dict(kaldiio.load_scp(str(dev_out / "feats.scp"))), read_f0_stats(dev_out / "spk_f0_stats")
    for utt, reference in (("spka-u00", stats["spka"]), ("spkc-u00", dev_stats["spkc"])):
        stream = dev_streams[utt]
        voiced = stream[:, VOICED] > 0.5
        np.testing.assert_allclose(stream[voiced, LOG_F0_REL], stream[voiced, LOG_F0] - reference.mean, atol=1e-5)

    # Audio that changed since stage 2 (another frame count) is refused.
    (root / "dump" / "raw" / "logmel80" / "train" / "utt2num_frames").write_text("spka-u00 3\n")
    assert extract_pitch.main([*args, "train", str(tmp_path / "bad")]) == 1


def test_the_plan_makes_pitch_train_set_first():
    config = load_config(F0_CONFIG)
    family = get_family("softvc")()
    ctx = RecipeContext(str(F0_CONFIG), [], Path("exp/t"), Path("dump"), Path("data"))
    jobs = [job for job in stage_jobs(4, family, config, ctx) if job.command[0] == "extract_pitch.py"]
    assert [job.command[-2] for job in jobs] == ["train", "dev", "eval"]
    assert "--speaker-stats" not in jobs[0].command
    for job in jobs[1:]:
        assert job.command[job.command.index("--speaker-stats") + 1] == "dump/pitch/dio_50-500/train/spk_f0_stats"
        assert Path("dump/pitch/dio_50-500/train/.done") in job.inputs
    assert jobs[0].out == Path("dump/pitch/dio_50-500/train")
    # The other Soft-VC configs have no pitch step.
    plain = load_config(REPO_ROOT / "conf" / "softvc_whisper.yaml")
    assert not any(step.kind == "pitch" for step in family.plan(plain))


def write_stream(directory: Path, matrices: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{directory}/feats.ark,{directory}/feats.scp") as writer:
        for utt, matrix in sorted(matrices.items()):
            writer(utt, np.asarray(matrix, dtype=np.float32))


def test_loaders_read_and_crop_the_pitch_stream_with_the_target(tmp_path):
    """Units at 50 Hz, mel and pitch at 100 Hz: the pitch crop is the mel crop, frame for frame."""
    dump, data = tmp_path / "dump", tmp_path / "data"
    lengths = {"a-1": 101, "a-2": 150, "b-1": 90, "b-2": 133}
    for subset in ("train", "dev"):
        (data / subset).mkdir(parents=True)
        (data / subset / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in sorted(lengths)))
        frames = {u: np.arange(n, dtype=np.float32)[:, None] + 1000 * i for i, (u, n) in enumerate(lengths.items())}
        write_stream(dump / "norm" / "logmel80" / subset, {u: np.repeat(m, 4, 1) for u, m in frames.items()})
        write_stream(dump / "units" / subset, {u: np.ones((math.ceil(len(m) / 2), 6)) for u, m in frames.items()})
        write_stream(dump / "pitch" / subset, {u: np.concatenate([m, m > 0, m], 1) for u, m in frames.items()})
    config = {"streams": {"units": "{dump}/units/{set}/feats.scp", "pitch": "{dump}/pitch/{set}/feats.scp"},
              "data": {"input_feats": "units", "target_feats": "logmel80", "cond_feats": ["pitch"],
                       "crop_frames": 32, "batch_size": 2, "num_workers": 0},
              "model": {"in_dim": 6, "out_dim": 4}, "train": {"seed": 3}}
    loaders = build_loaders(config, StreamLayout(dump, tmp_path / "exp"), str(data))
    for loader in (loaders.train, loaders.valid):
        for batch in loader:
            target, pitch = batch["target"], batch["cond_pitch"]
            assert pitch.shape[:2] == target.shape[:2] and pitch.shape[2] == 3
            torch.testing.assert_close(batch["cond_pitch_mask"], batch["target_mask"])
            mask = batch["target_mask"]
            torch.testing.assert_close(pitch[..., 0][mask], target[..., 0][mask])
    assert next(iter(loaders.train))["target"].shape[1] == 32
    with pytest.raises(ValueError, match="cond_feats"):
        build_loaders({**config, "data": {**config["data"], "cond_feats": "pitch"}},
                      StreamLayout(dump, tmp_path / "exp"), str(data))


def tiny_f0_config() -> dict:
    overlay = ["model.in_dim=16", "model.embedding_dim=8", "model.speaker_dim=8", "model.prenet_dim=16",
               "model.channels=16", "model.decoder_prenet_dim=16", "model.lstm_dim=16", "model.out_dim=12",
               "model.pitch_bins=8"]
    return apply_overrides(load_config(F0_CONFIG), overlay)


def bound_softvc(config: dict, num_speakers: int = 3):
    family = get_family("softvc")()
    models = family.build(config, num_speakers)
    optimizers = family.optimizers(models, config)
    family.bind(models, optimizers, OptimizerStep(optimizers, grad_clip=5.0))
    return family


def pitch_of(relative: torch.Tensor) -> torch.Tensor:
    """A pitch stream whose frames are voiced where ``relative`` is finite (NaN: unvoiced)."""
    voiced = ~torch.isnan(relative)
    rel = torch.nan_to_num(relative)
    return torch.stack([torch.where(voiced, rel + 5.0, 0.0), voiced.float(), rel], dim=-1)


def test_softvc_with_pitch_trains_and_its_output_follows_the_contour():
    torch.manual_seed(0)
    config = tiny_f0_config()
    family = bound_softvc(config)
    model = family.models["model"]
    assert model.pitch_bins == 8
    rel = torch.linspace(-0.5, 0.5, 24).repeat(2, 1)
    rel[:, :3] = float("nan")
    batch = {"input": torch.randn(2, 12, 16), "target": torch.randn(2, 24, 12), "cond_pitch": pitch_of(rel),
             "mask": torch.ones(2, 12, dtype=torch.bool), "speakers": torch.tensor([0, 2])}
    losses = [family.train_step(batch, step)["loss"] for step in range(8)]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    assert model.pitch_embedding.weight.grad is not None and model.pitch_embedding.weight.grad.abs().sum() > 0
    assert set(family.valid_step(batch)) == {"loss", "l1_free_running"}

    model.eval()
    units = torch.randn(12, 16)
    rising = pitch_of(torch.linspace(-0.4, 0.4, 23))[..., :]  # an odd mel length: the output follows the pitch
    falling = pitch_of(torch.linspace(0.4, -0.4, 23))
    up = family.convert(units, 1, conditions={"pitch": rising})
    down = family.convert(units, 1, conditions={"pitch": falling.numpy()})
    assert up.shape == down.shape == (23, 12)
    assert not torch.allclose(up, down)
    with pytest.raises(ValueError, match="conditioned on pitch"):
        family.convert(units, 1)

    # Bins: unvoiced 0, the range's ends 1 and pitch_bins, clamped beyond.
    bins = model.pitch_bin(torch.tensor([0.0, -0.6, 0.6, -3.0, 3.0, 0.2]),
                           torch.tensor([False, True, True, True, True, True]))
    assert bins.tolist()[:5] == [0, 1, 8, 1, 8] and 1 < bins[5] < 8


def test_pitch_needs_both_keys():
    config = tiny_f0_config()
    with pytest.raises(ValueError, match="pitch_bins"):
        get_family("softvc")().build(apply_overrides(config, ["model.pitch_bins=0"]), 3)
    with pytest.raises(ValueError, match="cond_feats"):
        get_family("softvc")().build(apply_overrides(config, ["data.cond_feats=[]"]), 3)


def test_conversion_conditions_move_the_source_contour_to_the_target(tmp_path):
    config = tiny_f0_config()
    dump = tmp_path / "dump"
    layout = StreamLayout(dump, tmp_path / "exp" / "t")
    source_stats = F0Stats(math.log(100.0), 0.1, 100)
    targets = {"hi": F0Stats(math.log(220.0), 0.05, 100), "lo": F0Stats(math.log(90.0), 0.2, 100)}
    rng = np.random.default_rng(1)
    voiced = rng.random(60) > 0.2
    log_f0 = np.where(voiced, source_stats.mean + 0.1 * rng.standard_normal(60), 0.0)
    train_dir, eval_dir = stream_dir(config, "pitch", "train", layout), stream_dir(config, "pitch", "eval", layout)
    write_stream(train_dir, {"x": np.zeros((3, 3))})
    write_f0_stats(train_dir / "spk_f0_stats", {"src": source_stats, **targets})
    write_stream(eval_dir, {"u1": pitch_stream(log_f0, voiced, source_stats.mean),
                            "u2": pitch_stream(log_f0, voiced, 0.0)})
    write_f0_stats(eval_dir / "spk_f0_stats", {"new": F0Stats(math.log(150.0), 0.1, 50)})
    model = SimpleNamespace(config=config, family=get_family("softvc")(), path=layout.exp_dir)
    feats = load_feature_config(REPO_ROOT / "conf" / "feats" / "logmel80.yaml")
    conditions = ConversionConditions.of(model, dump, feats)
    for target, stats in targets.items():
        moved = conditions.utterance("eval", "u1", "src", target)["pitch"]
        np.testing.assert_allclose(moved, converted_stream(pitch_stream(log_f0, voiced, 0.0), source_stats, stats),
                                   atol=1e-5)
    # A source speaker not trained on: its statistics come from its own set.
    moved = conditions.utterance("eval", "u2", "new", "hi")["pitch"]
    expected = (log_f0[voiced] - math.log(150.0)) * 0.05 / 0.1
    np.testing.assert_allclose(moved[voiced, LOG_F0_REL], expected, atol=1e-5)
    with pytest.raises(ConversionError, match="no log-F0 statistics"):
        conditions.utterance("eval", "u1", "src", "nobody")
    with pytest.raises(ConversionError, match="no pitch stream"):
        conditions.utterance("eval", "u9", "src", "hi")
    # Your own audio: its own voiced frames are the source statistics, so a 130 Hz tone lands on the
    # target's mean (and stays about flat: its last frames, at the edge of the analysis, may stray).
    own = conditions.audio(tone(8000, 130.0), "lo")["pitch"]
    assert own.shape == (8000 // HOP, 3)
    on = own[:, VOICED] > 0.5
    assert on.mean() > 0.9 and own[on, LOG_F0].mean() == pytest.approx(targets["lo"].mean, abs=1e-4)
    assert np.median(np.abs(own[on, LOG_F0_REL])) < 0.02
    # Models without data.cond_feats get no conditions at all.
    plain = SimpleNamespace(config=load_config(REPO_ROOT / "conf" / "softvc_whisper.yaml"), family=model.family,
                            path=layout.exp_dir)
    assert ConversionConditions.of(plain, dump, feats) is None


def test_stage_9_reports_the_f0_correlation_with_the_source():
    """``f0_corr_src``: converted (and reconstructed) F0 against the source's, frame by frame, even without
    a parallel reference; an output that follows the source's melody in another range scores 1."""
    from voiceswap.eval.plan import Item, build_plan
    from voiceswap.eval.summary import pair_scores, row_metrics

    utt2spk = {"a-s1": "a", "a-s2": "a", "b-s2": "b"}
    items = [Item("a-s1_to_b", "a-s1", "a", "b", None, "conversion"),
             Item("a-s1_to_a", "a-s1", "a", "a", None, "reconstruction")]
    plan = build_plan(items, utt2spk, measures={"f0"})
    assert {"f0"} <= plan.units["out:a-s1_to_b"] and {"f0"} <= plan.units["real:a-s1"]
    melody = 110.0 * np.exp(0.1 * np.sin(np.linspace(0, 6, 80)))
    melody[:5] = 0.0  # unvoiced frames are left out
    records = {"real:a-s1": {"f0": melody},
               "out:a-s1_to_b": {"f0": np.where(melody > 0, 2.0 * melody, 0.0)[:78]},  # a frame or two shorter
               "out:a-s1_to_a": {"f0": np.where(melody > 0, 220.0 - melody, 0.0)},
               "real:a-s2": {"emb": np.ones(4)}, "real:b-s2": {"emb": -np.ones(4)}}  # the speaker centroids
    scores = pair_scores(plan, records, utt2spk, {}, speakers=[])
    rows = row_metrics(plan, scores, records, None)
    assert rows["converted"]["f0_corr_src"] == pytest.approx(1.0)
    assert rows["reconstruction"]["f0_corr_src"] == pytest.approx(-1.0)
    assert rows["source"].get("f0_corr_src") is None
