#!/usr/bin/env python3
"""Normalise features to zero mean and unit variance with the train set's global statistics."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from voiceswap.cli import configure_logging
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.data.finite import NonFiniteError, check_finite
from voiceswap.features.stats import normalize
from voiceswap.progress import progress


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--stats", required=True, help="global stats .npz from compute_stats.py")
    parser.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    parser.add_argument("feats_scp", help="input feats.scp")
    parser.add_argument("out_ark", help="output ark file")
    parser.add_argument("out_scp", help="output scp file indexing out_ark")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    for path, stage in ((args.stats, "stage 3 (statistics)"), (args.feats_scp, "stage 2 (features)")):
        if not Path(path).is_file():
            logging.error("%s: not found; run %s first", path, stage)
            return 1
    with np.load(args.stats) as stats:
        mean, std = stats["mean"], stats["std"]
    try:
        # Stats written before the finite guards of compute_stats.py may be NaN: they would turn
        # every matrix of every set NaN.
        check_finite(mean, f"the mean of {args.stats}")
        check_finite(std, f"the standard deviation of {args.stats}")
    except NonFiniteError as error:
        logging.error("%s; remake the statistics (stage 3, --force true)", error)
        return 1
    num_utts = sum(1 for _ in open(args.feats_scp))
    # Any error inside the block (SystemExit included) aborts the writer: no partial outputs.
    with ArkWriter(args.out_ark, args.out_scp) as writer:
        for utt, features in progress(read_scp(args.feats_scp), total=num_utts, desc="normalise"):
            if features.shape[1] != mean.shape[0]:
                logging.error("utterance '%s' has dim %d but %s has dim %d: stats of another feature?",
                              utt, features.shape[1], args.stats, mean.shape[0])
                raise SystemExit(1)
            try:
                check_finite(features, f"utterance '{utt}' of {args.feats_scp}")
            except NonFiniteError as error:
                logging.error("%s; nothing written to %s: remake the features (stage 2, --force true) or remove "
                              "the utterance from the data dir", error, args.out_scp)
                raise SystemExit(1)
            writer[utt] = normalize(features, mean, std)
    logging.info("normalised %d utterances -> %s", writer.num_written, args.out_scp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
