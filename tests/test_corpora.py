"""Stages 0-1 of the downloaded corpora (vctk, librispeech, flickr8k) against tiny archives.

The archives are built here in the real layouts (tones instead of speech, a few per speaker) and
served by a local http.server thread that supports Range requests and can drop a connection
half-way, so download, resume, verification, safe extraction and data prep all run for real,
offline, in well under a minute.
"""

from __future__ import annotations

import hashlib
import json
import http.server
import io
import re
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from conftest import REPO_ROOT, TINY_CLASSIFIER, recipe_env, write_tone

sys.path.insert(0, str(REPO_ROOT / "local"))
import download  # noqa: E402  (local/download.py: the module under test)

VCTK_SPEAKERS = {"p225": "F", "p226": "M", "p227": "M", "p228": "F", "p315": "M"}
VCTK_SHARED = ["Please call Stella.", "Ask her to bring these things with her from the store."]
LIBRI = {  # subset: {speaker: (gender, chapter)}
    "train-clean-100": {"103": ("F", "1240"), "1034": ("M", "121119")},
    "dev-clean": {"1272": ("M", "128104"), "1462": ("F", "170138")},
    "test-clean": {"1089": ("M", "134686"), "121": ("F", "121726"), "1188": ("M", "133604")},
}
FLICKR_SPEAKERS = {4: 4, 7: 4, 12: 5}  # speaker number: utterances


# ---------------------------------------------------------------------------------------------
# Archive builders (real layouts, tiny audio)


