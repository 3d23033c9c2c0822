#!/usr/bin/env python3
"""Kaldi data dirs (train/dev/eval) and eval conversion pairs for the Flickr 8k Audio Caption Corpus.

Layout read (flickr_audio.tar.gz, extracted into <db-dir>):
    flickr_audio/wavs/<image>_<n>.wav     one spoken caption (caption n of the image)
    flickr_audio/wav2spk.txt              "<wav> <speaker number>"
    flickr_audio/wav2capt.txt             "<wav> <image>.jpg #<n>"  (which caption was read)
and, when present, the caption texts of Flickr8k_text.zip (not part of the audio archive):
    Flickr8k.token.txt                    "<image>.jpg#<n><TAB><caption>"
looked up with ``--captions``, else in <db-dir>/, <db-dir>/Flickr8k_text/, <db-dir>/flickr_audio/.

Speakers: ``--speakers "4 7"`` (the one-to-one pair of the VAE-GAN seed), or ``--num-speakers N``
for the N speakers with most utterances (many-to-many). Speaker ids are ``spkNNN`` (zero-padded,
so byte order is numeric order) and utterance ids ``spkNNN-<wav name>``.

Split by utterance within each speaker (every speaker in every split, as one generator per
speaker needs): in sorted order, the last ``--eval-percent`` per cent (at least one) go to eval,
the ``--dev-percent`` per cent before them to dev, the rest to train: 80/10/10 by default, the
VAE-GAN seed's split. ``--num-eval-utts`` / ``--num-dev-utts`` > 0 ask for fixed counts instead.
Captions differ between speakers, so the corpus is not parallel and eval/pairs lines are
``source_utt target_spk -``.

Without caption texts, no ``text`` file is written (Kaldi treats it as optional) and a warning
says how to add it.

Example:
    python3 local/flickr8k/data_prep.py --speakers "4 7" db/flickr8k data
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import soundfile

from voiceswap.data.kaldi_dir import c_sorted, data_dir_tables, resampling_pipe, write_data_dir

SPLITS = ("train", "dev", "eval")


class CorpusError(ValueError):
    """A corpus that is missing, incomplete, or too small for the asked splits."""


@dataclass
class Utt:
    utt: str
    spk: str
    path: Path
    text: Optional[str]
    duration: float


def find_root(db_dir: Path) -> Path:
    for root in (db_dir / "flickr_audio", db_dir):
        if (root / "wav2spk.txt").is_file() and (root / "wavs").is_dir():
            return root
    raise CorpusError(f"{db_dir} holds no Flickr 8k Audio Caption Corpus (no flickr_audio/wav2spk.txt and "
                      f"flickr_audio/wavs/): run stage 0 (local/flickr8k/get_corpus.sh {db_dir})")


def read_wav2spk(root: Path) -> Dict[str, int]:
    path = root / "wav2spk.txt"
    wav2spk: Dict[str, int] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise CorpusError(f"{path}:{line_number}: expected '<wav> <speaker number>', got '{line}'")
        wav2spk[fields[0]] = int(fields[1])
    if not wav2spk:
        raise CorpusError(f"{path} is empty: the corpus is incomplete; remove it and rerun stage 0")
    return wav2spk


def check_layout(db_dir: Path) -> str:
    root = find_root(db_dir)
    wav2spk = read_wav2spk(root)
    present = sum((root / "wavs" / wav).is_file() for wav in wav2spk)
    if present == 0:
        raise CorpusError(f"{root / 'wavs'} holds none of the files wav2spk.txt lists: the extraction is "
                          f"incomplete; remove {db_dir} and rerun stage 0")
    return f"{root}: {present} of {len(wav2spk)} wavs, {len(set(wav2spk.values()))} speakers"


def find_captions(db_dir: Path, root: Path, option: str) -> Optional[Path]:
    if option:
        if not Path(option).is_file():
            raise CorpusError(f"--captions {option} does not exist "
                              "(expected Flickr8k.token.txt from Flickr8k_text.zip)")
        return Path(option)
    for candidate in (db_dir / "Flickr8k.token.txt", db_dir / "Flickr8k_text" / "Flickr8k.token.txt",
                      root / "Flickr8k.token.txt"):
        if candidate.is_file():
            return candidate
    return None


def read_captions(root: Path, token_file: Path) -> Dict[str, str]:
    """{wav name: caption}: wav2capt.txt says which caption a wav reads (else its name does:
    <image>_<n>.wav reads caption #n of <image>.jpg); the token file holds the caption texts."""
    texts: Dict[str, str] = {}
    for line in token_file.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, caption = line.partition("\t")
        if caption.strip():
            texts[key.strip()] = " ".join(caption.split())
    wav2capt: Dict[str, str] = {}
    capt_file = root / "wav2capt.txt"
    if capt_file.is_file():
        for line in capt_file.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) == 3:
                wav2capt[fields[0]] = f"{fields[1]}{fields[2]}"  # "x.jpg" + "#0"
    captions: Dict[str, str] = {}
    for wav in {*wav2capt, *(p.name for p in (root / "wavs").glob("*.wav"))}:
        key = wav2capt.get(wav)
        if key is None:
            stem, _, number = Path(wav).stem.rpartition("_")
            key = f"{stem}.jpg#{number}"
        if key in texts:
            captions[wav] = texts[key]
    return captions


