#!/usr/bin/env python3
"""Kaldi data dirs (train/dev/eval) and eval conversion pairs for LibriSpeech.

Layout read (the OpenSLR 12 archives, extracted into <db-dir>):
    LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac   16 kHz flac
    LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt      "<utt> TEXT" lines
    LibriSpeech/SPEAKERS.TXT                                            ID | SEX | SUBSET | MINUTES | NAME

Utterance ids are the corpus's (``SPK-CHAPTER-NNNN``); the speaker is ``SPK-CHAPTER`` as in Kaldi's
librispeech recipe (``--speaker-unit speaker`` makes it ``SPK``). Subsets map to splits by name:
``train-*`` -> train (several are merged), ``dev-*`` -> dev, ``test-*`` -> eval. LibriSpeech subsets
are speaker-disjoint, so eval speakers are unseen in training (zero-shot conversion).

<data-dir>/eval/pairs: the corpus is not parallel, so every line is ``source_utt target_spk -``, from
``--num-pair-speakers`` eval speakers (gender-balanced; one speaker unit per person, so no pair
converts a reader into themself), ``--num-pair-utts`` source utterances each. The targets
(``--pair-targets``):
  seen  (default) ``--num-pair-targets`` train speakers (gender-balanced, one unit per person), each
        with ``--num-target-ref-utts`` utterances moved from train to eval: the held-out slice no
        training sees, which stage 9 uses for the target's centroid. Every model can convert to them.
  eval  every other pair speaker (zero-shot: only a model that takes its target from a reference
        recording can convert to them).

Example:
    python3 local/librispeech/data_prep.py --subsets "train-clean-100 dev-clean test-clean" db/librispeech data
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile

from voiceswap.data.kaldi_dir import c_sorted, data_dir_tables, resampling_pipe, write_data_dir
from voiceswap.data.pairs import PairError, add_seen_target_args, hold_out_targets, pick_balanced, seen_target_pairs

SPLITS = ("train", "dev", "eval")
SPLIT_OF_PREFIX = {"train": "train", "dev": "dev", "test": "eval"}


class CorpusError(ValueError):
    """A corpus that is missing, incomplete, or lacks a subset the splits need."""


@dataclass
class Utt:
    utt: str
    spk: str
    person: str
    path: Path
    text: str
    duration: float


def find_root(db_dir: Path) -> Path:
    """<db-dir>/LibriSpeech as the archives unpack, or <db-dir> itself if a user points there."""
    for root in (db_dir / "LibriSpeech", db_dir):
        if (root / "SPEAKERS.TXT").is_file():
            return root
    raise CorpusError(f"{db_dir} holds no LibriSpeech corpus (no LibriSpeech/SPEAKERS.TXT): run stage 0 "
                      f"(local/librispeech/get_corpus.sh {db_dir})")


def split_of(subset: str) -> str:
    split = SPLIT_OF_PREFIX.get(subset.split("-")[0])
    if split is None:
        raise CorpusError(f"subset '{subset}' is not a LibriSpeech subset name (train-*, dev-*, test-*)")
    return split


def subsets_of(db_dir: Path, option: str) -> List[str]:
    """--subsets, else those stage 0 recorded in <db-dir>/.complete, else every subset present."""
    if option.strip():
        return option.replace(",", " ").split()
    stamp = db_dir / ".complete"
    if stamp.is_file():
        for line in stamp.read_text().splitlines():
            if line.startswith("subsets "):
                return line.split()[1:]
    root = find_root(db_dir)
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.name.split("-")[0] in SPLIT_OF_PREFIX)


def chapters(root: Path, subset: str) -> List[Path]:
    subset_dir = root / subset
    if not subset_dir.is_dir():
        raise CorpusError(f"{subset_dir} is missing: run stage 0 with this subset "
                          f"(--get-corpus-opts \"--subsets '... {subset}'\")")
    found = sorted(c for s in subset_dir.iterdir() if s.is_dir() for c in s.iterdir() if c.is_dir())
    if not found:
        raise CorpusError(f"{subset_dir} has no <speaker>/<chapter> directories: the extraction is incomplete; "
                          f"remove it and rerun stage 0")
    return found


def check_layout(db_dir: Path, subsets: Sequence[str]) -> str:
    """Raise CorpusError unless every subset is whole: each transcript line has its flac."""
    root = find_root(db_dir)
    total = 0
    for subset in subsets:
        split_of(subset)
        for chapter in chapters(root, subset):
            trans = chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt"
            if not trans.is_file():
                raise CorpusError(f"{trans} is missing: the corpus is incomplete; "
                                  f"remove {root / subset} and rerun stage 0")
            for line in trans.read_text(encoding="utf-8").splitlines():
                utt = line.split(maxsplit=1)[0] if line.strip() else ""
                if utt and not (chapter / f"{utt}.flac").is_file():
                    raise CorpusError(f"{chapter / (utt + '.flac')} (listed in {trans.name}) is missing: remove "
                                      f"{root / subset} and rerun stage 0")
                total += bool(utt)
    return f"{root}: {' '.join(subsets)}: {total} utterances"


def read_genders(path: Path) -> Dict[str, str]:
    """{speaker: m|f} from SPEAKERS.TXT; names may contain '|', so split at most 4 times."""
    genders: Dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) >= 2 and fields[1].upper() in ("M", "F"):
            genders[fields[0]] = fields[1].lower()
    return genders


def scan(root: Path, subset: str, speaker_unit: str) -> List[Utt]:
    utts = []
    for chapter in chapters(root, subset):
        trans = chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt"
        if not trans.is_file():
            raise CorpusError(f"{trans} is missing: rerun stage 0")
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            flac = chapter / f"{utt}.flac"
            if not flac.is_file():
                raise CorpusError(f"{flac} (listed in {trans}) is missing: rerun stage 0")
            info = soundfile.info(str(flac))
            if info.frames == 0:
                logging.warning("%s is empty; skipped", flac)
                continue
            person, chapter_id = utt.split("-")[:2]
            spk = f"{person}-{chapter_id}" if speaker_unit == "chapter" else person
            utts.append(Utt(utt, spk, person, flac.resolve(), " ".join(text.split()), info.frames / info.samplerate))
    return utts


def person_units(utts: List[Utt], genders: Dict[str, str], num_persons: int) -> Dict[str, Tuple[str, List[str]]]:
    """``num_persons`` persons (gender-balanced), each with the speaker unit that stands for it (the one with
    the most utterances; ties: the first id) and that unit's sorted utterances."""
    units: Dict[str, Dict[str, List[str]]] = {}
    for u in utts:
        units.setdefault(u.person, {}).setdefault(u.spk, []).append(u.utt)
    chosen = {}
    for person in pick_balanced(list(units), genders, num_persons):
        spk, utts = sorted(units[person].items(), key=lambda kv: (-len(kv[1]), kv[0].encode()))[0]
        chosen[person] = (spk, c_sorted(utts))
    return chosen


