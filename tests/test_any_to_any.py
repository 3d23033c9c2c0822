"""Any-to-any conversion (model.speaker_conditioning: reference): nets, references, stage 8/9 and convert_audio.

The recipe test trains a tiny reference-conditioned VQ-VAE on a 3-voice synth corpus with one voice
held out of training entirely, converts to that voice in stage 8 (a speaker the model has no id
for), scores seen and unseen targets apart in stage 9, and converts a recording to the voice of
reference recordings with convert_audio.py --target-ref.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CLASSIFIER, run_recipe_in

from voiceswap.data.ark import ArkWriter
from voiceswap.data.dataset import FeatsDataset, collate_padded, make_spk2id
from voiceswap.data.pairs import speaker_references
from voiceswap.eval.plan import Item, build_plan
from voiceswap.eval.summary import pair_scores, rows_by_target
from voiceswap.nets.softvc import AcousticModel
from voiceswap.nets.speaker import ReferenceEncoder, ReferenceSpeakers
from voiceswap.nets.vqvae import VQVAE
from voiceswap.train.speakers import batch_speakers, model_speaker_vector, target_batch


def test_reference_encoder_ignores_padding():
    torch.manual_seed(0)
    encoder = ReferenceEncoder(in_dim=6, out_dim=4, channels=8)
    features = torch.randn(1, 20, 6)
    padded = torch.cat([features, 100 * torch.randn(1, 7, 6)], dim=1)
    mask = torch.arange(27)[None, :] < 20
    torch.testing.assert_close(encoder(padded, mask), encoder(features), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="reference_dim"):
        encoder(torch.randn(1, 20, 5))


def test_reference_models_take_references_or_vectors_and_refuse_ids():
    torch.manual_seed(0)
    vqvae = VQVAE(in_dim=5, out_dim=6, hidden_dim=16, residual_dim=8, code_dim=4, codebook_size=4, speaker_dim=3,
                  speaker_conditioning="reference", reference_dim=6, reference_channels=8).eval()
    assert vqvae.speaker_embedding is None and vqvae.reference_encoder is not None
    features = torch.randn(2, 5, 12)
    references = ReferenceSpeakers(torch.randn(2, 9, 6))
    vectors = vqvae.reference_encoder(references.features)
    # A reference batch and the vectors its encoder makes condition the decoder the same way.
    torch.testing.assert_close(vqvae.convert(features, references), vqvae.convert(features, vectors))
    with pytest.raises(ValueError, match="without a speaker table"):
        vqvae.convert(features, torch.tensor([0, 1]))
    table = VQVAE(in_dim=5, out_dim=6, hidden_dim=16, residual_dim=8, code_dim=4, codebook_size=4, speaker_dim=3,
                  num_speakers=2)
    with pytest.raises(ValueError, match="speaker table"):
        table.convert(features, references)

    acoustic = AcousticModel(in_dim=4, out_dim=6, speaker_dim=3, prenet_dim=8, channels=8, decoder_prenet_dim=8,
                             lstm_dim=8, speaker_conditioning="reference", reference_dim=6, reference_channels=8).eval()
    units = torch.randn(2, 5, 4)
    out = acoustic.generate(units, references)
    assert out.shape == (2, 10, 6)
    torch.testing.assert_close(out, acoustic.generate(units, acoustic.reference_encoder(references.features)))
    with pytest.raises(ValueError, match="speaker_conditioning"):
        AcousticModel(in_dim=4, speaker_conditioning="lookup")


def test_speaker_vector_of_references_is_their_mean_and_targets_batch():
    torch.manual_seed(0)
    model = VQVAE(in_dim=5, out_dim=6, hidden_dim=16, residual_dim=8, speaker_dim=3,
                  speaker_conditioning="reference", reference_dim=6, reference_channels=8)
    references = [torch.randn(11, 6), torch.randn(17, 6)]
    expected = torch.stack([model.reference_encoder(r.unsqueeze(0))[0] for r in references]).mean(0)
    torch.testing.assert_close(model_speaker_vector(model, references), expected)
    assert target_batch(3, torch.device("cpu")).tolist() == [3]
    assert target_batch(expected, torch.device("cpu")).shape == (1, 3)
    with pytest.raises(Exception, match="speaker_conditioning=reference"):
        model_speaker_vector(VQVAE(in_dim=5, out_dim=6, hidden_dim=16, residual_dim=8), references)


def write_set(tmp_path: Path, lengths: dict) -> tuple:
    """input/target streams and a reference stream whose column 0 is the utterance's index."""
    utts = sorted(lengths)
    utt2spk = {utt: utt.split("-")[0] for utt in utts}
    scps = {}
    for name, dim in (("input", 3), ("target", 3), ("reference", 4)):
        with ArkWriter(tmp_path / f"{name}.ark", tmp_path / f"{name}.scp") as writer:
            for index, utt in enumerate(utts):
                matrix = np.zeros((lengths[utt], dim), dtype=np.float32)
                matrix[:, 0] = index
                writer[utt] = matrix
        scps[name] = tmp_path / f"{name}.scp"
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    return scps, utt2spk, utts