def choose_speakers(wav2spk: Dict[str, int], speakers: str, num_speakers: int) -> List[int]:
    counts: Dict[int, int] = {}
    for spk in wav2spk.values():
        counts[spk] = counts.get(spk, 0) + 1
    if num_speakers > 0:
        if num_speakers > len(counts):
            raise CorpusError(f"--num-speakers {num_speakers}: the corpus has only {len(counts)} speakers")
        return sorted(sorted(counts, key=lambda s: (-counts[s], s))[:num_speakers])
    try:
        chosen = sorted({int(s) for s in speakers.replace(",", " ").split()})
    except ValueError:
        raise CorpusError(f"--speakers '{speakers}': give speaker numbers as in wav2spk.txt, e.g. \"4 7\"") from None
    unknown = [s for s in chosen if s not in counts]
    if unknown or len(chosen) < 2:
        raise CorpusError(f"--speakers '{speakers}': need at least two of the corpus's speakers "
                          f"({min(counts)}..{max(counts)}); unknown: {' '.join(map(str, unknown)) or 'none'}")
    return chosen


def held_out(total: int, count: int, percent: float) -> int:
    """Utterances of a speaker's ``total`` for dev or eval: ``count`` if > 0, else ``percent`` of them (at least 1)."""
    return count if count > 0 else max(1, round(total * percent / 100))


def split_utterances(utts: List[Utt], num_dev: int, num_eval: int, dev_percent: float = 10.0,
                     eval_percent: float = 10.0) -> Dict[str, List[Utt]]:
    by_spk: Dict[str, List[Utt]] = {}
    for u in utts:
        by_spk.setdefault(u.spk, []).append(u)
    splits: Dict[str, List[Utt]] = {name: [] for name in SPLITS}
    requested_dev, requested_eval = num_dev, num_eval
    for spk, own in sorted(by_spk.items()):
        own = sorted(own, key=lambda u: u.utt.encode())
        num_dev = held_out(len(own), requested_dev, dev_percent)
        num_eval = held_out(len(own), requested_eval, eval_percent)
        if len(own) < num_dev + num_eval + 1:
            raise CorpusError(f"speaker {spk} has {len(own)} utterances; {num_dev} dev + {num_eval} eval + training "
                              "need more: ask for fewer (--num-dev-utts, --num-eval-utts, --dev-percent, "
                              "--eval-percent) or other speakers")
        num_train = len(own) - num_dev - num_eval
        splits["train"] += own[:num_train]
        splits["dev"] += own[num_train:num_train + num_dev]
        splits["eval"] += own[num_train + num_dev:]
    return splits


def conversion_pairs(eval_utts: List[Utt], num_utts: int) -> List[str]:
    """``source_utt target_spk -`` for every ordered speaker pair (no parallel references)."""
    by_spk: Dict[str, List[str]] = {}
    for u in eval_utts:
        by_spk.setdefault(u.spk, []).append(u.utt)
    lines = []
    for source, utts in by_spk.items():
        utts = c_sorted(utts)
        for utt in utts[:num_utts] if num_utts > 0 else utts:
            lines.extend(f"{utt} {target} -" for target in by_spk if target != source)
    return c_sorted(lines)