def add_tree(archive: Path, root: Path) -> Path:
    """Pack everything under ``root`` (names relative to it) into a .zip or .tar.gz."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in files:
                zf.write(path, path.relative_to(root).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for path in files:
                tar.add(path, path.relative_to(root).as_posix())
    return archive


def build_vctk(work: Path) -> Path:
    src = work / "vctk_src"
    info = ["ID  AGE  GENDER  ACCENTS  REGION COMMENTS"]
    for s, (spk, gender) in enumerate(VCTK_SPEAKERS.items()):
        info.append(f"{spk}  23  {gender}    English    Southern  England")
        texts = VCTK_SHARED + [f"Sentence {n} of speaker {spk}." for n in (3, 4)]
        for n, text in enumerate(texts, 1):
            for mic in ("mic1", "mic2"):
                write_tone(src / "wav48_silence_trimmed" / spk / f"{spk}_{n:03d}_{mic}.flac", 0.3, 48000,
                           150.0 + 30 * s + 5 * n)
            if spk != "p315":  # p315 has no transcripts in VCTK 0.92
                (src / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (src / "txt" / spk / f"{spk}_{n:03d}.txt").write_text(text + "\n")
    (src / "speaker-info.txt").write_text("\n".join(info) + "\n")
    (src / "README.txt").write_text("CSTR VCTK Corpus (tiny test copy)\n")
    return add_tree(work / "serve" / "VCTK-Corpus-0.92.zip", src)


def build_librispeech(work: Path) -> List[Path]:
    speakers_txt = ["; ID      |SEX| SUBSET           |MINUTES| NAME"]
    for subset, speakers in LIBRI.items():
        for spk, (gender, _) in speakers.items():
            speakers_txt.append(f"{spk:<7}| {gender} | {subset:<16} | 25.00 | Reader |{spk}| Name")
    archives = []
    for s, (subset, speakers) in enumerate(LIBRI.items()):
        src = work / f"libri_src_{subset}"
        (src / "LibriSpeech").mkdir(parents=True)
        (src / "LibriSpeech" / "SPEAKERS.TXT").write_text("\n".join(speakers_txt) + "\n")
        for k, (spk, (_, chapter)) in enumerate(speakers.items()):
            chapter_dir = src / "LibriSpeech" / subset / spk / chapter
            trans = []
            for n in range(3):
                utt = f"{spk}-{chapter}-{n:04d}"
                write_tone(chapter_dir / f"{utt}.flac", 0.3, 16000, 170.0 + 20 * k + 7 * n + 3 * s)
                trans.append(f"{utt} WORD NUMBER {n} OF READER {spk}")
            (chapter_dir / f"{spk}-{chapter}.trans.txt").write_text("\n".join(trans) + "\n")
        archives.append(add_tree(work / "serve" / f"{subset}.tar.gz", src))
    return archives


def build_flickr(work: Path) -> Path:
    src = work / "flickr_src"
    wav2spk, wav2capt = [], []
    image = 1000268201
    for spk, count in FLICKR_SPEAKERS.items():
        for n in range(count):
            image += 1
            wav = f"{image}_693b08cb0e_{n % 5}.wav"
            write_tone(src / "flickr_audio" / "wavs" / wav, 0.3, 16000, 140.0 + 9 * spk + 5 * n)
            wav2spk.append(f"{wav} {spk}")
            wav2capt.append(f"{wav} {image}_693b08cb0e.jpg #{n % 5}")
    (src / "flickr_audio" / "wav2spk.txt").write_text("\n".join(wav2spk) + "\n")
    (src / "flickr_audio" / "wav2capt.txt").write_text("\n".join(wav2capt) + "\n")
    return add_tree(work / "serve" / "flickr_audio.tar.gz", src)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# A local HTTP server with Range support that can drop a connection half-way


class RangeHandler(http.server.BaseHTTPRequestHandler):
    server: "CorpusServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        name = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
        self.server.requests.append((name, self.headers.get("Range")))
        path = self.server.root / name
        if "/" in name or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not self.server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        body = data[start:]
        if name in self.server.drop_once:
            self.server.drop_once.discard(name)
            self.wfile.write(body[: len(body) // 2])  # then hang up: the client sees a short body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class CorpusServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.root = root
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.drop_once: set = set()
        self.ignore_range = False  # act as a server without Range support

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("corpora")
    (work / "serve").mkdir()
    archives = {"vctk": [build_vctk(work)], "librispeech": build_librispeech(work), "flickr8k": [build_flickr(work)]}
    sums = work / "sums.md5"
    sums.write_text("".join(f"{md5(a)}  {a.name}\n" for group in archives.values() for a in group))
    httpd = CorpusServer(work / "serve")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.work, httpd.archives, httpd.sums = work, archives, sums
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def run(args: List[str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO_ROOT, env=recipe_env(), capture_output=True, text=True, timeout=timeout)


def run_recipe(tmp: Path, server: CorpusServer, corpus: str, *args: str,
               data_prep_opts: str = "", extra_get_opts: str = "") -> subprocess.CompletedProcess:
    get_opts = f"--url-base {server.url} --download-dir {tmp / 'downloads'} --checksum-file {server.sums} " \
               f"--retries 1 {extra_get_opts}"
    return run(["./run.sh", "--corpus", corpus, "--nj", "1", "--db-dir", str(tmp / "db"),
                "--data-dir", str(tmp / "data"), "--dump-dir", str(tmp / "dump"), "--exp-dir", str(tmp / "exp"),
                "--get-corpus-opts", get_opts, "--data-prep-opts", data_prep_opts, *args], timeout=300)


def read_map(path: Path) -> Dict[str, str]:
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in path.read_text().splitlines())


def pairs_of(data: Path) -> List[List[str]]:
    return [line.split() for line in (data / "eval" / "pairs").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# The three corpora through run.sh


PREP_OPTS = {
    "vctk": "--num-dev-sentences 1 --num-eval-sentences 1 --num-eval-speakers 3 --num-pair-utts 1",
    "librispeech": "--num-pair-utts 1 --num-target-ref-utts 1 --num-target-dev-utts 1",
    "flickr8k": "--num-dev-utts 1 --num-eval-utts 1",
}


@pytest.fixture(scope="module")
def prepared(server, tmp_path_factory):
    """Each corpus through stages 0-1 once (run.sh validates every set, decoding every wav.scp pipe)."""
    dirs = {}
    for corpus in ("vctk", "librispeech", "flickr8k"):
        tmp = tmp_path_factory.mktemp(corpus)
        result = run_recipe(tmp, server, corpus, "--stage", "0", "--stop-stage", "1",
                            data_prep_opts=PREP_OPTS[corpus])
        assert result.returncode == 0, result.stderr[-4000:]
        dirs[corpus] = tmp
    return dirs


def test_vctk_data_dirs(prepared):
    data = prepared["vctk"] / "data"
    assert (prepared["vctk"] / "db" / "wav48_silence_trimmed" / "p225" / "p225_001_mic1.flac").is_file()
    for split in ("train", "dev", "eval"):
        utt2spk = read_map(data / split / "utt2spk")
        # p315 has no transcripts: left out; everyone else is in every split (utterance split)
        assert set(utt2spk.values()) == {"p225", "p226", "p227", "p228"}, split
        assert all(u.startswith(f"{s}-") for u, s in utt2spk.items())
        assert "sox -R" in (data / split / "wav.scp").read_text()
        assert read_map(data / split / "spk2gender")["p226"] == "m"
    texts = {split: set(read_map(data / split / "text").values()) for split in ("train", "dev", "eval")}
    assert texts["eval"] == {VCTK_SHARED[0]} or texts["eval"] == {VCTK_SHARED[1]}
    assert not texts["train"] & (texts["dev"] | texts["eval"])  # sentence-disjoint
    pairs = pairs_of(data)
    assert pairs and all(len(p) == 3 for p in pairs)
    # VCTK's shared sentences give parallel references: the target saying the same sentence
    assert all(ref.startswith(f"{target}-") and ref.split("-")[1] == src.split("-")[1] for src, target, ref in pairs)


def test_librispeech_data_dirs(prepared):
    data = prepared["librispeech"] / "data"
    utt2spk = read_map(data / "eval" / "utt2spk")
    assert utt2spk["1089-134686-0000"] == "1089-134686"  # SPK-CHAPTER speakers, corpus utterance ids
    train = read_map(data / "train" / "utt2spk")
    assert set(train.values()) == {"103-1240", "1034-121119"}
    # dev: the dev-clean speakers, and one held-out utterance of each train target (validation needs speakers
    # the model knows)
    dev = read_map(data / "dev" / "utt2spk")
    assert set(dev.values()) == {"1272-128104", "1462-170138", "103-1240", "1034-121119"}
    assert {u for u, s in dev.items() if s in ("103-1240", "1034-121119")} == {"103-1240-0001", "1034-121119-0001"}
    assert read_map(data / "eval" / "text")["121-121726-0002"] == "WORD NUMBER 2 OF READER 121"
    assert read_map(data / "eval" / "spk2gender") == {"1089-134686": "m", "1188-133604": "m", "121-121726": "f",
                                                      "103-1240": "f", "1034-121119": "m"}
    # The targets are the train speakers (a model knows them), each with its last utterance held out of
    # train into eval: the reference and centroid no training sees.
    assert {u: s for u, s in utt2spk.items() if s in ("103-1240", "1034-121119")} == {
        "103-1240-0002": "103-1240", "1034-121119-0002": "1034-121119"}
    assert not set(train) & set(utt2spk) and not set(train) & set(dev)
    pairs = pairs_of(data)
    assert len(pairs) == 3 * 1 * 2  # 3 eval speakers x 1 source utterance x 2 train targets
    assert {target for _, target, _ in pairs} == {"103-1240", "1034-121119"}
    assert {utt2spk[src] for src, _, _ in pairs} == {"1089-134686", "1188-133604", "121-121726"}
    assert all(ref == "-" for _, _, ref in pairs)


def test_flickr8k_data_dirs(prepared):
    data = prepared["flickr8k"] / "data"
    for split, per_spk in (("train", 2), ("dev", 1), ("eval", 1)):
        spk2utt = read_map(data / split / "spk2utt")
        assert sorted(spk2utt) == ["spk004", "spk007"]  # the seed's one-to-one pair
        assert all(len(utts.split()) == per_spk for utts in spk2utt.values())
    assert not (data / "train" / "text").exists()  # caption texts are not in the audio archive
    pairs = pairs_of(data)
    assert sorted((p[0].split("-")[0], p[1], p[2]) for p in pairs) == [("spk004", "spk007", "-"),
                                                                       ("spk007", "spk004", "-")]


def test_rerun_is_a_noop(prepared, server):
    tmp = prepared["librispeech"]
    before = len(server.requests)
    stamp = (tmp / "data" / "train" / "wav.scp").stat().st_mtime_ns
    start = time.time()
    result = run_recipe(tmp, server, "librispeech", "--stage", "0", "--stop-stage", "1",
                        data_prep_opts=PREP_OPTS["librispeech"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.time() - start < 20
    assert "nothing to do" in result.stderr and "up to date" in result.stderr
    assert len(server.requests) == before  # not one HTTP request
    assert (tmp / "data" / "train" / "wav.scp").stat().st_mtime_ns == stamp


def test_flickr8k_through_stage_3(prepared, server):
    tmp = prepared["flickr8k"]
    result = run_recipe(tmp, server, "flickr8k", "--stage", "2", "--stop-stage", "3", "--feats", "logmel80")
    assert result.returncode == 0, result.stderr[-4000:]
    for split in ("train", "dev", "eval"):
        assert (tmp / "dump" / "norm" / "logmel80" / split / "feats.scp").is_file()


TINY_VAEGAN = ("data.crop_frames=32 data.batch_size=2 data.num_workers=0 model.encoder_channels=[4,8,8] "
               "model.encoder_res_blocks=1 model.generator_res_blocks=1 model.generator_channels=[8,4] "
               "model.discriminator_channels=[4,8] train.max_steps=2 train.valid_interval=2 train.save_interval=2 "
               "train.log_interval=1 plots.interval=0")


def test_flickr8k_vaegan_one_to_one_recipe(prepared, server):
    """The VAE-GAN seed's recipe: speakers 4 and 7 of Flickr8k, one-to-one, through scoring (stages 2-9)."""
    tmp = prepared["flickr8k"]
    result = run_recipe(tmp, server, "flickr8k", "--model", "vaegan_flickr8k", "--stage", "2", "--stop-stage", "9",
                        "--feats", "logmel80", "--train-overrides", TINY_VAEGAN,
                        "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 1")
    assert result.returncode == 0, result.stderr[-4000:]
    (exp,) = [p for p in (tmp / "exp").iterdir() if p.name.startswith("vaegan_flickr8k")]
    assert read_map(exp / "spk2id") == {"spk004": "0", "spk007": "1"}
    # The tiny archive's 0.3 s captions are shorter than a window: trained padded, and said so once.
    log = (exp / "log" / "train.log").read_text()
    assert log.count("WARNING: speaker(s) spk004 (0), spk007 (0): fewer than 8 training utterances of at least "
                     "32 frames") == 1
    rows = [line.split() for line in (exp / "convert_griffinlim" / "conversions").read_text().splitlines()]
    assert sorted((row[2], row[3], row[5]) for row in rows) == [
        ("spk004", "spk004", "reconstruction"), ("spk004", "spk007", "conversion"),
        ("spk007", "spk004", "conversion"), ("spk007", "spk007", "reconstruction")]
    # No transcripts in the audio archive: everything is scored but the words, and the notes say so.
    metrics = json.loads((exp / "scores_griffinlim" / "metrics.json").read_text())
    assert metrics["rows"]["converted"].get("wer") is None and metrics["asr_judges"] is None
    assert any("text is missing (the corpus has no transcripts)" in note for note in metrics["notes"])
    assert 0.0 <= metrics["rows"]["converted"]["spk_acc"] <= 1.0


