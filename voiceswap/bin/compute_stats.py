#!/usr/bin/env python3
"""Accumulate feature statistics: global mean/std and per-speaker Kaldi CMVN stats.

Stage 3 runs it on the train set (global stats, the normaliser of every set) and on every set
(per-speaker stats, in Kaldi's compute-cmvn-stats format so Kaldi's apply-cmvn can read them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict

import numpy as np

from voiceswap.cli import configure_logging
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.data.atomic import atomic_open
from voiceswap.data.finite import NonFiniteError
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.stats import StatsAccumulator
from voiceswap.progress import progress


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--utt2spk", help="utt2spk of the set; needed for --spk-stats")
    parser.add_argument("--global-stats", help="write global count/sum/sum_square/mean/std here (.npz)")
    parser.add_argument("--spk-stats", help="write per-speaker Kaldi CMVN stats here (.ark, with a .scp beside)")
    parser.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    parser.add_argument("feats_scp", help="input feats.scp")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    if not args.global_stats and not args.spk_stats:
        logging.error("nothing to do: give --global-stats and/or --spk-stats")
        return 1
    if not Path(args.feats_scp).is_file():
        logging.error("%s: not found; run stage 2 (feature extraction) first", args.feats_scp)
        return 1
    utt2spk: Dict[str, str] = {}
    if args.spk_stats:
        if not args.utt2spk:
            logging.error("--spk-stats needs --utt2spk")
            return 1
        try:
            utt2spk = dict(read_kaldi_map(args.utt2spk))
        except DataDirError as error:
            logging.error("%s", error)
            return 1

    global_stats = None
    speaker_stats: Dict[str, StatsAccumulator] = {}
    num_utts = sum(1 for _ in open(args.feats_scp))
    for utt, features in progress(read_scp(args.feats_scp), total=num_utts, desc="stats"):
        if global_stats is None:
            global_stats = StatsAccumulator(features.shape[1])
        # Nothing is written before every utterance has been read, so a bad one leaves no stats.
        what = f"utterance '{utt}' of {args.feats_scp}"
        try:
            global_stats.add(features, what)
        except NonFiniteError as error:
            logging.error("%s; no statistics written: remake the features (stage 2, --force true) or remove "
                          "the utterance from the data dir", error)
            return 1
        except ValueError as error:
            logging.error("%s", error)
            return 1
        if args.spk_stats:
            if utt not in utt2spk:
                logging.error("utterance '%s' of %s is missing from %s", utt, args.feats_scp, args.utt2spk)
                return 1
            speaker = utt2spk[utt]
            speaker_stats.setdefault(speaker, StatsAccumulator(features.shape[1])).add(features, what)
    if global_stats is None:
        logging.error("%s holds no utterances", args.feats_scp)
        return 1

    if args.global_stats:
        try:
            mean, std = global_stats.mean_std()
        except NonFiniteError as error:
            logging.error("statistics of %s: %s; no statistics written", args.feats_scp, error)
            return 1
        with atomic_open(args.global_stats, "wb") as f:
            np.savez(f, count=global_stats.count, sum=global_stats.sum,
                     sum_square=global_stats.sum_square, mean=mean, std=std)
        logging.info("global stats of %d frames -> %s", global_stats.count, args.global_stats)
    if args.spk_stats:
        spk_ark = Path(args.spk_stats)
        with ArkWriter(spk_ark, spk_ark.with_suffix(".scp")) as writer:
            for speaker in sorted(speaker_stats, key=str.encode):
                writer[speaker] = speaker_stats[speaker].to_kaldi_cmvn()
        logging.info("stats of %d speakers -> %s", len(speaker_stats), spk_ark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