def data_dir_files(utts: List[Utt]) -> Dict[str, List[str]]:
    """{file name: lines} of one Kaldi data dir (no spk2gender: the corpus does not give genders)."""
    return data_dir_tables(utts, lambda u: resampling_pipe(u.path))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--speakers", default="4 7", help="speaker numbers of wav2spk.txt (one-to-one: two)")
    parser.add_argument("--num-speakers", type=int, default=0,
                        help="if > 0: the N speakers with most utterances instead of --speakers")
    parser.add_argument("--num-dev-utts", type=int, default=0, help="dev utterances per speaker (0: --dev-percent)")
    parser.add_argument("--num-eval-utts", type=int, default=0, help="eval utterances per speaker (0: --eval-percent)")
    parser.add_argument("--dev-percent", type=float, default=10.0, help="per cent of each speaker's utterances for dev")
    parser.add_argument("--eval-percent", type=float, default=10.0,
                        help="per cent of each speaker's utterances for eval")
    parser.add_argument("--num-pair-utts", type=int, default=0,
                        help="source utterances per speaker in eval/pairs (0: all)")
    parser.add_argument("--captions", default="", help="Flickr8k.token.txt (default: looked for in <db-dir>)")
    parser.add_argument("--check-layout", action="store_true", help="only check the corpus layout and exit")
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    parser.add_argument("db_dir", type=Path, help="the corpus (stage 0)")
    parser.add_argument("data_dir", type=Path, nargs="?", help="where to write train/dev/eval")
    return parser


def prepare(args: argparse.Namespace) -> None:
    if args.num_dev_utts < 0 or args.num_eval_utts < 0:
        raise CorpusError("--num-dev-utts and --num-eval-utts must be at least 0 "
                          "(0: use --dev-percent, --eval-percent)")
    if not (0 < args.dev_percent < 100 and 0 < args.eval_percent < 100 and args.dev_percent + args.eval_percent < 100):
        raise CorpusError(f"--dev-percent {args.dev_percent} and --eval-percent {args.eval_percent} must be above 0 "
                          "and leave some for training (e.g. 10 and 10: the 80/10/10 split)")
    root = find_root(args.db_dir)
    wav2spk = read_wav2spk(root)
    speakers = choose_speakers(wav2spk, args.speakers, args.num_speakers)
    token_file = find_captions(args.db_dir, root, args.captions)
    captions = read_captions(root, token_file) if token_file else None
    utts: List[Utt] = []
    missing = 0
    for wav, number in sorted(wav2spk.items()):
        if number not in speakers:
            continue
        path = root / "wavs" / wav
        if not path.is_file():
            missing += 1
            continue
        info = soundfile.info(str(path))
        if info.frames == 0:
            logging.warning("%s is empty; skipped", path)
            continue
        spk = f"spk{number:03d}"
        text = captions.get(wav) if captions is not None else None
        if captions is not None and text is None:
            logging.warning("%s: no caption in %s; skipped", wav, token_file)
            continue
        utts.append(Utt(f"{spk}-{Path(wav).stem}", spk, path.resolve(), text, info.frames / info.samplerate))
    if missing:
        logging.warning("%d wav(s) listed in wav2spk.txt are missing from %s; skipped", missing, root / "wavs")
    if captions is None:
        logging.warning("no Flickr8k.token.txt (caption texts, from Flickr8k_text.zip): no 'text' file written; "
                        "put it in %s or give --captions", args.db_dir)
    splits = split_utterances(utts, args.num_dev_utts, args.num_eval_utts, args.dev_percent, args.eval_percent)
    all_files = {name: data_dir_files(splits[name]) for name in SPLITS}
    all_files["eval"]["pairs"] = conversion_pairs(splits["eval"], args.num_pair_utts)
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
            logging.info("%s", check_layout(args.db_dir))
            return
        if args.data_dir is None:
            raise CorpusError("no <data-dir> given")
        prepare(args)
    except (CorpusError, OSError, RuntimeError) as error:  # soundfile raises RuntimeError subclasses
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")


if __name__ == "__main__":
    main()