def conversion_pairs(eval_utts: List[Utt], genders: Dict[str, str], num_speakers: int, num_utts: int,
                     targets: Optional[List[str]] = None) -> List[str]:
    """``source_utt target_spk -`` lines from ``num_speakers`` eval persons to ``targets`` (seen-target
    pairs), or, without ``targets``, to every other of those persons (zero-shot pairs)."""
    units = person_units(eval_utts, genders, num_speakers)
    sources = {spk: utts[:num_utts] if num_utts > 0 else utts for spk, utts in units.values()}
    if targets is None:
        person_of = {spk: person for person, (spk, _) in units.items()}
        lines = []
        for spk, utts in sources.items():
            lines.extend(f"{utt} {target} -" for utt in utts for target in sources
                         if person_of[target] != person_of[spk])
        return c_sorted(lines)
    return seen_target_pairs(sources, targets)


def data_dir_files(utts: List[Utt], genders: Dict[str, str]) -> Dict[str, List[str]]:
    """{file name: lines} of one Kaldi data dir, with spk2gender when SPEAKERS.TXT has them all."""
    files = data_dir_tables(utts, lambda u: resampling_pipe(u.path))
    person_of = {u.spk: u.person for u in utts}
    speakers = [line.split(" ", 1)[0] for line in files["spk2utt"]]
    if all(person_of[spk] in genders for spk in speakers):  # Kaldi wants every speaker or no file
        files["spk2gender"] = [f"{spk} {genders[person_of[spk]]}" for spk in speakers]
    else:
        logging.warning("SPEAKERS.TXT lacks some speakers' gender: spk2gender not written")
    return files


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--subsets", default="",
                        help="subsets to use (default: those stage 0 got, from <db-dir>/.complete)")
    parser.add_argument("--speaker-unit", choices=("chapter", "speaker"), default="chapter",
                        help="speaker id: SPK-CHAPTER (Kaldi's recipe) or SPK")
    parser.add_argument("--num-pair-speakers", type=int, default=8, help="eval speakers in eval/pairs (0: all)")
    parser.add_argument("--num-pair-utts", type=int, default=5, help="source utterances per pair speaker (0: all)")
    add_seen_target_args(parser)
    parser.add_argument("--check-layout", action="store_true", help="only check that the subsets are whole")
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    parser.add_argument("db_dir", type=Path, help="the corpus (stage 0)")
    parser.add_argument("data_dir", type=Path, nargs="?", help="where to write train/dev/eval")
    return parser


