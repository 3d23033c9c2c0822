#!/usr/bin/env python3
"""Kaldi data dirs (train/dev/eval) and eval conversion pairs for VCTK 0.92.

Layout read (the 0.92 zip, extracted into <db-dir> or <db-dir>/VCTK-Corpus-0.92):
    wav48_silence_trimmed/<spk>/<spk>_<NNN>_<mic>.flac   48 kHz flac, mic1 or mic2
    txt/<spk>/<spk>_<NNN>.txt                           the prompt
    speaker-info.txt                                    ID AGE GENDER ACCENTS REGION ...

Speaker ids are the corpus's (pNNN, and s5); utterance ids are ``<spk>-<NNN>`` so that sorting by
speaker and by utterance agree. wav.scp resamples to 16 kHz mono with a ``sox -R ... |`` pipe
(-R: repeatable dither, so features are the same on every run); the corpus stays as it is.

Splits (``--split``):
  utterance  every speaker in every split, split by SENTENCE: the ``--num-eval-sentences`` prompts
             read by the most speakers go to eval, the next ``--num-dev-sentences`` to dev, all
             other utterances to train; no eval or dev sentence is heard in training, and eval
             holds parallel references (VCTK's shared elicitation paragraph).
  speaker    speaker-disjoint: ``--eval-speakers``/``--dev-speakers``, or that many speakers picked
             gender-balanced from the end of the sorted list; every utterance of a speaker goes to
             its split.

Utterances without a transcript (speaker p315 has none in 0.92; a few files elsewhere) are left
out with a warning unless ``--keep-untranscribed true`` (then their text is empty). Text without
audio for the chosen mic (p280 has no mic2 files) is skipped and counted.

<data-dir>/eval/pairs: ``source_utt target_spk reference_utt``, ``--num-pair-utts`` sources per source
speaker, preferring sentences the targets read too; the reference is the target speaker's eval
utterance with the same text, or ``-`` where there is none. Utterance split: among
``--num-eval-speakers`` gender-balanced speakers. Speaker split: from the eval speakers to
(``--pair-targets``)
  seen  (default) ``--num-pair-targets`` train speakers (gender-balanced), each with
        ``--num-target-ref-utts`` utterances moved from train to eval (the sources' sentences first,
        so they are parallel references; no training sees them; stage 9's centroids come from them);
  eval  the other eval speakers (zero-shot: only for a model that takes its target from a recording).

Example:
    python3 local/vctk/data_prep.py --mic mic1 --split speaker db/vctk data
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import soundfile

from voiceswap.data.kaldi_dir import c_sorted, data_dir_tables, resampling_pipe, write_data_dir
from voiceswap.data.pairs import PairError, add_seen_target_args, hold_out_targets, seen_target_pairs

SPLITS = ("train", "dev", "eval")
WAV_DIR = "wav48_silence_trimmed"


class CorpusError(ValueError):
    """A corpus that is missing, in another layout, or too small for the asked splits."""


@dataclass
class Utt:
    utt: str
    spk: str
    path: Path
    text: str
    duration: float


def normalise(text: str) -> str:
    """Text for matching parallel sentences: case and punctuation vary between speakers' files."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def find_root(db_dir: Path) -> Path:
    """The directory holding txt/ and wav48_silence_trimmed/ (the zip has no top-level dir, but a
    user may have unpacked it into VCTK-Corpus-0.92/)."""
    for root in (db_dir, db_dir / "VCTK-Corpus-0.92"):
        if (root / WAV_DIR).is_dir() and (root / "txt").is_dir():
            return root
    if (db_dir / "wav48").is_dir():
        raise CorpusError(f"{db_dir} holds the old VCTK 0.80 layout (wav48/); this recipe reads VCTK 0.92 "
                          f"({WAV_DIR}/*.flac): run stage 0 without --db-dir to download it")
    raise CorpusError(f"{db_dir} holds no VCTK 0.92 corpus (no {WAV_DIR}/ and txt/ in it or in "
                      f"{db_dir}/VCTK-Corpus-0.92): run stage 0 (local/vctk/get_corpus.sh {db_dir})")


