#!/usr/bin/env python3
"""Kaldi data dirs (train/dev/eval) and eval conversion pairs for the synth corpus.

The split is by SENTENCE: with sentence ids in order, the last
`--num-eval-sentences` go to eval, the `--num-dev-sentences` before them to
dev, the rest to train, each with every speaker. No dev or eval sentence is
heard in training for any speaker, and every speaker is in every split, so
converted eval speech can be compared with the target speaker saying the same
sentence (a parallel reference).

Each of <data-dir>/{train,dev,eval}/ gets wav.scp, utt2spk, spk2utt, text,
utt2dur, spk2gender and phones.ctm (`utt 1 start dur phone`), sorted in
LC_ALL=C byte order; <data-dir>/eval/pairs lists `source_utt target_spk
reference_utt` for every ordered pair of distinct speakers on the first
`--num-pair-sentences` eval sentences. Each split dir is written beside its
final place and renamed into it, so a reader never sees half of one.

With --heldout-speakers, those speakers are left out of train and dev
entirely (a speaker-disjoint test of unseen voices) and appear in eval only,
every eval sentence as a source. eval/pairs then holds, on the same pair
sentences, the pairs among the seen speakers (as above), every held-out
source converted to every seen speaker (targets a model with a speaker table
knows), and, with
--heldout-pairs zero-shot, also every source (seen or held out) converted to
each held-out speaker, whose reading of the same sentence is the reference
(for any-to-any models that take the target from a reference utterance).

Example:
    python3 local/synth/data_prep.py --num-dev-sentences 10 --num-eval-sentences 10 \
        --num-pair-sentences 5 db/synth data
    python3 local/synth/data_prep.py --heldout-speakers "kalw116 esf2w76" --heldout-pairs zero-shot \
        db/synth data
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import soundfile

from voiceswap.data.kaldi_dir import c_sorted, write_data_dir
from voiceswap.data.pairs import PairError, seen_target_pairs

import voices

SPLITS = ("train", "dev", "eval")


class CorpusError(ValueError):
    """The corpus is missing, incomplete or too small for the asked splits."""


def read_complete_stamp(db_dir: Path) -> Dict[str, str]:
    """The parameters get_corpus.sh wrote to <db-dir>/.complete once the corpus was verified."""
    stamp = db_dir / ".complete"
    if not stamp.is_file():
        raise CorpusError(
            f"{db_dir} holds no complete synth corpus ({stamp} is missing): "
            f"run stage 0 first (local/synth/get_corpus.sh {db_dir})"
        )
    params = {}
    for line in stamp.read_text().splitlines():
        key, _, value = line.partition(" ")
        params[key] = value
    if "speakers" not in params:
        raise CorpusError(f"{stamp} names no speakers: rerun stage 0 (local/synth/get_corpus.sh {db_dir})")
    return params


def read_sentences(path: Path) -> Dict[str, str]:
    sentences = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        sentence_id, _, text = line.partition(" ")
        sentences[sentence_id] = text.strip()
    return sentences


def split_sentences(
    sentence_ids: Sequence[str], num_dev: int, num_eval: int
) -> Dict[str, List[str]]:
    """Last num_eval ids -> eval, the num_dev before them -> dev, the rest -> train."""
    ids = sorted(sentence_ids)
    needed = num_dev + num_eval + 1
    if len(ids) < needed:
        raise CorpusError(
            f"the corpus has {len(ids)} sentences but {num_dev} dev + {num_eval} eval + at least 1 train "
            f"need {needed}: regenerate it with more (get_corpus.sh --num-sentences) or ask for smaller splits"
        )
    num_train = len(ids) - num_dev - num_eval
    return {
        "train": ids[:num_train],
        "dev": ids[num_train : num_train + num_dev],
        "eval": ids[num_train + num_dev :],
    }


def read_lab(path: Path) -> List[Tuple[float, float, str]]:
    """(start, end, phone) segments of one `start end phone` label file."""
    segments = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        try:
            if len(fields) != 3:
                raise ValueError
            segments.append((float(fields[0]), float(fields[1]), fields[2]))
        except ValueError:
            raise CorpusError(
                f"{path}:{line_number}: expected 'start end phone', got '{line}': rerun stage 0"
            ) from None
    return segments


def format_duration(seconds: float) -> str:
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def split_files(
    db_dir: Path, sentence_ids: Sequence[str], sentences: Dict[str, str], speakers: Sequence[str]
) -> Dict[str, List[str]]:
    """{file name: lines} of one Kaldi data dir."""
    files: Dict[str, List[str]] = {name: [] for name in ("wav.scp", "utt2spk", "text", "utt2dur", "phones.ctm")}
    ctm_by_utt: Dict[str, List[str]] = {}
    for speaker in speakers:
        for sentence_id in sentence_ids:
            utt = f"{speaker}-{sentence_id}"
            wav = (db_dir / "wav" / speaker / f"{utt}.wav").resolve()
            lab = db_dir / "align" / speaker / f"{utt}.lab"
            if not wav.is_file() or not lab.is_file():
                raise CorpusError(
                    f"utterance {utt}: {wav if not wav.is_file() else lab} is missing although {db_dir}/.complete "
                    f"exists: rerun stage 0 (local/synth/get_corpus.sh {db_dir})"
                )
            if any(char.isspace() for char in str(wav)):
                raise CorpusError(f"{wav}: a path with white space cannot go in wav.scp: move the corpus")
            info = soundfile.info(str(wav))
            files["wav.scp"].append(f"{utt} {wav}")
            files["utt2spk"].append(f"{utt} {speaker}")
            files["text"].append(f"{utt} {sentences[sentence_id]}")
            files["utt2dur"].append(f"{utt} {format_duration(info.frames / info.samplerate)}")
            ctm_by_utt[utt] = [
                f"{utt} 1 {start:.3f} {end - start:.3f} {phone}" for start, end, phone in read_lab(lab)
            ]
    for name in files:
        files[name] = c_sorted(files[name])
    # CTM: utterances in byte order, each one's phones in time order (as in the lab).
    files["phones.ctm"] = [line for utt in c_sorted(list(ctm_by_utt)) for line in ctm_by_utt[utt]]
    utts_by_speaker: Dict[str, List[str]] = {}
    for line in files["utt2spk"]:
        utt, speaker = line.split()
        utts_by_speaker.setdefault(speaker, []).append(utt)
    files["spk2utt"] = c_sorted([f"{spk} {' '.join(utts)}" for spk, utts in utts_by_speaker.items()])
    files["spk2gender"] = c_sorted([f"{spk} {voices.VOICES[spk].gender}" for spk in speakers])
    return files


def conversion_pairs(sentence_ids: Sequence[str], speakers: Sequence[str]) -> List[str]:
    """`source_utt target_spk reference_utt` for every ordered pair of distinct speakers."""
    return c_sorted(
        [
            f"{source}-{sentence_id} {target} {target}-{sentence_id}"
            for sentence_id in sentence_ids
            for source in speakers
            for target in speakers
            if source != target
        ]
    )


def parse_heldout(heldout: str, speakers: Sequence[str]) -> List[str]:
    """The --heldout-speakers ids (spaces or commas), in corpus order; raises PairError naming an id the
    corpus lacks, or a choice that leaves fewer than 2 speakers to train on."""
    ids = heldout.replace(",", " ").split()
    unknown = [speaker for speaker in ids if speaker not in speakers]
    if unknown:
        raise PairError(f"--heldout-speakers: {' '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among "
                        f"the corpus's speakers ({' '.join(speakers)})")
    if len(set(ids)) != len(ids):
        raise PairError(f"--heldout-speakers '{heldout}' names a speaker twice")
    num_seen = len(speakers) - len(ids)
    if num_seen < 2:
        raise PairError(f"--heldout-speakers holds out {len(ids)} of the corpus's {len(speakers)} speakers, leaving "
                        f"{num_seen} to train on: at least 2 must stay (the corpus has {' '.join(speakers)})")
    return [speaker for speaker in speakers if speaker in ids]


def heldout_pairs(sentence_ids: Sequence[str], seen: Sequence[str], heldout: Sequence[str],
                  zero_shot: bool) -> List[str]:
    """Pairs with a held-out speaker: every held-out source to every seen target and, with zero_shot, every
    source to every held-out target; the reference is the target saying the same sentence."""
    def utts(speaker: str) -> List[str]:
        return [f"{speaker}-{sentence_id}" for sentence_id in sentence_ids]

    def same_sentence(utt: str, target: str) -> str:
        return f"{target}-{utt.split('-', 1)[1]}"

    lines = seen_target_pairs({spk: utts(spk) for spk in heldout}, seen, same_sentence)
    if zero_shot:
        lines += seen_target_pairs({spk: utts(spk) for spk in list(seen) + list(heldout)}, heldout, same_sentence)
    return c_sorted(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--num-dev-sentences", type=int, default=10, help="sentences (x every speaker) in dev")
    parser.add_argument("--num-eval-sentences", type=int, default=10, help="sentences (x every speaker) in eval")
    parser.add_argument(
        "--num-pair-sentences", type=int, default=5, help="eval sentences whose speaker pairs go in eval/pairs"
    )
    parser.add_argument(
        "--heldout-speakers", default="",
        help="speakers (spaces or commas) kept out of train and dev, in eval only (sources of eval/pairs)",
    )
    parser.add_argument(
        "--heldout-pairs", choices=("seen", "zero-shot"), default="seen",
        help="pairs of held-out speakers: seen: held-out sources to seen targets; zero-shot: also every source "
        "to the held-out targets",
    )
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    parser.add_argument("db_dir", type=Path, help="corpus made by local/synth/get_corpus.sh")
    parser.add_argument("data_dir", type=Path, help="where to write the train/dev/eval data dirs")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if args.num_dev_sentences < 1 or args.num_eval_sentences < 1:
        sys.exit(f"{sys.argv[0]}: --num-dev-sentences and --num-eval-sentences must be at least 1")
    if not 0 <= args.num_pair_sentences <= args.num_eval_sentences:
        sys.exit(
            f"{sys.argv[0]}: --num-pair-sentences {args.num_pair_sentences} must be between 0 and "
            f"--num-eval-sentences ({args.num_eval_sentences})"
        )
    try:
        params = read_complete_stamp(args.db_dir)
        speakers = voices.parse_speakers(params["speakers"])
        heldout = parse_heldout(args.heldout_speakers, speakers)
        seen = [speaker for speaker in speakers if speaker not in heldout]
        split_speakers = {"train": seen, "dev": seen, "eval": speakers}
        sentences = read_sentences(args.db_dir / "sentences.txt")
        splits = split_sentences(list(sentences), args.num_dev_sentences, args.num_eval_sentences)
        all_files = {split: split_files(args.db_dir, ids, sentences, split_speakers[split])
                     for split, ids in splits.items()}
    except (CorpusError, ValueError, OSError) as error:
        sys.exit(f"{sys.argv[0]}: {error}")
    if args.heldout_pairs == "zero-shot" and not heldout:
        logging.warning("--heldout-pairs zero-shot does nothing without --heldout-speakers")
    pair_ids = splits["eval"][: args.num_pair_sentences]
    all_files["eval"]["pairs"] = conversion_pairs(pair_ids, seen)
    if heldout:
        all_files["eval"]["pairs"] = c_sorted(
            all_files["eval"]["pairs"] + heldout_pairs(pair_ids, seen, heldout, args.heldout_pairs == "zero-shot")
        )
        logging.info(f"held out of train and dev (eval only): {' '.join(heldout)}")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_data_dir(args.data_dir / split, all_files[split])
        logging.info(
            f"{args.data_dir / split}: {len(splits[split])} sentences x {len(split_speakers[split])} speakers "
            f"= {len(all_files[split]['utt2spk'])} utterances"
        )
    logging.info(f"{args.data_dir / 'eval' / 'pairs'}: {len(all_files['eval']['pairs'])} conversion pairs")


if __name__ == "__main__":
    main()