def test_each_item_gets_a_crop_of_another_utterance_of_its_speaker(tmp_path, caplog):
    lengths = {"a-1": 50, "a-2": 300, "a-3": 60, "b-1": 40, "b-2": 45, "c-1": 30}
    scps, utt2spk, utts = write_set(tmp_path, lengths)
    reference = scps.pop("reference")
    dataset = FeatsDataset(scps, tmp_path / "utt2spk", make_spk2id(utt2spk), crop_frames=16,
                           reference_scp=reference, reference_frames=100)
    assert "speaker(s) c have one utterance" in caplog.text
    chosen = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index, utt in enumerate(dataset.utts):
            item = dataset[index]
            source = utts[int(item["reference"][0, 0])]
            assert utt2spk[source] == utt2spk[utt]
            # c has one utterance: its own is the only reference there is.
            assert source != utt or utt == "c-1"
            assert item["reference"].shape == (min(100, lengths[source]), 4)
            chosen.add((utt, source))
    assert ("a-1", "a-2") in chosen and ("a-1", "a-3") in chosen  # drawn anew across epochs
    batch = collate_padded([dataset[0], dataset[3]])
    speakers = batch_speakers(batch)
    assert isinstance(speakers, ReferenceSpeakers) and speakers.mask.shape == speakers.features.shape[:2]
    assert batch_speakers({"speakers": torch.tensor([1]), "mask": None}).tolist() == [1]


def test_references_are_the_utterances_no_pair_uses():
    utt2spk = {f"{spk}-{n}": spk for spk in ("a", "b", "c") for n in range(4)}
    del utt2spk["c-2"], utt2spk["c-3"]
    items = [("a-0", "b", "b-0"), ("b-0", "a", "a-0"), ("c-0", "a", None), ("c-1", "b", "b-1")]
    references, fallback = speaker_references(items, utt2spk)
    assert references == {"a": ["a-1", "a-2", "a-3"], "b": ["b-2", "b-3"], "c": ["c-0", "c-1"]}
    assert fallback == ["c"]
    # Stage 9's centroids are the same utterances.
    plan = build_plan([Item(f"{s}_to_{t}", s, utt2spk[s], t, r, "conversion") for s, t, r in items], utt2spk,
                      measures={"emb"})
    assert set(plan.centroid_utts) == {u for utts in references.values() for u in utts}


def test_seen_and_unseen_targets_are_scored_apart():
    utt2spk = {f"{spk}-{n}": spk for spk in ("a", "b", "z") for n in range(3)}
    items = [Item(f"{s}_to_{t}", s, utt2spk[s], t, None, "conversion")
             for s, t in (("a-0", "b"), ("b-0", "a"), ("a-0", "z"), ("b-0", "z"))]
    plan = build_plan(items, utt2spk, measures={"emb"})
    rng = np.random.default_rng(0)
    centre = {spk: rng.standard_normal(8) for spk in ("a", "b", "z")}
    records = {unit: {"emb": centre[utt2spk.get(unit.split(":")[1], "z")] + 0.1 * rng.standard_normal(8)}
               for unit in plan.units}
    for item in items:  # seen targets are reached, the unseen one is not
        records[f"out:{item.id}"] = {"emb": centre[item.target_spk if item.target_spk != "z" else "a"]}
    scores = pair_scores(plan, records, utt2spk, {}, [])
    groups = rows_by_target(plan, scores, records, None, ["a", "b"])
    assert set(groups) == {"seen", "unseen"}
    assert groups["seen"]["converted"]["num_pairs"] == 2 and groups["unseen"]["converted"]["num_pairs"] == 2
    assert groups["seen"]["converted"]["spk_sim_target"] > 0.9 > groups["unseen"]["converted"]["spk_sim_target"]
    assert groups["unseen"]["converted"]["spk_acc"] is None and groups["unseen"]["source"]["class_score"] is None
    assert rows_by_target(plan, [s for s in scores if s["target_spk"] != "z"], records, None, ["a", "b"]) == {}


TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "8", "--num-dev-sentences", "1",
        "--num-eval-sentences", "3", "--num-pair-sentences", "1", "--nj", "2",
        "--data-prep-opts", "--heldout-speakers esf2 --heldout-pairs zero-shot"]
TINY_VQVAE = ("model.hidden_dim=32 model.residual_dim=16 model.code_dim=16 model.codebook_size=8 "
              "model.reference_channels=16 data.batch_size=4 train.max_steps=12 train.valid_interval=6 "
              "train.save_interval=6")
ANY_TO_ANY = "model.speaker_conditioning=reference data.reference_feats=logmel80 data.reference_frames=64"


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("any2any")
    result = run_recipe_in(tmp, TINY, "--model", "vqvae", "--stop-stage", "9", "--tag", "a2a",
                           "--train-overrides", f"{TINY_VQVAE} {ANY_TO_ANY}",
                           "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--measures emb,clf")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp


def test_stage_8_converts_to_a_speaker_held_out_of_training(zero_shot):
    exp = zero_shot / "exp" / "a2a"
    assert "esf2" not in (exp / "spk2id").read_text().split()
    conversions = [line.split() for line in (exp / "convert_griffinlim" / "conversions").read_text().splitlines()]
    to_unseen = [fields for fields in conversions if fields[3] == "esf2"]
    assert len(to_unseen) == 2 and all((exp / "convert_griffinlim" / "wav" / f"{f[0]}.wav").is_file()
                                       for f in to_unseen)
    log = (exp / "convert_griffinlim" / "log" / "convert.1.log").read_text() + \
        (exp / "convert_griffinlim" / "log" / "convert.2.log").read_text()
    assert "target esf2: the voice of 2 reference utterance(s) of eval" in log


def test_stage_9_scores_seen_and_unseen_targets(zero_shot):
    scores = zero_shot / "exp" / "a2a" / "scores_griffinlim"
    metrics = json.loads((scores / "metrics.json").read_text())
    groups = metrics["rows_by_target"]
    assert groups["unseen"]["converted"]["num_pairs"] == 2
    assert groups["seen"]["converted"]["num_pairs"] == metrics["num_conversions"] - 2
    assert groups["unseen"]["converted"]["spk_acc"] is None
    assert "## Seen and unseen targets" in (scores / "RESULTS.md").read_text()


def test_convert_audio_to_the_voice_of_reference_recordings(zero_shot, tmp_path):
    from test_family_contract import run_in_process
    import soundfile as sf

    wav_scp = dict(line.split(maxsplit=1) for line in
                   (zero_shot / "data" / "eval" / "wav.scp").read_text().splitlines())
    references = [wav_scp[utt].strip() for utt in sorted(wav_scp) if utt.startswith("esf2")][:2]
    source = next(wav_scp[utt].strip() for utt in sorted(wav_scp) if utt.startswith("slt"))
    exp = zero_shot / "exp" / "a2a"
    common = ["--exp-dir", str(exp), "--dump-dir", str(zero_shot / "dump"), "--out-dir", str(tmp_path / "out")]
    assert run_in_process(["convert_audio.py", *common, "--target-ref", references[0], "--target-ref", references[1],
                           "--target-spk", "her", source]) == 0
    converted, rate = sf.read(tmp_path / "out" / f"{Path(source).stem}_to_her.wav")
    assert rate == 16000 and np.isfinite(converted).all() and np.abs(converted).max() > 0
    # Without references an any-to-any model has nothing to take the voice from.
    assert run_in_process(["convert_audio.py", *common, "--target-spk", "slt", source]) == 1


def test_a_model_with_a_speaker_table_refuses_reference_recordings(zero_shot, tmp_path, caplog):
    from test_family_contract import run_in_process

    result = run_recipe_in(zero_shot, TINY, "--model", "vqvae", "--stage", "4", "--stop-stage", "6", "--tag", "table",
                           "--train-overrides", TINY_VQVAE)
    assert result.returncode == 0, result.stderr[-3000:]
    wav_scp = dict(line.split(maxsplit=1) for line in
                   (zero_shot / "data" / "eval" / "wav.scp").read_text().splitlines())
    source = next(wav_scp[utt].strip() for utt in sorted(wav_scp) if utt.startswith("slt"))
    assert run_in_process(["convert_audio.py", "--exp-dir", str(zero_shot / "exp" / "table"), "--dump-dir",
                           str(zero_shot / "dump"), "--out-dir", str(tmp_path), "--target-ref", source, source]) == 1
    assert "model.speaker_conditioning=reference" in caplog.text