def check_layout(db_dir: Path, mic: str) -> str:
    """Raise CorpusError unless the 0.92 layout is there; return a one-line summary."""
    root = find_root(db_dir)
    speakers = [d.name for d in (root / WAV_DIR).iterdir() if d.is_dir()]
    if not speakers:
        raise CorpusError(f"{root / WAV_DIR} has no speaker directories: the extraction is incomplete; "
                          f"remove {db_dir} and rerun stage 0")
    with_audio = [s for s in speakers if any((root / WAV_DIR / s).glob(f"{s}_*_{mic}.flac"))]
    if not with_audio:
        raise CorpusError(f"{root / WAV_DIR}: no *_{mic}.flac file for any speaker: wrong --mic, or an "
                          f"incomplete corpus (remove {db_dir} and rerun stage 0)")
    if not (root / "speaker-info.txt").is_file():
        raise CorpusError(f"{root / 'speaker-info.txt'} is missing: the corpus is incomplete; remove "
                          f"{db_dir} and rerun stage 0")
    return f"{root}: {len(speakers)} speakers, {len(with_audio)} with {mic} audio"


def read_genders(path: Path) -> Dict[str, str]:
    """{speaker: m|f} from speaker-info.txt (``ID AGE GENDER ...``; 0.80 wrote ids without 'p')."""
    genders: Dict[str, str] = {}
    if not path.is_file():
        return genders
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].upper() == "ID":
            continue
        spk = f"p{fields[0]}" if fields[0].isdigit() else fields[0]
        if fields[2].upper() in ("M", "F"):
            genders[spk] = fields[2].lower()
    return genders


def scan(root: Path, mic: str, keep_untranscribed: bool) -> List[Utt]:
    """Every usable utterance, sorted by id."""
    utts: List[Utt] = []
    untranscribed: Dict[str, int] = {}
    no_audio = 0
    pattern = re.compile(rf"^(?P<spk>[A-Za-z0-9]+)_(?P<num>[0-9]+)_{re.escape(mic)}\.flac$")
    for spk_dir in sorted((root / WAV_DIR).iterdir()):
        if not spk_dir.is_dir():
            continue
        spk = spk_dir.name
        audio_nums = set()
        for flac in sorted(spk_dir.iterdir()):
            match = pattern.match(flac.name)
            if not match or match["spk"] != spk:
                continue
            num = match["num"]
            audio_nums.add(num)
            txt = root / "txt" / spk / f"{spk}_{num}.txt"
            if txt.is_file():
                text = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
            elif keep_untranscribed:
                text = ""
            else:
                untranscribed[spk] = untranscribed.get(spk, 0) + 1
                continue
            info = soundfile.info(str(flac))
            if info.frames == 0:
                logging.warning("%s is empty; skipped", flac)
                continue
            utts.append(Utt(f"{spk}-{num}", spk, flac.resolve(), text, info.frames / info.samplerate))
        txt_dir = root / "txt" / spk
        if txt_dir.is_dir():
            no_audio += sum(1 for t in txt_dir.glob(f"{spk}_*.txt") if t.stem.split("_")[-1] not in audio_nums)
    for spk, count in sorted(untranscribed.items()):
        logging.warning("%s: %d utterance(s) without a transcript left out (--keep-untranscribed true keeps "
                        "them with empty text)", spk, count)
    if no_audio:
        logging.info("%d transcript(s) have no %s audio; skipped", no_audio, mic)
    if not utts:
        raise CorpusError(f"{root}: no utterance with {mic} audio and a transcript: check --mic")
    return sorted(utts, key=lambda u: u.utt.encode())


def pick_balanced(speakers: Sequence[str], genders: Dict[str, str], count: int) -> List[str]:
    """``count`` speakers from the end of the sorted list, alternating genders, deterministically."""
    groups: Dict[str, List[str]] = {}
    for spk in c_sorted(list(speakers)):
        groups.setdefault(genders.get(spk, "?"), []).append(spk)
    picked: List[str] = []
    while len(picked) < count and any(groups.values()):
        for gender in sorted(groups):
            if groups[gender] and len(picked) < count:
                picked.append(groups[gender].pop())
    return c_sorted(picked)


def parse_speakers(text: str, known: Sequence[str], option: str) -> List[str]:
    speakers = text.replace(",", " ").split()
    unknown = [s for s in speakers if s not in known]
    if unknown:
        raise CorpusError(f"{option}: unknown speaker(s) {' '.join(unknown)}; the corpus has "
                          f"{' '.join(c_sorted(list(known))[:8])} ...")
    return c_sorted(speakers)