TINY_VQVAE = ("model.hidden_dim=32 model.residual_dim=16 model.code_dim=16 model.codebook_size=8 model.speaker_dim=8 "
              "data.batch_size=2 data.crop_frames=16 data.num_workers=0 train.max_steps=2 train.valid_interval=2 "
              "train.save_interval=2 train.log_interval=1")


def score_tiny_vqvae(tmp: Path, server: CorpusServer, corpus: str):
    """Stages 2-9 of a prepared corpus with a tiny VQ-VAE: (run.sh result, exp dir, stage-8 rows, metrics)."""
    result = run_recipe(tmp, server, corpus, "--model", "vqvae", "--stage", "2", "--stop-stage", "9",
                        "--data-prep-opts", PREP_OPTS[corpus], "--train-overrides", TINY_VQVAE,
                        "--classifier-overrides", TINY_CLASSIFIER, "--score-opts", "--mos-max-pairs 1")
    assert result.returncode == 0, result.stderr[-4000:]
    (exp,) = [p for p in (tmp / "exp").iterdir() if p.name.startswith("vqvae")]
    rows = [line.split() for line in (exp / "convert_griffinlim" / "conversions").read_text().splitlines()]
    return result, exp, rows, json.loads((exp / "scores_griffinlim" / "metrics.json").read_text())


