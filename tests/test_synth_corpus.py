"""Stages 0-1 of the offline synth corpus: sentence selection, synthesis with alignments, data prep.

One tiny corpus (5 voices covering flite, festival, espeak-ng and the speed-warped voice, x 6
sentences) is synthesised once for the module with the real engines and the real run.pl; the
tests then check it, rerun the scripts on copies of it, and unit-test the phone-label helpers,
the voice presets and the held-out speakers of data prep.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "local" / "synth"))
import engines  # noqa: E402  (local/synth/engines.py: module under test)
import espeak  # noqa: E402
import select_sentences  # noqa: E402
import voices  # noqa: E402

SPEAKERS = ["slt", "kal", "ked", "esf2", "sltw"]  # flite x2, festival, espeak-ng, speed-warped flite
FLITE_SPEAKERS = ["slt", "kal", "sltw"]
NUM_SENTENCES = 6
SHARED_PHONES = set(
    "aa ae ah ao aw ax axr ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy "
    "p r s sh t th uh uw v w y z zh pau".split()
)
Label = Tuple[float, float, str]


def script_env() -> Dict[str, str]:
    """The scripts run `python3`: make it this interpreter (it has numpy and soundfile)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), str(REPO_ROOT / "utils"), env["PATH"]])
    env["LC_ALL"] = "C"
    return env


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(command), cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True, timeout=300, check=False
    )
    if check:
        assert result.returncode == 0, f"{command} failed:\n{result.stderr[-3000:]}"
    return result


def get_corpus(db: Path, *options: str, speakers: List[str] = SPEAKERS, check: bool = True):
    return run("local/synth/get_corpus.sh", "--nj", "2", "--num-sentences", str(NUM_SENTENCES),
               "--speakers", " ".join(speakers), *options, str(db), check=check)


def read_lab(path: Path) -> List[Label]:
    labels = []
    for line in path.read_text().splitlines():
        start, end, phone = line.split()
        assert len(start.split(".")[1]) == 3 and len(end.split(".")[1]) == 3, f"{path}: {line}"
        labels.append((float(start), float(end), phone))
    return labels


