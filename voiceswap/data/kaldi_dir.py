"""Kaldi data directories: reading their files, validating and fixing them.

The checks follow Kaldi's ``utils/validate_data_dir.sh``: every file sorted by key in C byte order
with unique keys, ``utt2spk`` consistent with ``spk2utt``, speaker ids usable as utterance-id
prefixes (sorting by speaker gives the same order as sorting by utterance), and the same
utterance set in every per-utterance file. On top of that the audio itself is checked: readable,
mono, non-empty and at the expected sample rate.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from voiceswap.data.atomic import write_kaldi_map
from voiceswap.data.audio import AudioError, load_audio

# Files keyed by utterance id that must list exactly the utterances of utt2spk when present.
PER_UTT_FILES = ("wav.scp", "text", "utt2dur", "utt2num_frames", "segments")
REQUIRED_FILES = ("wav.scp", "utt2spk", "spk2utt")


class DataDirError(ValueError):
    """A data directory that breaks the Kaldi contract; the message says where and what to do."""


def c_sorted(keys: Iterable[str]) -> List[str]:
    """Sorted in C byte order (``LC_ALL=C sort``), the order Kaldi tools merge files in."""
    return sorted(keys, key=lambda key: key.encode())


def resampling_pipe(path: str | Path, sample_rate: int = 16000) -> str:
    """A wav.scp entry that decodes any sox-readable file to mono 16-bit wav at ``sample_rate``.

    ``-R`` turns off sox's random dither, so the same file always gives the same samples.
    """
    return f"sox -R {shlex.quote(str(path))} -r {sample_rate} -c 1 -b 16 -t wav - |"


def data_dir_tables(utts: Iterable[Any], wav_entry: Callable[[Any], str]) -> Dict[str, List[str]]:
    """The Kaldi files of utterances that have ``utt``, ``spk``, ``duration`` and ``text`` attributes.

    Returns ``{file name: lines}`` for wav.scp (``wav_entry(utt)``), utt2spk, spk2utt, utt2dur and,
    when every utterance has one (``text`` not None), text; sorted in C byte order.
    """
    utts = sorted(utts, key=lambda u: u.utt.encode())
    files = {
        "wav.scp": [f"{u.utt} {wav_entry(u)}" for u in utts],
        "utt2spk": [f"{u.utt} {u.spk}" for u in utts],
        "utt2dur": [f"{u.utt} {u.duration:.3f}" for u in utts],
    }
    if all(u.text is not None for u in utts):
        files["text"] = [f"{u.utt} {u.text}" for u in utts]
    spk2utt: Dict[str, List[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.spk, []).append(u.utt)
    files["spk2utt"] = [f"{spk} {' '.join(spk2utt[spk])}" for spk in c_sorted(spk2utt)]
    return files


def write_data_dir(path: str | Path, files: Mapping[str, Iterable[str]]) -> None:
    """Write a whole data dir (file name -> lines) beside its place, then swap it in.

    A reader never sees half of a dir, and files of an older version that the new one lacks go.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp.{os.getpid()}")
    old = final.with_name(f".{final.name}.old.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, lines in files.items():
        (tmp / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def read_kaldi_map(path: str | Path, allow_empty_value: bool = False) -> "OrderedDict[str, str]":
    """Read ``key value...`` lines in file order; duplicates and missing values are errors."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    entries: "OrderedDict[str, str]" = OrderedDict()
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise DataDirError(f"{path}:{line_number}: empty line; remove it")
            key, _, value = line.partition(" ")
            if not value.strip() and not allow_empty_value:
                raise DataDirError(f"{path}:{line_number}: key '{key}' has no value")
            if key in entries:
                raise DataDirError(
                    f"{path}:{line_number}: duplicate key '{key}'; run utils/fix_data_dir.sh"
                )
            entries[key] = value.strip()
    return entries


def check_sorted(path: Path, keys: List[str]) -> None:
    """Kaldi tools merge files by streaming them side by side, so order matters."""
    for previous, current in zip(keys, keys[1:]):
        if previous.encode() > current.encode():
            raise DataDirError(
                f"{path}: not sorted: '{current}' comes after '{previous}'; "
                "sort it with LC_ALL=C sort or run utils/fix_data_dir.sh"
            )


def read_spk2utt(path: Path) -> "OrderedDict[str, List[str]]":
    return OrderedDict((spk, utts.split()) for spk, utts in read_kaldi_map(path).items())


def validate_data_dir(
    data_dir: str | Path,
    sample_rate: Optional[int] = None,
    check_audio: bool = True,
) -> List[str]:
    """Check a data dir; return the list of problems found (empty when the dir is valid).

    Each problem is one line naming the file, the key and what to do. Audio is decoded only when
    ``check_audio``; its rate is compared with ``sample_rate`` when given.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return [f"{data_dir}: not a directory; run the data-prep stage (stage 1) first"]
    problems: List[str] = []
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file():
            problems.append(f"{data_dir / name}: required file missing")
    if problems:
        return problems

    tables: Dict[str, "OrderedDict[str, str]"] = {}
    for name in (*REQUIRED_FILES, *PER_UTT_FILES[1:], "spk2gender"):
        path = data_dir / name
        if not path.is_file() or name in tables:
            continue
        try:
            tables[name] = read_kaldi_map(path, allow_empty_value=(name == "text"))
            check_sorted(path, list(tables[name]))
        except DataDirError as error:
            problems.append(str(error))
    if problems:
        return problems

    utt2spk = tables["utt2spk"]
    for utt, spk in utt2spk.items():
        if len(spk.split()) != 1:
            problems.append(f"{data_dir / 'utt2spk'}: utterance '{utt}' has '{spk}' as speaker")
        elif not utt.startswith(spk):
            # Kaldi's convention: speaker-prefixed utterance ids keep both sort orders identical.
            problems.append(
                f"{data_dir / 'utt2spk'}: utterance '{utt}' does not start with its speaker id "
                f"'{spk}'; prefix utterance ids with the speaker id"
            )
    by_speaker = [utt for utt, _ in sorted(utt2spk.items(), key=lambda kv: (kv[1].encode(), kv[0].encode()))]
    if not problems and by_speaker != list(utt2spk):
        first = next(a for a, b in zip(by_speaker, utt2spk) if a != b)
        problems.append(
            f"{data_dir / 'utt2spk'}: sorting by speaker and by utterance disagree (first at "
            f"'{first}'); use a separator such as '-' that sorts before letters and digits"
        )

    spk2utt = read_spk2utt(data_dir / "spk2utt")
    expected_spk2utt: "OrderedDict[str, List[str]]" = OrderedDict()
    for utt, spk in utt2spk.items():
        expected_spk2utt.setdefault(spk, []).append(utt)
    for spk, utts in spk2utt.items():
        if spk not in expected_spk2utt:
            problems.append(f"{data_dir / 'spk2utt'}: speaker '{spk}' is missing from utt2spk")
        elif sorted(utts) != sorted(expected_spk2utt[spk]):
            problems.append(
                f"{data_dir / 'spk2utt'}: speaker '{spk}' lists other utterances than utt2spk; "
                "regenerate it with utils/utt2spk_to_spk2utt.pl"
            )
    for spk in expected_spk2utt:
        if spk not in spk2utt:
            problems.append(f"{data_dir / 'spk2utt'}: speaker '{spk}' of utt2spk is missing")

    utterances = set(utt2spk)
    for name in PER_UTT_FILES:
        if name not in tables:
            continue
        keys = set(tables[name])
        for utt in c_sorted(list(keys - utterances))[:3]:
            problems.append(f"{data_dir / name}: utterance '{utt}' is missing from utt2spk")
        for utt in c_sorted(list(utterances - keys))[:3]:
            problems.append(
                f"{data_dir / name}: utterance '{utt}' of utt2spk is missing; "
                "run utils/fix_data_dir.sh to keep only complete utterances"
            )
    if "spk2gender" in tables:
        for spk in expected_spk2utt:
            if spk not in tables["spk2gender"]:
                problems.append(f"{data_dir / 'spk2gender'}: speaker '{spk}' is missing")
        for spk, gender in tables["spk2gender"].items():
            if gender not in ("m", "f"):
                problems.append(f"{data_dir / 'spk2gender'}: speaker '{spk}' has gender '{gender}' (use m or f)")
    if "utt2dur" in tables:
        for utt, duration in tables["utt2dur"].items():
            try:
                ok = float(duration) > 0
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"{data_dir / 'utt2dur'}: utterance '{utt}' has duration '{duration}'")

    if (data_dir / "phones.ctm").is_file():
        problems.extend(check_ctm(data_dir / "phones.ctm", utterances))

    if check_audio and not problems:
        for utt, entry in tables["wav.scp"].items():
            try:
                load_audio(entry, sample_rate=sample_rate)
            except AudioError as error:
                problems.append(f"{data_dir / 'wav.scp'}: utterance '{utt}': {error}")
    return problems


def check_ctm(path: Path, utterances: set) -> List[str]:
    """CTM lines ``utt channel start dur phone``: known utterances, non-negative times, in order."""
    problems: List[str] = []
    last_end: Dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            fields = line.split()
            where = f"{path}:{line_number}"
            if len(fields) != 5:
                problems.append(f"{where}: expected 'utt channel start dur phone', got {line.strip()!r}")
                continue
            utt, _, start, duration, _ = fields
            if utt not in utterances:
                problems.append(f"{where}: utterance '{utt}' is not in utt2spk")
                continue
            try:
                start_s, duration_s = float(start), float(duration)
            except ValueError:
                problems.append(f"{where}: start/duration are not numbers")
                continue
            if start_s < 0 or duration_s < 0:
                problems.append(f"{where}: negative start or duration")
            if start_s + 1e-6 < last_end.get(utt, 0.0) - 0.0015:
                problems.append(f"{where}: phone of '{utt}' starts before the previous one ends")
            last_end[utt] = start_s + duration_s
        if len(problems) > 10:
            problems[10:] = [f"{path}: ... and more"]
    return problems


def fix_data_dir(data_dir: str | Path) -> int:
    """Keep only utterances present in every per-utterance file, sort every file, rebuild spk2utt.

    Originals are copied to ``<data_dir>/.backup/`` first, as Kaldi does. Returns the number of
    utterances kept.
    """
    data_dir = Path(data_dir)
    backup = data_dir / ".backup"
    backup.mkdir(exist_ok=True)
    tables: Dict[str, Dict[str, str]] = {}
    for name in ("utt2spk", *PER_UTT_FILES):
        path = data_dir / name
        if not path.is_file():
            continue
        shutil.copy2(path, backup / name)
        table: Dict[str, str] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition(" ")
                if key and (value.strip() or name == "text"):
                    table.setdefault(key, value.strip())  # first occurrence wins, as sort -u -k1,1
        tables[name] = table
    if "utt2spk" not in tables:
        raise DataDirError(f"{data_dir / 'utt2spk'}: file not found; cannot fix a dir without it")
    keep = set.intersection(*(set(table) for table in tables.values()))
    dropped = len(tables["utt2spk"]) - len(keep)
    if dropped:
        logging.warning("%s: dropping %d utterance(s) missing from some file", data_dir, dropped)
    for name, table in tables.items():
        write_kaldi_map(data_dir / name, ((k, v) for k, v in table.items() if k in keep))
    spk2utt: Dict[str, List[str]] = {}
    for utt in c_sorted(list(keep)):
        spk2utt.setdefault(tables["utt2spk"][utt], []).append(utt)
    if (data_dir / "spk2utt").is_file():
        shutil.copy2(data_dir / "spk2utt", backup / "spk2utt")
    write_kaldi_map(data_dir / "spk2utt", ((spk, " ".join(utts)) for spk, utts in spk2utt.items()))
    for name in ("spk2gender",):
        path = data_dir / name
        if path.is_file():
            shutil.copy2(path, backup / name)
            table = read_kaldi_map(path)
            write_kaldi_map(path, ((k, v) for k, v in table.items() if k in spk2utt))
    return len(keep)
