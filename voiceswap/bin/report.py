#!/usr/bin/env python3
"""Stage 11: rank experiments of different families on the same eval pairs and write the listening report.

    report.py --data-dir data --eval-set eval exp/report exp/vqvae/scores_griffinlim exp/vaegan/scores_griffinlim

writes ``exp/report/index.html`` (the ranked table, then one row per chosen pair with players for the
source, the target reference and every experiment's conversion, spectrograms and per-pair scores, and
links to each experiment's plots) and ``exp/report/comparison.md``. Each argument after the report folder
is the stage-9 output of one experiment and vocoder (``exp/<tag>/scores_<vocoder>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from voiceswap.cli import configure_logging
from voiceswap.data.audio import AudioError
from voiceswap.eval.compare import ranked
from voiceswap.eval.plan import ScoreInputError
from voiceswap.eval.report import ReportError, write_report
from voiceswap.features.spectral import FeatureConfigError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--eval-set", default="eval")
    parser.add_argument("--num-pairs", type=int, default=6, help="eval pairs in the listening report")
    parser.add_argument("--feats-config", default="conf/feats/logmel80.yaml",
                        help="the log-mel of the report's spectrograms")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("out_dir", help="the report folder, e.g. exp/report")
    parser.add_argument("scores_dirs", nargs="+",
                        help="stage 9 outputs to compare, e.g. exp/vqvae/scores_griffinlim")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    if args.num_pairs < 1:
        logging.error("--num-pairs must be at least 1, got %d", args.num_pairs)
        return 1
    all_metrics = []
    for scores in args.scores_dirs:
        path = Path(scores) / "metrics.json"
        if not path.is_file():
            logging.error("%s is missing: run stage 9 (scoring) of that experiment and vocoder first", path)
            return 1
        all_metrics.append(json.loads(path.read_text()))
    command = " ".join(shlex.quote(a) for a in ["report.py"] + sys.argv[1:])
    try:
        index = write_report(ranked(all_metrics), Path(args.data_dir), args.eval_set, Path(args.out_dir),
                             args.num_pairs, Path(args.feats_config), command)
    except (ReportError, ScoreInputError, AudioError, FeatureConfigError) as error:
        logging.error("%s", error)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