def sentence_ids(db: Path) -> List[str]:
    return [line.split()[0] for line in (db / "sentences.txt").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    missing = [tool for tool in ("flite", "festival", "sox") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: run utils/setup.sh (it installs the Debian engines)"
    db = tmp_path_factory.mktemp("synth") / "db"
    get_corpus(db)
    return db


# ---------------------------------------------------------------------------------------------
# Stage 0: sentences


def test_sentence_selection_is_seeded(tmp_path):
    def select(seed: int, name: str) -> List[str]:
        out = tmp_path / name
        run("python3", "local/synth/select_sentences.py", "--num-sentences", "20", "--seed", str(seed),
            "--output", str(out), "--verbose", "0")
        return out.read_text().splitlines()

    first, again, other = select(777, "a"), select(777, "b"), select(778, "c")
    assert first == again
    assert first != other
    ids = [line.split()[0] for line in first]
    assert ids == sorted(ids) == [f"s{i:04d}" for i in range(1, 21)]
    texts = [line.split(" ", 1)[1] for line in first]
    assert len({text.lower() for text in texts}) == len(texts)
    for text in texts:
        assert text.isascii() and 6 <= len(text.split()) <= 20, text
        assert not set(text) & set('"()[];:0123456789`&/'), text


def test_sentence_filter():
    assert select_sentences.is_clean_sentence("He spent the day drawing in the garden")
    assert select_sentences.is_clean_sentence("I don't think it's the boys' fault, really.")
    assert not select_sentences.is_clean_sentence("the rear part of the house")  # a phrase
    assert not select_sentences.is_clean_sentence("He paid 200 dollars for the old bicycle")
    assert not select_sentences.is_clean_sentence("The U.S. army landed on the beach today")
    assert not select_sentences.is_clean_sentence("NASA launched a new rocket into space today")
    assert not select_sentences.is_clean_sentence("Too short a sentence")
    assert not select_sentences.is_clean_sentence("Caf\u00e9 au lait is a drink of coffee and milk")
    line = '00022316 29 v 05 sedate 0 | cause to be calm; "The patient must be sedated now"; "Calm down"  '
    assert select_sentences.examples_from_gloss_line(line) == ["The patient must be sedated now", "Calm down"]


# ---------------------------------------------------------------------------------------------
# Stage 0: audio and alignments


def test_every_speaker_speaks_every_sentence(corpus):
    ids = sentence_ids(corpus)
    assert len(ids) == NUM_SENTENCES
    for kind, ext in (("wav", "wav"), ("align", "lab")):
        assert sorted(p.name for p in (corpus / kind).iterdir()) == sorted(SPEAKERS)
        for spk in SPEAKERS:
            found = sorted(p.name for p in (corpus / kind / spk).iterdir())
            assert found == [f"{spk}-{sid}.{ext}" for sid in ids]
    assert not (corpus / "tmp").exists(), "synthesis left temporary files behind"
    assert (corpus / "LICENSE.wordnet").read_text().startswith("This software and database")


def test_wavs_are_16k_mono_pcm16(corpus):
    for wav in sorted((corpus / "wav").rglob("*.wav")):
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), wav
        assert 1.0 < info.duration < 10.0, wav


def test_alignments_cover_the_audio_in_the_shared_phone_set(corpus):
    for lab in sorted((corpus / "align").rglob("*.lab")):
        spk = lab.parent.name
        labels = read_lab(lab)
        duration = sf.info(str(corpus / "wav" / spk / f"{lab.stem}.wav")).duration
        assert labels[0][0] == 0.0, lab
        assert abs(labels[-1][1] - duration) <= 0.020, f"{lab}: ends {labels[-1][1]}, audio {duration}"
        for (start, end, phone), following in zip(labels, labels[1:] + [None]):
            assert phone in SHARED_PHONES, f"{lab}: {phone}"
            assert end > start, f"{lab}: empty or reversed segment {start} {end} {phone}"
            if following is not None:
                assert following[0] == end, f"{lab}: gap or overlap at {end}"
        assert sum(phone != "pau" for _, _, phone in labels) >= 10, lab


def test_speed_warped_alignment_is_slt_divided_by_088(corpus):
    for sid in sentence_ids(corpus):
        slt = read_lab(corpus / "align" / "slt" / f"slt-{sid}.lab")
        sltw = read_lab(corpus / "align" / "sltw" / f"sltw-{sid}.lab")
        assert [p for _, _, p in slt] == [p for _, _, p in sltw]
        for (_, slt_end, _), (_, sltw_end, _) in zip(slt, sltw):
            assert abs(slt_end / 0.88 - sltw_end) <= 0.0015, sid
        slt_duration = sf.info(str(corpus / "wav" / "slt" / f"slt-{sid}.wav")).duration
        sltw_duration = sf.info(str(corpus / "wav" / "sltw" / f"sltw-{sid}.wav")).duration
        assert abs(slt_duration / 0.88 - sltw_duration) < 0.002


def test_flite_voices_share_the_phone_sequence(corpus):
    for sid in sentence_ids(corpus):
        sequences = {spk: [p for _, _, p in read_lab(corpus / "align" / spk / f"{spk}-{sid}.lab")]
                     for spk in FLITE_SPEAKERS}
        assert len({tuple(seq) for seq in sequences.values()}) == 1, sequences
        # The other engines read the same words: most of slt's phones are in theirs too.
        for spk in ("ked", "esf2"):
            other = [p for _, _, p in read_lab(corpus / "align" / spk / f"{spk}-{sid}.lab")]
            common = sum(min(other.count(p), sequences["slt"].count(p)) for p in set(other))
            assert common >= 0.6 * len(sequences["slt"]), (spk, sid, other)


def test_rerun_is_a_quick_no_op(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    start = time.time()
    result = get_corpus(corpus)
    elapsed = time.time() - start
    assert "is complete" in result.stderr and "nothing to do" in result.stderr
    assert elapsed < 2.0, f"a complete corpus took {elapsed:.2f} s to check"
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == before


def test_changed_parameters_regenerate_and_reuse(corpus, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(corpus, db)
    kept_wav = db / "wav" / "slt" / f"slt-{sentence_ids(db)[0]}.wav"
    kept_mtime = kept_wav.stat().st_mtime_ns
    # Fewer speakers, same sentences and engines: the old audio is reused.
    result = get_corpus(db, speakers=["slt", "kal"])
    assert "regenerating" in result.stderr
    assert sorted(p.name for p in (db / "wav").iterdir()) == ["kal", "slt"]
    assert kept_wav.stat().st_mtime_ns == kept_mtime
    assert "speakers slt kal" in (db / ".complete").read_text()
    # Another seed: other sentences, so everything is synthesised anew.
    old_text = (db / "sentences.txt").read_text()
    get_corpus(db, "--seed", "5", speakers=["slt", "kal"])
    assert (db / "sentences.txt").read_text() != old_text
    assert kept_wav.stat().st_mtime_ns != kept_mtime
    assert "seed 5" in (db / ".complete").read_text()


def test_interrupted_synthesis_leaves_only_whole_files_and_resumes(corpus, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(corpus, db)
    (db / ".complete").unlink()
    for spk in ("slt", "esf2"):
        shutil.rmtree(db / "wav" / spk)
    missing_lab = db / "align" / "kal" / f"kal-{sentence_ids(db)[1]}.lab"
    missing_lab.unlink()  # a job killed between writing the wav and the lab
    job = subprocess.Popen(
        [sys.executable, "local/synth/synthesize.py", "--db-dir", str(db), "--speakers", ",".join(SPEAKERS)],
        cwd=REPO_ROOT, env=script_env(), stderr=subprocess.DEVNULL, start_new_session=True,
    )
    time.sleep(0.4)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    for wav in (db / "wav").rglob("*.wav"):  # files appear by rename only: never half-written
        assert sf.read(str(wav))[0].size == sf.info(str(wav)).frames > 0, wav
    result = get_corpus(db)
    assert "verified 30 utterances" in result.stderr
    assert missing_lab.is_file()
    for spk in ("slt", "esf2"):  # deterministic engines: the same audio as the first run
        for wav in (corpus / "wav" / spk).iterdir():
            assert (db / "wav" / spk / wav.name).read_bytes() == wav.read_bytes(), wav.name


def test_bad_options_fail_with_one_clear_line(tmp_path):
    result = get_corpus(tmp_path / "db", speakers=["slt", "nobody"], check=False)
    assert result.returncode != 0
    assert "unknown speaker 'nobody'" in result.stderr.strip().splitlines()[-1]
    result = run("local/synth/get_corpus.sh", "--nj", "zero", str(tmp_path / "db"), check=False)
    assert result.returncode != 0 and "--nj must be a positive integer" in result.stderr


def test_presets_expand_to_known_voices():
    many = voices.parse_speakers("many")
    assert many == voices.MANY_SPEAKERS.split() and len(many) == 24
    assert sorted(many) == sorted(voices.VOICES)  # every voice, once
    assert voices.parse_speakers("default") == "slt rms awb kal ked esf2 esm7 sltw".split()
    assert set(voices.parse_speakers("default")) < set(many)
    assert voices.parse_speakers("default,esf2w76") == voices.DEFAULT_SPEAKERS.split() + ["esf2w76"]
    with pytest.raises(ValueError, match="names slt twice"):
        voices.parse_speakers("many slt")
    with pytest.raises(ValueError, match="unknown speaker 'lots'"):
        voices.parse_speakers("lots")


def test_every_voice_has_a_gender_and_a_valid_warp():
    plain = {v.engine_voice: v for v in voices.VOICES.values() if v.speed is None}
    assert len(plain) == 7
    for speaker, voice in voices.VOICES.items():
        assert voice.speaker == speaker and "-" not in speaker and len(speaker) <= 8, speaker
        assert voice.gender in ("f", "m"), speaker
        if voice.speed is None:
            continue
        base = plain[voice.engine_voice]  # a warp of one of the engine voices, with its gender
        assert (voice.engine, voice.gender) == (base.engine, base.gender), speaker
        assert 0.7 <= voice.speed <= 1.3 and voice.speed != 1.0, speaker
        # <base>w<percent>: the id says the base voice and the warp (sltw keeps its older name).
        assert speaker == ("sltw" if speaker == "sltw" else f"{base.speaker}w{round(voice.speed * 100)}")
    assert voices.VOICES["sltw"].speed == 0.88  # the corpora made before the warps stay valid


def test_get_corpus_expands_a_preset_before_stamping(corpus, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(corpus, db)
    get_corpus(db, speakers=["default"])  # adds rms awb esm7, reuses the rest
    expected = "speakers slt rms awb kal ked esf2 esm7 sltw"
    for stamp in (".complete", ".params"):
        assert expected in (db / stamp).read_text().splitlines(), stamp
    assert sorted(p.name for p in (db / "wav").iterdir()) == sorted(expected.split()[1:])
    result = get_corpus(db, speakers=expected.split()[1:])  # the ids the preset stands for: nothing to do
    assert "nothing to do" in result.stderr


def test_warped_festival_and_espeak_voices(corpus, tmp_path):
    """Warps of festival and espeak-ng voices share their base's synthesis, which stays byte-identical,
    and divide its label times by the speed."""
    db = tmp_path / "db"
    db.mkdir()
    ids = sentence_ids(corpus)[:2]
    (db / "sentences.txt").write_text("".join(line + "\n" for line in (corpus / "sentences.txt").read_text()
                                              .splitlines()[:2]))
    run("python3", "local/synth/synthesize.py", "--db-dir", str(db), "--speakers", "ked,kedw85,esf2,esf2w116",
        "--verbose", "0")
    for base, warp, speed in (("ked", "kedw85", 0.85), ("esf2", "esf2w116", 1.16)):
        for sid in ids:
            base_wav = corpus / "wav" / base / f"{base}-{sid}.wav"
            assert (db / "wav" / base / base_wav.name).read_bytes() == base_wav.read_bytes(), base_wav.name
            base_lab = read_lab(corpus / "align" / base / f"{base}-{sid}.lab")
            warp_lab = read_lab(db / "align" / warp / f"{warp}-{sid}.lab")
            assert [p for *_, p in warp_lab] == [p for *_, p in base_lab], (warp, sid)
            for (_, base_end, _), (_, warp_end, _) in zip(base_lab[:-1], warp_lab[:-1]):
                assert abs(base_end / speed - warp_end) <= 0.002, (warp, sid)
            base_duration = sf.info(str(base_wav)).duration
            warp_duration = sf.info(str(db / "wav" / warp / f"{warp}-{sid}.wav")).duration
            assert abs(base_duration / speed - warp_duration) < 0.003, (warp, sid)
            assert warp_lab[-1][1] == pytest.approx(warp_duration, abs=0.001)


# ---------------------------------------------------------------------------------------------
# Phone-label helpers


def test_normalise_segments_clips_extends_and_merges():
    # kal16: the final pause runs past the audio; it is clipped.
    labels = engines.normalise_segments([(0, 0.2, "pau"), (0.2, 0.5, "ax"), (0.5, 1.116, "pau")], 1.0, "u")
    assert labels == [(0.0, 0.2, "pau"), (0.2, 0.5, "ax"), (0.5, 1.0, "pau")]
    # festival: labels stop ~25 ms short; the last one is stretched to the end.
    labels = engines.normalise_segments([(0, 0.3, "k"), (0.3, 0.975, "h#")], 1.0, "u")
    assert labels == [(0.0, 0.3, "k"), (0.3, 1.0, "pau")]
    # neighbouring pauses merge; empty segments go.
    labels = engines.normalise_segments([(0, 0.1, "pau"), (0.1, 0.1, "t"), (0.1, 0.4, "pau")], 0.4, "u")
    assert labels == [(0.0, 0.4, "pau")]
    with pytest.raises(engines.EngineError, match="'q' is not in the shared"):
        engines.normalise_segments([(0, 1.0, "q")], 1.0, "u")
    with pytest.raises(engines.EngineError, match="do not match its audio"):
        engines.normalise_segments([(0, 2.0, "pau")], 1.0, "u")


def test_espeak_phoneme_map():
    assert espeak.map_phoneme("'aI") == ("ay",)
    assert espeak.map_phoneme(",i@3") == ("ih", "r")
    assert espeak.map_phoneme("_:") == espeak.map_phoneme("_!") == ("pau",)
    assert espeak.map_phoneme(";") == ()
    for phones in espeak.PHONE_MAP.values():
        assert set(phones) <= SHARED_PHONES
    with pytest.raises(espeak.UnmappedPhonemeError, match="'Q#'"):
        espeak.map_phoneme("Q#")
    segments = espeak.phoneme_events_to_segments(
        [("h", 0.02), ("@", 0.1), (";", 0.2), ("A@", 0.25), ("_:", 0.45)], 0.5
    )
    expected = [(0.0, 0.02, "pau"), (0.02, 0.1, "hh"), (0.1, 0.25, "ax"),  # `;` lends its time to ax
                (0.25, 0.35, "aa"), (0.35, 0.45, "r"), (0.45, 0.5, "pau")]  # A@ = aa + r, split evenly
    assert [phone for *_, phone in segments] == [phone for *_, phone in expected]
    for (start, end, _), (expected_start, expected_end, _) in zip(segments, expected):
        assert start == pytest.approx(expected_start) and end == pytest.approx(expected_end)


# ---------------------------------------------------------------------------------------------
# Stage 1: data prep


@pytest.fixture(scope="module")
def data_dir(corpus, tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    run("local/synth/data_prep.sh", "--num-dev-sentences", "1", "--num-eval-sentences", "2",
        "--num-pair-sentences", "2", str(corpus), str(data))
    return data


def read_map(path: Path) -> Dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_data_prep_splits_by_sentence(data_dir, corpus):
    sentences_of = {}
    for split in ("train", "dev", "eval"):
        utt2spk = read_map(data_dir / split / "utt2spk")
        assert sorted(set(utt2spk.values())) == sorted(SPEAKERS), split
        sentences_of[split] = {utt.split("-", 1)[1] for utt in utt2spk}
        for utt, spk in utt2spk.items():
            assert utt == f"{spk}-{utt.split('-', 1)[1]}"
        assert len(utt2spk) == len(SPEAKERS) * len(sentences_of[split])
    ids = sentence_ids(corpus)
    assert sentences_of["eval"] == set(ids[-2:]) and sentences_of["dev"] == {ids[-3]}
    assert sentences_of["train"] == set(ids[:-3])
    assert not sentences_of["train"] & (sentences_of["dev"] | sentences_of["eval"])


def test_data_prep_files_are_sorted_and_consistent(data_dir, corpus):
    sentences = read_map(corpus / "sentences.txt")
    for split in ("train", "dev", "eval"):
        d = data_dir / split
        for name in ("wav.scp", "utt2spk", "spk2utt", "text", "utt2dur", "spk2gender", "pairs"):
            if (d / name).exists():
                lines = (d / name).read_text().splitlines()
                assert lines == sorted(lines, key=str.encode), f"{d / name} is not LC_ALL=C sorted"
        utts = list(read_map(d / "utt2spk"))
        for name in ("wav.scp", "text", "utt2dur"):
            assert list(read_map(d / name)) == utts, name
        for utt, path in read_map(d / "wav.scp").items():
            assert os.path.isabs(path) and Path(path).is_file()
            assert abs(float(read_map(d / "utt2dur")[utt]) - sf.info(path).duration) < 1e-5
            assert read_map(d / "text")[utt] == sentences[utt.split("-", 1)[1]]
        assert read_map(d / "spk2gender") == {"slt": "f", "kal": "m", "ked": "m", "esf2": "f", "sltw": "f"}
        spk2utt = {spk: utts.split() for spk, utts in read_map(d / "spk2utt").items()}
        assert sorted(u for us in spk2utt.values() for u in us) == sorted(utts)
        ctm_utts = []
        for line in (d / "phones.ctm").read_text().splitlines():
            utt, _channel, start, duration, phone = line.split()
            if not ctm_utts or ctm_utts[-1][0] != utt:
                ctm_utts.append((utt, []))
            ctm_utts[-1][1].append((float(start), float(start) + float(duration), phone))
        assert [u for u, _ in ctm_utts] == utts  # one block per utterance, in utt2spk order
        for utt, phones in ctm_utts:
            lab = read_lab(corpus / "align" / utt.split("-")[0] / f"{utt}.lab")
            assert [p for *_, p in phones] == [p for *_, p in lab], utt  # in time order, as the lab
            for (start, end, _), (lab_start, lab_end, _) in zip(phones, lab):
                assert abs(start - lab_start) < 1e-6 and abs(end - lab_end) < 2e-3, utt


def test_eval_pairs_cover_every_ordered_speaker_pair(data_dir, corpus):
    eval_ids = sentence_ids(corpus)[-2:]
    pairs = [line.split() for line in (data_dir / "eval" / "pairs").read_text().splitlines()]
    expected = {(f"{src}-{sid}", tgt, f"{tgt}-{sid}") for sid in eval_ids
                for src in SPEAKERS for tgt in SPEAKERS if src != tgt}
    assert len(pairs) == len(expected) == 2 * 5 * 4
    assert {tuple(p) for p in pairs} == expected
    eval_utts = set(read_map(data_dir / "eval" / "utt2spk"))
    assert all(src in eval_utts and ref in eval_utts for src, _, ref in pairs)


def test_data_prep_errors(corpus, tmp_path):
    result = run("local/synth/data_prep.sh", str(tmp_path / "nothing"), str(tmp_path / "data"), check=False)
    assert result.returncode != 0 and "run stage 0 first" in result.stderr
    result = run("local/synth/data_prep.sh", "--num-dev-sentences", "3", "--num-eval-sentences", "3",
                 "--num-pair-sentences", "1", str(corpus), str(tmp_path / "data"), check=False)
    assert result.returncode != 0
    assert "has 6 sentences but 3 dev + 3 eval + at least 1 train need 7" in result.stderr
    assert not (tmp_path / "data" / "train").exists()


def heldout_prep(corpus: Path, data: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("local/synth/data_prep.sh", "--num-dev-sentences", "1", "--num-eval-sentences", "2",
               "--num-pair-sentences", "2", *options, str(corpus), str(data), check=check)


@pytest.mark.parametrize("zero_shot", [False, True], ids=["seen", "zero-shot"])
def test_heldout_speakers_are_only_in_eval(corpus, tmp_path, zero_shot):
    heldout, seen = ["kal", "sltw"], ["slt", "ked", "esf2"]
    options = ["--heldout-speakers", "sltw,kal"] + (["--heldout-pairs", "zero-shot"] if zero_shot else [])
    heldout_prep(corpus, tmp_path, *options)
    for split in ("train", "dev"):
        assert sorted(set(read_map(tmp_path / split / "utt2spk").values())) == sorted(seen), split
        assert sorted(read_map(tmp_path / split / "spk2utt")) == sorted(seen), split
        assert sorted(read_map(tmp_path / split / "spk2gender")) == sorted(seen), split
    eval_utts = read_map(tmp_path / "eval" / "utt2spk")
    assert sorted(set(eval_utts.values())) == sorted(SPEAKERS)
    assert read_map(tmp_path / "eval" / "spk2gender")["kal"] == "m"
    eval_ids = sentence_ids(corpus)[-2:]
    expected = {(f"{src}-{sid}", tgt, f"{tgt}-{sid}") for sid in eval_ids for src in SPEAKERS
                for tgt in seen + (heldout if zero_shot else []) if src != tgt}
    lines = (tmp_path / "eval" / "pairs").read_text().splitlines()
    assert lines == sorted(lines, key=str.encode)
    pairs = {tuple(line.split()) for line in lines}
    assert len(pairs) == len(lines) and pairs == expected
    assert ("kal-" + eval_ids[0], "slt", "slt-" + eval_ids[0]) in pairs  # held-out source, seen target
    assert (("slt-" + eval_ids[0], "sltw", "sltw-" + eval_ids[0]) in pairs) == zero_shot  # held-out target
    assert all(src in eval_utts and ref in eval_utts for src, _, ref in pairs)


def test_heldout_speaker_errors(corpus, tmp_path):
    result = heldout_prep(corpus, tmp_path, "--heldout-speakers", "kal nobody", check=False)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "nobody is not among the corpus's speakers (slt kal ked esf2 sltw)" in message
    for heldout in (" ".join(SPEAKERS), "slt,kal,ked,esf2"):
        result = heldout_prep(corpus, tmp_path, "--heldout-speakers", heldout, check=False)
        assert result.returncode != 0
        assert "at least 2 must stay" in result.stderr.strip().splitlines()[-1], heldout
    assert not (tmp_path / "train").exists()
