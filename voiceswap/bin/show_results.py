#!/usr/bin/env python3
"""Print one RESULTS.md comparing every scored experiment: ``<exp-dir>/*/scores_<vocoder>/metrics.json``.

One section per corpus (or only ``--corpus``), one row per experiment and vocoder with the same columns, and
the environment (date, python, torch, torchaudio, voiceswap, git hash) and the exact commands, as
ESPnet's show_asr_result.sh does. ``utils/show_results.sh`` calls it; stage 10 writes its output
to RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from voiceswap.eval.results import collect, corpus_results


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", default=None,
                        help="only experiments of this corpus (default: all, one section each)")
    parser.add_argument("--command", default=None, help="the command line to record (default: this one)")
    parser.add_argument("exp_dir", nargs="?", default="exp")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if not os.path.isdir(args.exp_dir):
        logging.error("%s is not a directory: pass the experiments dir (e.g. exp)", args.exp_dir)
        return 1
    try:
        found = collect(args.exp_dir, args.corpus)
    except ValueError as error:
        logging.error("%s", error)
        return 1
    command = args.command or " ".join(shlex.quote(a) for a in ["show_results.py"] + sys.argv[1:])
    sys.stdout.write(corpus_results(found, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