def test_librispeech_unseen_sources_to_seen_targets_through_scoring(prepared, server):
    """LibriSpeech is speaker-disjoint: its eval speakers convert to train speakers, scored against the
    targets' held-out utterances (stages 2-9 with a tiny VQ-VAE)."""
    result, _, rows, metrics = score_tiny_vqvae(prepared["librispeech"], server, "librispeech")
    assert sum(row[5] == "conversion" for row in rows) == 6
    assert not any(row[5] == "reconstruction" for row in rows)  # unseen sources have no voice of their own
    assert "Stage 8: 6 conversions and 0 reconstructions" in result.stderr
    assert metrics["num_conversions"] == 6 and not metrics["parallel"]
    assert 0.0 <= metrics["rows"]["converted"]["spk_acc"] <= 1.0


def test_vctk_parallel_recipe_through_scoring(prepared, server):
    """VCTK's default (utterance) split, as the Chorowski VQ-VAE seed: every speaker is seen, the eval
    sentence is read by all of them, so conversions have parallel references (stages 2-9, tiny VQ-VAE)."""
    _, exp, rows, metrics = score_tiny_vqvae(prepared["vctk"], server, "vctk")
    assert set(read_map(exp / "spk2id")) == {"p225", "p226", "p227", "p228"}
    conversions = [row for row in rows if row[5] == "conversion"]
    assert conversions and all(row[4] != "-" for row in conversions)  # a parallel reference for each
    assert metrics["parallel"] and metrics["num_conversions"] == len(conversions)
    converted = metrics["rows"]["converted"]
    assert converted["mcd"] > 0.0 and 0.0 <= converted["spk_acc"] <= 1.0


