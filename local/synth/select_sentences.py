#!/usr/bin/env python3
"""Select the sentences of the synth corpus from the WordNet example sentences.

WordNet glosses end with example sentences in double quotes after a `|`
(`| cause to be calm; "The patient must be sedated before the operation"`).
Every quoted example that is a clean English sentence (ASCII, starts with a
capital, 6-20 words, only letters, apostrophes, commas, hyphens inside words and
one final . ? or !) is a candidate (about 6,000); candidates are de-duplicated and a seeded random sample of them is
written as `s0001 TEXT` lines, sorted by id.

The choice depends only on the set of candidates and the seed, never on file
order or the machine, so the same seed always gives the same corpus text.

Example:
    python3 local/synth/select_sentences.py --num-sentences 100 --seed 777 \
        --output db/synth/sentences.txt
"""

import argparse
import logging
import os
import random
import re
import sys
from pathlib import Path
from typing import Iterable, List

WORDNET_DIR = "/usr/share/wordnet"
WORDNET_DATA_FILES = ("data.adj", "data.adv", "data.noun", "data.verb")
MIN_WORDS = 6
MAX_WORDS = 20

# A word: letters, optionally joined by hyphens, optionally with an apostrophe
# part (don't, James's, boys'), optionally followed by a comma. Anything else
# (digits, abbreviations with dots, brackets, quotes, semicolons, dashes) is
# read differently by each engine or not at all, and would break parallelism.
_WORD = r"[A-Za-z]+(?:-[A-Za-z]+)*(?:'[A-Za-z]*)?,?"
_CLEAN_SENTENCE = re.compile(rf"^{_WORD}(?: {_WORD})*[.?!]?$")
_QUOTED = re.compile(r'"([^"]*)"')
# Two or more capitals in a word (NASA, TV, McDonald) are spelled out by some
# engines and read as a word by others.
_ACRONYM = re.compile(r"[A-Z][A-Za-z'-]*[A-Z]")


def examples_from_gloss_line(line: str) -> List[str]:
    """Return the double-quoted example sentences of one WordNet data line."""
    if line.startswith("  ") or "|" not in line:  # licence header or no gloss
        return []
    gloss = line.split("|", 1)[1]
    return [match.strip() for match in _QUOTED.findall(gloss)]


def is_clean_sentence(text: str) -> bool:
    """True for an ASCII sentence of 6-20 plain words every engine reads alike."""
    # A lowercase start marks a phrase ("the rear part of the house"), not a sentence.
    if not text.isascii() or not text[:1].isupper() or not _CLEAN_SENTENCE.match(text):
        return False
    words = text.split(" ")
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if words[-1].endswith(","):  # a trailing comma before the end mark: a fragment
        return False
    return not any(_ACRONYM.search(word) for word in words)


def candidate_sentences(wordnet_dir: str, data_files: Iterable[str] = WORDNET_DATA_FILES) -> List[str]:
    """All clean, de-duplicated example sentences, sorted (so order is file-independent)."""
    seen = set()
    candidates = []
    for name in data_files:
        path = Path(wordnet_dir) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"WordNet data file {path} is missing: install the Debian package wordnet-base "
                f"(apt-get install wordnet-base) or pass --wordnet-dir"
            )
        with open(path, encoding="latin-1") as handle:
            for line in handle:
                for example in examples_from_gloss_line(line):
                    text = " ".join(example.split())
                    if not is_clean_sentence(text):
                        continue
                    key = text.lower().rstrip(".?!")  # same words = same sentence
                    if key in seen:
                        continue
                    seen.add(key)
                    candidates.append(text)
    return sorted(candidates)


def select_sentences(candidates: List[str], num_sentences: int, seed: int) -> List[str]:
    """A seeded random sample of `num_sentences` candidates."""
    if num_sentences > len(candidates):
        raise ValueError(
            f"--num-sentences {num_sentences} asks for more sentences than WordNet has "
            f"({len(candidates)} clean examples): ask for at most {len(candidates)}"
        )
    return random.Random(seed).sample(candidates, num_sentences)


def wordnet_licence(wordnet_dir: str) -> str:
    """WordNet's licence, as its data files carry it in their numbered header lines."""
    lines = []
    with open(Path(wordnet_dir) / "data.noun", encoding="latin-1") as handle:
        for line in handle:
            if not line.startswith("  "):
                break
            lines.append(line.split(" ", 3)[-1].rstrip() if line[2:].split(" ", 1)[0].isdigit() else line.rstrip())
    return "\n".join(lines) + "\n"


def write_sentences(sentences: List[str], output: str) -> None:
    """Write `s0001 TEXT` lines atomically (temp file + rename)."""
    width = max(4, len(str(len(sentences))))
    lines = [f"s{index:0{width}d} {text}\n" for index, text in enumerate(sentences, start=1)]
    tmp = f"{output}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(sorted(lines))
    os.replace(tmp, output)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--num-sentences", type=int, default=100, help="number of sentences to select")
    parser.add_argument("--seed", type=int, default=777, help="random seed of the selection")
    parser.add_argument("--wordnet-dir", default=WORDNET_DIR, help="folder with WordNet's data.* files")
    parser.add_argument("--output", required=True, help="sentences file to write (`s0001 TEXT` lines)")
    parser.add_argument(
        "--licence-output", default=None, help="also write WordNet's licence here (it asks to be kept with its text)"
    )
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if args.num_sentences < 1:
        sys.exit(f"{sys.argv[0]}: --num-sentences must be at least 1, got {args.num_sentences}")
    try:
        candidates = candidate_sentences(args.wordnet_dir)
        sentences = select_sentences(candidates, args.num_sentences, args.seed)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"{sys.argv[0]}: {error}")
    write_sentences(sentences, args.output)
    if args.licence_output:
        tmp = f"{args.licence_output}.tmp.{os.getpid()}"
        Path(tmp).write_text(wordnet_licence(args.wordnet_dir))
        os.replace(tmp, args.licence_output)
    logging.info(
        f"selected {len(sentences)} of {len(candidates)} clean WordNet sentences "
        f"(seed {args.seed}) -> {args.output}"
    )


if __name__ == "__main__":
    main()