def split_by_sentence(utts: List[Utt], num_dev: int, num_eval: int) -> Dict[str, List[Utt]]:
    """Prompts read by the most speakers -> eval, the next -> dev, the rest -> train."""
    readers: Dict[str, set] = {}
    for u in utts:
        if u.text:
            readers.setdefault(normalise(u.text), set()).add(u.spk)
    ranked = sorted(readers, key=lambda t: (-len(readers[t]), t))
    if len(ranked) < num_dev + num_eval + 1:
        raise CorpusError(f"the corpus has {len(ranked)} distinct sentences; {num_dev} dev + {num_eval} eval "
                          "+ training sentences need more: ask for fewer (--num-dev-sentences, --num-eval-sentences)")
    eval_texts = set(ranked[:num_eval])
    dev_texts = set(ranked[num_eval:num_eval + num_dev])
    splits: Dict[str, List[Utt]] = {name: [] for name in SPLITS}
    for u in utts:
        key = normalise(u.text) if u.text else None
        splits["eval" if key in eval_texts else "dev" if key in dev_texts else "train"].append(u)
    return splits


def source_utterances(utts: List[Utt], sources: List[str], targets: List[str], texts_of_targets: Dict[str, set],
                      num_pair_utts: int) -> Dict[str, List[Utt]]:
    """``num_pair_utts`` utterances of each source speaker (0: all), preferring sentences the targets read."""
    chosen = {}
    for source in sources:
        others = [t for t in targets if t != source]
        candidates = sorted((u for u in utts if u.spk == source),
                            key=lambda u: (-sum(normalise(u.text) in texts_of_targets.get(t, set()) for t in others)
                                           if u.text else 0, u.utt))
        chosen[source] = candidates[:num_pair_utts] if num_pair_utts > 0 else candidates
    return chosen


def texts_by_speaker(utts: List[Utt]) -> Dict[str, set]:
    texts: Dict[str, set] = {}
    for u in utts:
        if u.text:
            texts.setdefault(u.spk, set()).add(normalise(u.text))
    return texts


def conversion_pairs(eval_utts: List[Utt], sources: List[str], num_pair_utts: int,
                     targets: Optional[List[str]] = None) -> List[str]:
    """``source target reference`` lines from ``sources`` to ``targets`` (default: the sources themselves);
    reference = the target's eval utterance of the same text, or -."""
    targets = sources if targets is None else targets
    by_text = {(u.spk, normalise(u.text)): u.utt for u in eval_utts if u.text}
    chosen = source_utterances(eval_utts, sources, targets, texts_by_speaker(eval_utts), num_pair_utts)
    text_of = {u.utt: normalise(u.text) for u in eval_utts if u.text}
    return seen_target_pairs({spk: [u.utt for u in utts] for spk, utts in chosen.items()}, targets,
                             lambda utt, target: by_text.get((target, text_of[utt])) if utt in text_of else None)


def data_dir_files(utts: List[Utt], genders: Dict[str, str]) -> Dict[str, List[str]]:
    """{file name: lines} of one Kaldi data dir, with spk2gender when speaker-info.txt has them all."""
    files = data_dir_tables(utts, lambda u: resampling_pipe(u.path))
    speakers = [line.split(" ", 1)[0] for line in files["spk2utt"]]
    if all(spk in genders for spk in speakers):  # Kaldi wants every speaker or no file at all
        files["spk2gender"] = [f"{spk} {genders[spk]}" for spk in speakers]
    else:
        logging.warning("no gender for %s in speaker-info.txt: spk2gender not written",
                        " ".join(s for s in speakers if s not in genders))
    return files


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mic", choices=("mic1", "mic2"), default="mic1", help="which microphone's audio")
    parser.add_argument("--split", choices=("utterance", "speaker"), default="utterance",
                        help="utterance: every speaker everywhere, sentence-disjoint; speaker: speaker-disjoint")
    parser.add_argument("--num-dev-sentences", type=int, default=10, help="utterance split: dev sentences")
    parser.add_argument("--num-eval-sentences", type=int, default=10, help="utterance split: eval sentences")
    parser.add_argument("--num-dev-speakers", type=int, default=4, help="speaker split: dev speakers")
    parser.add_argument("--num-eval-speakers", type=int, default=8,
                        help="speaker split: eval speakers; utterance split: speakers in eval/pairs")
    parser.add_argument("--dev-speakers", default="", help="speaker split: explicit dev speakers")
    parser.add_argument("--eval-speakers", default="", help="explicit eval (and pair) speakers")
    parser.add_argument("--num-pair-utts", type=int, default=5,
                        help="source utterances per speaker in eval/pairs (0: all)")
    add_seen_target_args(parser)
    parser.add_argument("--keep-untranscribed", choices=("true", "false"), default="false",
                        help="keep utterances without a transcript (empty text)")
    parser.add_argument("--check-layout", action="store_true", help="only check the corpus layout and exit")
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    parser.add_argument("db_dir", type=Path, help="the corpus (stage 0)")
    parser.add_argument("data_dir", type=Path, nargs="?", help="where to write train/dev/eval")
    return parser


