#!/usr/bin/env python3
"""Validate a Kaldi data dir (Kaldi's validate_data_dir.sh checks, plus the audio itself)."""

from __future__ import annotations

import argparse
import logging
import sys

from voiceswap.data.kaldi_dir import validate_data_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--sample-rate", type=int, default=16000, help="expected rate; 0 to skip")
    parser.add_argument("--no-audio", action="store_true", help="do not decode the audio files")
    parser.add_argument("data_dir")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    problems = validate_data_dir(
        args.data_dir, sample_rate=args.sample_rate or None, check_audio=not args.no_audio
    )
    for problem in problems:
        print(f"validate_data_dir: {problem}", file=sys.stderr)
    if problems:
        print(f"validate_data_dir: {args.data_dir} is not valid ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"validate_data_dir: {args.data_dir} is valid", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
