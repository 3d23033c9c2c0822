"""Stages 0-1 of the offline synth corpus: sentence selection, synthesis with alignments, data prep.

One tiny corpus (5 voices covering flite, festival, espeak-ng and the speed-warped voice, x 6
sentences) is synthesised once for the module with the real engines and the real run.pl; the
tests then check it, rerun the scripts on copies of it, and unit-test the phone-label helpers.
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
