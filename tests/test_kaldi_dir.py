"""Each check of the data-dir validator, and fix_data_dir."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import make_data_dir, recipe_env, write_tone
from voiceswap.data.audio import load_audio
from voiceswap.data.kaldi_dir import fix_data_dir, validate_data_dir


def problems_of(data: Path, **kwargs) -> str:
    return "\n".join(validate_data_dir(data, sample_rate=16000, **kwargs))


def test_valid_dir_has_no_problems(tmp_path):
    assert validate_data_dir(make_data_dir(tmp_path), sample_rate=16000) == []


def test_unsorted_file_is_named(tmp_path):
    data = make_data_dir(tmp_path)
    lines = (data / "wav.scp").read_text().splitlines()
    (data / "wav.scp").write_text("\n".join(reversed(lines)) + "\n")
    assert "wav.scp: not sorted" in problems_of(data)


def test_duplicate_key_is_named(tmp_path):
    data = make_data_dir(tmp_path)
    first = (data / "text").read_text().splitlines()[0]
    (data / "text").write_text(first + "\n" + (data / "text").read_text())
    report = problems_of(data)
    assert "duplicate key 'spka-u00'" in report and "text:2" in report


def test_utterance_missing_from_utt2spk(tmp_path):
    data = make_data_dir(tmp_path)
    lines = (data / "utt2spk").read_text().splitlines()
    (data / "utt2spk").write_text("\n".join(lines[1:]) + "\n")
    report = problems_of(data)
    assert "wav.scp: utterance 'spka-u00' is missing from utt2spk" in report


def test_speaker_missing_from_utt2spk(tmp_path):
    data = make_data_dir(tmp_path)
    with open(data / "spk2utt", "a") as f:
        f.write("spkc spkc-u00\n")
    assert "speaker 'spkc' is missing from utt2spk" in problems_of(data)


def test_spk2utt_disagreeing_with_utt2spk(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "spk2utt").write_text("spka spka-u00\nspkb spkb-u00 spkb-u01\n")
    assert "speaker 'spka' lists other utterances" in problems_of(data)


def test_speaker_not_prefix_of_utterance(tmp_path):
    data = make_data_dir(tmp_path)
    text = (data / "utt2spk").read_text().replace("spka-u00 spka", "spka-u00 spkz")
    (data / "utt2spk").write_text(text)
    assert "does not start with its speaker id 'spkz'" in problems_of(data)


def test_sort_orders_disagree(tmp_path):
    # Speakers 'a' and 'a1' with '_' as separator: utterances sort a1_x < a_x, speakers a < a1.
    data = tmp_path / "data"
    data.mkdir()
    wav = write_tone(tmp_path / "x.wav")
    utts = {"a1_x": "a1", "a_x": "a"}
    (data / "wav.scp").write_text("".join(f"{u} {wav}\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts.items()))
    (data / "spk2utt").write_text("a a_x\na1 a1_x\n")
    assert "sorting by speaker and by utterance disagree" in problems_of(data)


@pytest.mark.parametrize(
    "corruption, expected",
    [
        ("missing", "does not exist"),
        ("garbage", "cannot decode"),
        ("rate", "sampled at 8000 Hz but the feature config expects 16000 Hz"),
        ("stereo", "has 2 channels"),
        ("empty", "is empty (0 samples)"),
        ("bad-pipe", "failed (code 3)"),
    ],
)
def test_bad_audio_names_utterance_and_cause(tmp_path, corruption, expected):
    data = make_data_dir(tmp_path)
    target = tmp_path / "wav" / "spkb-u01.wav"
    if corruption == "missing":
        target.unlink()
    elif corruption == "garbage":
        target.write_bytes(b"this is not audio")
    elif corruption == "rate":
        write_tone(target, rate=8000)
    elif corruption == "stereo":
        write_tone(target, channels=2)
    elif corruption == "empty":
        write_tone(target, seconds=0)
    elif corruption == "bad-pipe":
        scp = (data / "wav.scp").read_text().replace(f"spkb-u01 {target}", "spkb-u01 exit 3 |")
        (data / "wav.scp").write_text(scp)
    report = problems_of(data)
    assert "utterance 'spkb-u01'" in report and expected in report


def test_pipe_entry_is_read(tmp_path):
    wav = write_tone(tmp_path / "x.wav", seconds=0.25)
    samples = load_audio(f"cat {wav} |", sample_rate=16000)
    assert samples.shape == (4000,)


def test_audio_check_can_be_skipped(tmp_path):
    data = make_data_dir(tmp_path)
    (tmp_path / "wav" / "spka-u00.wav").unlink()
    assert validate_data_dir(data, check_audio=False) == []


def test_ctm_with_unknown_utterance(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "phones.ctm").write_text("spka-u00 1 0.000 0.100 pau\nnobody-u00 1 0.000 0.100 pau\n")
    assert "phones.ctm:2: utterance 'nobody-u00' is not in utt2spk" in problems_of(data)


def test_fix_data_dir_keeps_complete_utterances(tmp_path):
    data = make_data_dir(tmp_path)
    lines = (data / "text").read_text().splitlines()
    (data / "text").write_text("\n".join(reversed(lines[1:])) + "\n")  # drop one, unsort the rest
    assert fix_data_dir(data) == 3
    assert "spka-u00" not in (data / "wav.scp").read_text()
    assert (data / "spk2utt").read_text().splitlines()[0] == "spka spka-u01"
    assert (data / ".backup" / "wav.scp").read_text().count("\n") == 4
    assert validate_data_dir(data, sample_rate=16000) == []


def test_cli_exit_codes(tmp_path, repo_root):
    data = make_data_dir(tmp_path)
    command = [str(repo_root / "utils" / "validate_data_dir.sh"), str(data)]
    assert subprocess.run(command, env=recipe_env(), capture_output=True).returncode == 0
    (data / "spk2utt").unlink()
    result = subprocess.run(command, env=recipe_env(), capture_output=True, text=True)
    assert result.returncode == 1 and "spk2utt: required file missing" in result.stderr


def test_data_dir_tables_sort_group_and_omit_partial_text(tmp_path):
    from types import SimpleNamespace

    from voiceswap.data.kaldi_dir import data_dir_tables, resampling_pipe

    utts = [SimpleNamespace(utt="b-2", spk="b", duration=1.5, text="two", path=tmp_path / "x y.flac"),
            SimpleNamespace(utt="a-1", spk="a", duration=0.25, text=None, path=tmp_path / "a.flac"),
            SimpleNamespace(utt="b-1", spk="b", duration=1.0, text="one", path=tmp_path / "b.flac")]
    files = data_dir_tables(utts, lambda u: resampling_pipe(u.path))
    assert [line.split()[0] for line in files["wav.scp"]] == ["a-1", "b-1", "b-2"]
    assert files["spk2utt"] == ["a a-1", "b b-1 b-2"]
    assert files["utt2dur"][0] == "a-1 0.250"
    assert "text" not in files  # one utterance has none: Kaldi wants all or no text
    assert files["wav.scp"][2] == f"b-2 sox -R '{tmp_path}/x y.flac' -r 16000 -c 1 -b 16 -t wav - |"