def prepare(args: argparse.Namespace) -> None:
    root = find_root(args.db_dir)
    genders = read_genders(root / "SPEAKERS.TXT")
    subsets = subsets_of(args.db_dir, args.subsets)
    splits: Dict[str, List[Utt]] = {name: [] for name in SPLITS}
    for subset in subsets:
        utts = scan(root, subset, args.speaker_unit)
        splits[split_of(subset)].extend(utts)
        logging.info("%s: %d utterances -> %s", subset, len(utts), split_of(subset))
    for name in SPLITS:
        if not splits[name]:
            prefix = next(p for p, s in SPLIT_OF_PREFIX.items() if s == name)
            raise CorpusError(f"no {prefix}-* subset among '{' '.join(subsets)}', so {name} would be empty: add one "
                              f"to --subsets of stage 0 and stage 1")
    targets = None
    if args.pair_targets == "seen":
        target_units = person_units(splits["train"], genders, args.num_pair_targets)
        targets = c_sorted([spk for spk, _ in target_units.values()])
        pair_sources = list(splits["eval"])
        hold_out_targets(splits, targets, args)
    else:
        pair_sources = splits["eval"]
    all_files = {name: data_dir_files(splits[name], genders) for name in SPLITS}
    all_files["eval"]["pairs"] = conversion_pairs(pair_sources, genders, args.num_pair_speakers, args.num_pair_utts,
                                                  targets)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        write_data_dir(args.data_dir / name, all_files[name])
        logging.info("%s: %d utterances, %d speakers", args.data_dir / name, len(all_files[name]["utt2spk"]),
                     len(all_files[name]["spk2utt"]))
    logging.info("%s: %d conversion pairs (non-parallel: no references)", args.data_dir / "eval" / "pairs",
                 len(all_files["eval"]["pairs"]))


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        if args.check_layout:
            logging.info("%s", check_layout(args.db_dir, subsets_of(args.db_dir, args.subsets)))
            return
        if args.data_dir is None:
            raise CorpusError("no <data-dir> given")
        prepare(args)
    except (CorpusError, PairError, OSError, RuntimeError) as error:  # soundfile raises RuntimeError subclasses
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")


if __name__ == "__main__":
    main()
