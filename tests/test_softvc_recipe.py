"""Soft-VC + HiFi-GAN through the recipe: content features, k-means units, HuBERT loading, stages 4-10."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, TINY_CLASSIFIER, run_recipe_in
from voiceswap.data.ark import ArkWriter
from voiceswap.data.dataset import FeatsDataset, collate_padded, make_spk2id

TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
        "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]
PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")

# Tiny sizes and a few steps: the point is the wiring, not the quality.
TINY_SOFTVC = ("content.model.hidden_dim=16 content.model.unit_dim=16 content.model.num_units=8 "
               "content.kmeans.max_frames=0 content.data.batch_size=4 content.data.num_workers=0 "
               "content.train.max_steps=4 content.train.valid_interval=4 content.train.save_interval=4 "
               "content.train.log_interval=2 "
               "model.num_units=8 model.in_dim=16 model.embedding_dim=8 model.speaker_dim=8 model.prenet_dim=16 "
               "model.channels=16 model.decoder_prenet_dim=16 model.lstm_dim=16 data.batch_size=4 data.crop_frames=64 "
               "data.num_workers=0 train.max_steps=4 train.valid_interval=4 train.save_interval=4 train.log_interval=2")
TINY_HIFIGAN = ("model.generator.upsample_initial_channel=16 model.generator.resblock_kernel_sizes=[3] "
                "model.generator.resblock_dilation_sizes=[[1]] model.discriminator.width=0.0625 "
                "model.discriminator.periods=[2,3] model.discriminator.num_scales=1 data.batch_size=2 "
                "data.num_workers=0 data.valid_max_utts=2 train.max_steps=2 train.valid_interval=2 "
                "train.save_interval=2 train.log_interval=1 loss.adversarial_start_step=1")


def run_recipe(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return run_recipe_in(tmp, TINY, *args)


@pytest.fixture(scope="module")
def softvc_recipe(tmp_path_factory):
    """Stages 0-3 of a tiny corpus, then stages 4-10 of softvc + hifigan with tiny overrides."""
    tmp = tmp_path_factory.mktemp("softvc_recipe")
    result = run_recipe(tmp, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_recipe(tmp, "--model", "softvc", "--vocoder", "hifigan", "--stage", "4", "--stop-stage", "10",
                        "--train-overrides", TINY_SOFTVC, "--vocoder-overrides", TINY_HIFIGAN,
                        "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 1")
    assert result.returncode == 0, result.stderr[-3000:]
    experiments = [p for p in (tmp / "exp").iterdir() if p.name.startswith("softvc")]
    assert len(experiments) == 1
    return tmp, experiments[0]


def mel_frames(root: Path, subset: str) -> dict:
    path = root / "dump" / "raw" / "logmel80" / subset / "utt2num_frames"
    return {utt: int(n) for utt, n in (line.split() for line in path.read_text().splitlines())}


def test_units_of_every_set_at_half_the_mel_rate(softvc_recipe):
    root, exp = softvc_recipe
    for subset in ("train", "dev", "eval"):
        units = root / "dump" / "units" / exp.name / subset
        discrete = kaldiio.load_scp(str(exp / "content" / "kmeans" / subset / "units.scp"))  # stage 4's k-means ids
        vectors = kaldiio.load_scp(str(units / "vectors.scp"))  # stage 5's soft units
        frames = mel_frames(root, subset)
        assert set(discrete) == set(vectors) == set(frames)
        for utt, ids in discrete.items():
            assert ids.dtype == np.int32 and ids.shape == ((frames[utt] + 1) // 2,)
            assert 0 <= ids.min() and ids.max() < 8
            assert vectors[utt].shape == (ids.shape[0], 16)
        assert (units / "frame_shift").read_text().strip() == "0.02"
        assert (units / "num_units").read_text().strip() == "8"  # the head's inventory, for stage 9


def test_models_and_the_shared_vocoder(softvc_recipe):
    root, exp = softvc_recipe
    assert (exp / "content" / "checkpoints" / "best.pt").exists()  # the soft-unit head (stage 4)
    assert "family: softvc_units" in (exp / "content" / "config.yaml").read_text()
    assert (exp / "checkpoints" / "best.pt").exists()  # the acoustic model (stage 6)
    assert "family: softvc\n" in (exp / "config.yaml").read_text()
    vocoder = root / "exp" / "vocoder_hifigan_synth"
    assert (vocoder / "checkpoints" / "best.pt").exists() and "family: hifigan" in (vocoder / "config.yaml").read_text()


def test_converted_wavs_have_the_source_length(softvc_recipe):
    import soundfile as sf

    root, exp = softvc_recipe
    rows = [line.split() for line in (exp / "convert_hifigan" / "conversions").read_text().splitlines()]
    assert sum(row[5] == "conversion" for row in rows) == 6 and sum(row[5] == "reconstruction" for row in rows) == 3
    frames = mel_frames(root, "eval")
    mels = kaldiio.load_scp(str(exp / "convert_hifigan" / "mel.scp"))
    for output_id, source, *_ in rows:
        audio, rate = sf.read(exp / "convert_hifigan" / "wav" / f"{output_id}.wav")
        assert rate == 16000 and len(audio) == frames[source] * 160
        assert mels[output_id].shape == (frames[source], 80)
        assert np.isfinite(audio).all()


def test_scores_and_plots_with_the_trained_vocoder(softvc_recipe):
    root, exp = softvc_recipe
    metrics = json.loads((exp / "scores_hifigan" / "metrics.json").read_text())
    assert metrics["family"] == "softvc" and metrics["vocoder"] == "hifigan"
    assert set(metrics["rows"]) == {"converted", "source", "oracle", "reconstruction"}
    # The oracle is the reference's real log-mel through the trained HiFi-GAN (copy synthesis).
    assert len(list((exp / "scores_hifigan" / "oracle_wav").glob("*.wav"))) > 0
    assert metrics["rows"]["oracle"]["mcd"] > 0
    assert (exp / "plots_hifigan" / "loss_curves.png").exists()
    table = (root / "RESULTS.md").read_text()
    assert any(line.startswith(f"| {exp.name} | hifigan |") for line in table.splitlines())


def test_hifigan_upsampling_mismatch_is_a_clear_error(softvc_recipe, tmp_path):
    root, _ = softvc_recipe
    overrides = (TINY_HIFIGAN + " model.generator.upsample_rates=[8,8,2,2]"
                 " model.generator.upsample_kernel_sizes=[16,16,4,4]")
    result = run_recipe(root, "--vocoder", "hifigan", "--stage", "7", "--stop-stage", "7",
                        "--vocoder-dir", str(tmp_path / "voc"), "--vocoder-overrides", overrides)
    assert result.returncode != 0
    log = (tmp_path / "voc" / "log" / "train.log").read_text()
    assert ("upsample_rates (8, 8, 2, 2) multiply to 256 but the features' hop_length is 160: "
            "choose factors whose product is 160") in log


def test_kmeans_is_reproducible_with_its_seed():
    from voiceswap.features.kmeans import assign, fit_kmeans

    rng = np.random.default_rng(0)
    frames = np.concatenate([rng.normal(c, 0.3, (200, 6)) for c in range(5)]).astype(np.float32)
    first, _ = fit_kmeans(frames, 5, seed=3)
    again, _ = fit_kmeans(frames, 5, seed=3)
    np.testing.assert_array_equal(first, again)
    other, _ = fit_kmeans(frames, 5, seed=4)
    assert not np.array_equal(first, other)  # another seed, another initialisation order
    ids = assign(frames, first)
    assert ids.dtype == np.int32 and len(np.unique(ids)) == 5
    # Each true cluster is one unit.
    assert all(len(np.unique(ids[i * 200:(i + 1) * 200])) == 1 for i in range(5))
    with pytest.raises(ValueError, match="cannot make"):
        fit_kmeans(frames[:3], 5)


TINY_HUBERT = dict(
    extractor_mode="group_norm",
    extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2)],
    extractor_conv_bias=False, encoder_embed_dim=16, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=2, encoder_attention_dropout=0.0,
    encoder_ff_interm_features=32, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
    encoder_layer_norm_first=False, encoder_layer_drop=0.0, aux_num_out=None)


@pytest.fixture
def tiny_hubert_checkpoint(tmp_path):
    import torchaudio

    torch.manual_seed(0)
    model = torchaudio.models.wav2vec2_model(**TINY_HUBERT)
    path = tmp_path / "hubert_tiny.pt"
    torch.save({"state_dict": model.state_dict(), "config": TINY_HUBERT}, path)
    return path, model.eval()


def test_hubert_from_a_local_checkpoint_gives_layer_features_at_50_hz(tiny_hubert_checkpoint, tmp_path):
    from voiceswap.features.content import ContentFeatureError, HubertContent, load_hubert

    path, reference = tiny_hubert_checkpoint
    extractor = HubertContent(load_hubert(path, allow_download=False), layer=2)
    for samples in (16000, 16000 + 319, 8160):
        features = extractor(np.random.default_rng(0).uniform(-0.5, 0.5, samples).astype(np.float32))
        assert features.shape == (samples // 320, 16)  # 20 ms frames: half of our samples // 160 mel frames
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        expected = reference.extract_features(torch.nn.functional.pad(wav, (40, 40)), num_layers=2)[0][1][0]
    np.testing.assert_allclose(extractor(wav[0].numpy()), expected.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ContentFeatureError, match="layers 1..3"):
        HubertContent(load_hubert(path, allow_download=False), layer=7)
    bare = tmp_path / "bare.pt"
    torch.save(reference.state_dict(), bare)  # no config: taken for hubert_base, which it is not
    with pytest.raises(ContentFeatureError, match="do not fit torchaudio hubert_base"):
        load_hubert(bare, allow_download=False)
    with pytest.raises(ContentFeatureError, match="content.features.checkpoint"):
        load_hubert(None, allow_download=False)


def test_extract_content_with_hubert_on_the_recipe_data(softvc_recipe, tiny_hubert_checkpoint, tmp_path):
    root, _ = softvc_recipe
    path, _ = tiny_hubert_checkpoint
    command = [PYTHON, "voiceswap/bin/extract_content.py", "--config", "conf/softvc_hubert.yaml",
               "--set", "content.features.layer=3", "--set", f"content.features.checkpoint={path}",
               "--allow-download", "false",
               "--data-dir", str(root / "data"), "--dump-dir", str(root / "dump"), "eval", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    features = kaldiio.load_scp(str(tmp_path / "out" / "feats.scp"))
    frames = mel_frames(root, "eval")
    assert set(features) == set(frames)
    for utt, matrix in features.items():
        assert matrix.shape == (frames[utt] // 2, 16)  # N // 320 frames = floor(mel frames / 2)
    assert (tmp_path / "out" / "frame_shift").read_text().strip() == "0.02"


def test_dataset_crops_streams_of_two_rates_at_the_same_instant(tmp_path):
    utt2spk = {"a-1": "a", "b-1": "b"}
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    scps = {}
    for name, ratio in (("input", 1), ("target", 2)):
        with ArkWriter(tmp_path / f"{name}.ark", tmp_path / f"{name}.scp") as writer:
            for utt, frames in (("a-1", 50), ("b-1", 31)):
                count = frames * ratio - (1 if ratio == 2 and utt == "b-1" else 0)  # an odd mel length
                # The time of every frame in units of the slow stream.
                writer[utt] = (np.arange(count, dtype=np.float32) / ratio)[:, None].repeat(3, 1)
        scps[name] = tmp_path / f"{name}.scp"
    dataset = FeatsDataset(scps, tmp_path / "utt2spk", make_spk2id(utt2spk), crop_frames=20, seed=0)
    assert dataset.frame_ratios == {"input": 1, "target": 2}
    for epoch in range(3):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert item["input"].shape == (10, 3) and item["target"].shape == (20, 3)
        assert float(item["input"][0, 0]) == float(item["target"][0, 0])  # the same instant
    whole = FeatsDataset(scps, tmp_path / "utt2spk", make_spk2id(utt2spk))
    batch = collate_padded([whole[0], whole[1]])
    assert batch["mask"].sum(1).tolist() == [50, 31]
    assert batch["target_mask"].sum(1).tolist() == [100, 61] and batch["target"].shape[1] == 100