def prepare(args: argparse.Namespace) -> None:
    root = find_root(args.db_dir)
    genders = read_genders(root / "speaker-info.txt")
    utts = scan(root, args.mic, args.keep_untranscribed == "true")
    speakers = c_sorted(list({u.spk for u in utts}))
    eval_speakers = (parse_speakers(args.eval_speakers, speakers, "--eval-speakers") if args.eval_speakers
                     else pick_balanced(speakers, genders, args.num_eval_speakers))
    if args.split == "speaker":
        rest = [s for s in speakers if s not in eval_speakers]
        dev_speakers = (parse_speakers(args.dev_speakers, speakers, "--dev-speakers") if args.dev_speakers
                        else pick_balanced(rest, genders, args.num_dev_speakers))
        if set(dev_speakers) & set(eval_speakers):
            raise CorpusError(f"speakers {' '.join(sorted(set(dev_speakers) & set(eval_speakers)))} are in both "
                              "--dev-speakers and --eval-speakers")
        if not dev_speakers or not eval_speakers or len(speakers) <= len(dev_speakers) + len(eval_speakers):
            raise CorpusError(f"{len(speakers)} speakers cannot give {len(dev_speakers)} dev + {len(eval_speakers)} "
                              "eval speakers and a training set: ask for fewer")
        splits = {"dev": [u for u in utts if u.spk in dev_speakers],
                  "eval": [u for u in utts if u.spk in eval_speakers],
                  "train": [u for u in utts if u.spk not in dev_speakers and u.spk not in eval_speakers]}
    else:
        splits = split_by_sentence(utts, args.num_dev_sentences, args.num_eval_sentences)
    for name in SPLITS:
        if not splits[name]:
            raise CorpusError(f"the {args.split} split leaves {name} empty: check the split options")
    pair_speakers = [s for s in eval_speakers if any(u.spk == s for u in splits["eval"])]
    targets = None
    if args.split == "speaker" and args.pair_targets == "seen":
        train_speakers = c_sorted(list({u.spk for u in splits["train"]}))
        targets = pick_balanced(train_speakers, genders, min(args.num_pair_targets, len(train_speakers)))
        # Hold out the targets' readings of the sources' sentences first: parallel references.
        chosen = source_utterances(splits["eval"], pair_speakers, targets, texts_by_speaker(splits["train"]),
                                   args.num_pair_utts)
        wanted = {normalise(u.text) for utts in chosen.values() for u in utts if u.text}
        hold_out_targets(splits, targets, args, prefer=lambda u: bool(u.text) and normalise(u.text) in wanted)
    all_files = {name: data_dir_files(splits[name], genders) for name in SPLITS}
    all_files["eval"]["pairs"] = conversion_pairs(splits["eval"], pair_speakers, args.num_pair_utts, targets)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        write_data_dir(args.data_dir / name, all_files[name])
        logging.info("%s: %d utterances, %d speakers", args.data_dir / name, len(all_files[name]["utt2spk"]),
                     len(all_files[name]["spk2utt"]))
    pairs = all_files["eval"]["pairs"]
    logging.info("%s: %d conversion pairs (%d with a parallel reference)", args.data_dir / "eval" / "pairs",
                 len(pairs), sum(not line.endswith(" -") for line in pairs))


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        if args.check_layout:
            logging.info("%s", check_layout(args.db_dir, args.mic))
            return
        if args.data_dir is None:
            raise CorpusError("no <data-dir> given")
        prepare(args)
    except (CorpusError, PairError, OSError, RuntimeError) as error:  # soundfile raises RuntimeError subclasses
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")


if __name__ == "__main__":
    main()