def test_existing_corpus_is_only_verified(server, tmp_path):
    """--db-dir at an already-extracted corpus: no download, only the layout check and .complete."""
    db = tmp_path / "LibriSpeechCopy"
    for archive in server.archives["librispeech"]:
        with tarfile.open(archive) as tar:
            tar.extractall(db, filter="data")
    result = run(["local/librispeech/get_corpus.sh", "--url-base", "http://127.0.0.1:9/nothing-here",
                  "--download-dir", str(tmp_path / "downloads"), str(db)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not downloading" in result.stderr
    assert (db / ".complete").read_text().splitlines()[1] == "subsets train-clean-100 dev-clean test-clean"
    assert not (tmp_path / "downloads").exists()


def test_vctk_speaker_split(server, prepared, tmp_path):
    db = prepared["vctk"] / "db"
    result = run([sys.executable, "local/vctk/data_prep.py", "--split", "speaker", "--dev-speakers", "p226",
                  "--eval-speakers", "p227 p228", "--keep-untranscribed", "true", "--pair-targets", "eval",
                  str(db), str(tmp_path / "data")])
    assert result.returncode == 0, result.stderr[-3000:]
    from voiceswap.data.kaldi_dir import validate_data_dir

    spks = {}
    for split in ("train", "dev", "eval"):
        assert validate_data_dir(tmp_path / "data" / split, sample_rate=16000) == []
        spks[split] = set(read_map(tmp_path / "data" / split / "utt2spk").values())
    assert spks == {"train": {"p225", "p315"}, "dev": {"p226"}, "eval": {"p227", "p228"}}
    assert read_map(tmp_path / "data" / "train" / "text")["p315-001"] == ""  # kept, no transcript
    pairs = pairs_of(tmp_path / "data")
    assert {(s.split("-")[0], t) for s, t, _ in pairs} == {("p227", "p228"), ("p228", "p227")}


def test_vctk_speaker_split_converts_to_seen_targets_with_held_out_parallel_references(prepared, tmp_path):
    db = prepared["vctk"] / "db"
    result = run([sys.executable, "local/vctk/data_prep.py", "--split", "speaker", "--dev-speakers", "p226",
                  "--eval-speakers", "p227 p228", "--num-target-ref-utts", "1", "--num-target-dev-utts", "1",
                  str(db), str(tmp_path / "data")])
    assert result.returncode == 0, result.stderr[-3000:]
    data = tmp_path / "data"
    train, eval_utts = read_map(data / "train" / "utt2spk"), read_map(data / "eval" / "utt2spk")
    assert set(train.values()) == {"p225"} and set(eval_utts.values()) == {"p225", "p227", "p228"}
    # One p225 utterance moved out of train: a sentence the sources read too, so it is their reference.
    (held,) = [u for u, s in eval_utts.items() if s == "p225"]
    assert held not in train and read_map(data / "eval" / "text")[held] in VCTK_SHARED
    pairs = pairs_of(data)
    assert {t for _, t, _ in pairs} == {"p225"} and {eval_utts[s] for s, _, _ in pairs} == {"p227", "p228"}
    assert {ref for _, _, ref in pairs} == {held, "-"}
    texts = read_map(data / "eval" / "text")
    assert all(texts[src] == texts[ref] for src, _, ref in pairs if ref != "-")


def test_holding_out_more_than_a_target_can_spare_is_a_clear_error(prepared, tmp_path):
    db = prepared["vctk"] / "db"
    result = run([sys.executable, "local/vctk/data_prep.py", "--split", "speaker", "--dev-speakers", "p226",
                  "--eval-speakers", "p227 p228", "--num-target-ref-utts", "3", str(db), str(tmp_path / "data")])
    assert result.returncode != 0
    assert "target speaker p225 has 4 training utterance(s): holding out 3" in result.stderr
    assert "--num-target-ref-utts" in result.stderr


# ---------------------------------------------------------------------------------------------
# download.py: resume, verification, safe extraction


def test_interrupted_download_resumes(server, tmp_path):
    archive = server.archives["librispeech"][1]  # dev-clean.tar.gz
    url = f"{server.url}/{archive.name}"
    server.drop_once.add(archive.name)
    fetch = [sys.executable, "local/download.py", "fetch", url, "--download-dir", str(tmp_path),
             "--checksum", f"md5:{md5(archive)}", "--retry-wait", "0.1"]
    first = run(fetch + ["--retries", "0"])
    assert first.returncode == 1
    assert "rerun to resume" in first.stderr and first.stderr.count("error:") == 1
    part = tmp_path / f"{archive.name}.part"
    half = part.stat().st_size
    assert 0 < half < archive.stat().st_size
    second = run(fetch)
    assert second.returncode == 0, second.stderr
    assert server.requests[-1] == (archive.name, f"bytes={half}-")  # resumed, not restarted
    assert md5(tmp_path / archive.name) == md5(archive) and not part.exists()

    # Within one run: the dropped connection is retried at once from where it stopped.
    (tmp_path / archive.name).unlink()
    server.drop_once.add(archive.name)
    third = run(fetch)
    assert third.returncode == 0, third.stderr
    assert "interrupted" in third.stderr and "resuming" in third.stderr
    assert md5(tmp_path / archive.name) == md5(archive)


def test_resume_edge_cases(server, tmp_path):
    archive = server.archives["librispeech"][2]  # test-clean.tar.gz
    fetch = [sys.executable, "local/download.py", "fetch", f"{server.url}/{archive.name}",
             "--download-dir", str(tmp_path), "--checksum", f"md5:{md5(archive)}", "--retry-wait", "0.1"]
    part = tmp_path / f"{archive.name}.part"
    # A whole .part (a crash between download and rename): the server answers 416, no re-download.
    part.write_bytes(archive.read_bytes())
    result = run(fetch)
    assert result.returncode == 0, result.stderr
    assert md5(tmp_path / archive.name) == md5(archive)
    # A server that ignores Range: the download starts again from zero instead of appending.
    (tmp_path / archive.name).unlink()
    part.write_bytes(b"stale bytes")
    server.ignore_range = True
    try:
        result = run(fetch)
    finally:
        server.ignore_range = False
    assert result.returncode == 0, result.stderr
    assert "ignores Range" in result.stderr and md5(tmp_path / archive.name) == md5(archive)


def test_wrong_checksum_fails_and_keeps_nothing(server, tmp_path):
    archive = server.archives["flickr8k"][0]
    sums = tmp_path / "bad.md5"
    sums.write_text(f"{'0' * 32}  {archive.name}\n")
    target = tmp_path / "db"
    result = run(["local/flickr8k/get_corpus.sh", "--url-base", server.url, "--download-dir", str(tmp_path / "dl"),
                  "--checksum-file", str(sums), str(target)])
    assert result.returncode != 0
    assert f"{archive.name} from {server.url}/{archive.name} fails verification: md5 is {md5(archive)}" in result.stderr
    assert list((tmp_path / "dl").iterdir()) == []  # neither the archive nor a .part
    assert not target.exists() or list(target.iterdir()) == []  # nothing extracted
    # A checksum that matches: the same command succeeds.
    sums.write_text(f"{md5(archive)}  {archive.name}\n")
    result = run(["local/flickr8k/get_corpus.sh", "--url-base", server.url, "--download-dir", str(tmp_path / "dl"),
                  "--checksum-file", str(sums), str(target)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (target / ".complete").is_file() and (target / "flickr_audio" / "wav2spk.txt").is_file()


def evil_tar(path: Path, name: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in ("good/first.txt", name, "good/last.txt"):
            info = tarfile.TarInfo(member)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    return path


def evil_zip(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("good/first.txt", "ok")
        zf.writestr(zipfile.ZipInfo(name), "bad")  # ZipInfo keeps the name as given
    return path


@pytest.mark.parametrize("make,name", [(evil_tar, "../escaped.txt"), (evil_tar, "/abs/escaped.txt"),
                                       (evil_zip, "../escaped.txt"), (evil_zip, "/abs/escaped.txt"),
                                       (evil_tar, "good/../../escaped.txt")])
def test_unsafe_member_is_refused(tmp_path, make, name):
    archive = make(tmp_path / ("evil.tar.gz" if make is evil_tar else "evil.zip"), name)
    target = tmp_path / "a" / "target"
    result = run([sys.executable, "local/download.py", "extract", str(archive), "--extract-to", str(target)])
    assert result.returncode == 1
    assert f"member '{name}'" in result.stderr and "refusing to extract" in result.stderr
    assert list(target.iterdir()) == []  # not even the good members before it
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))


def test_checksum_files_and_overrides(tmp_path):
    builtin = tmp_path / "builtin.txt"
    builtin.write_text(f"{'a' * 32}  x.tar.gz\n{'b' * 64}  x.tar.gz\n{'c' * 32}  other.tar.gz\n")
    user = tmp_path / "user.txt"
    user.write_text(f"{'d' * 32}  *sub/x.tar.gz\n")
    assert download.expected_checksums("x.tar.gz", [], [builtin]) == {"md5": "a" * 32, "sha256": "b" * 64}
    assert download.expected_checksums("x.tar.gz", [], [builtin, user]) == {"md5": "d" * 32}
    assert download.expected_checksums("x.tar.gz", [f"sha256:{'e' * 64}"], [builtin]) == {"sha256": "e" * 64}
    assert download.expected_checksums("y.tar.gz", [], [builtin]) == {}
    with pytest.raises(download.DownloadError, match="md5 .32 hex digits"):
        download.parse_checksum("md5:abc")
    # The sums shipped with the recipes parse.
    for corpus, names in (("librispeech", ["dev-clean.tar.gz", "train-clean-360.tar.gz"]),
                          ("vctk", ["VCTK-Corpus-0.92.zip"])):
        files = sorted((REPO_ROOT / "local" / corpus).glob("*sum.txt"))
        for name in names:
            assert download.expected_checksums(name, [], files)


def test_missing_url_is_one_clear_line(server, tmp_path):
    result = run([sys.executable, "local/download.py", "fetch", f"{server.url}/no-such.tar.gz",
                  "--download-dir", str(tmp_path)])
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr and f"{server.url}/no-such.tar.gz" in result.stderr
    assert result.stderr.strip().count("\n") == 0
