#!/usr/bin/env python3
"""Compute frame-level features (log-mel or MFCC + deltas) for the utterances of a wav.scp.

One job of stage 2: ``utils/make_feats.sh`` runs it as ``$train_cmd JOB=1:nj`` over split wav.scp
files and joins the outputs. Utterances that fail are logged with their id; the job fails when
more than ``--max-failure-rate`` of them do (Kaldi's make_mfcc.sh rule).
"""

from __future__ import annotations

import argparse
import logging
import sys

from voiceswap.cli import configure_logging
from voiceswap.data.ark import ArkWriter
from voiceswap.data.atomic import write_kaldi_map
from voiceswap.data.audio import AudioError, load_audio
from voiceswap.data.finite import check_finite
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.spectral import FeatureConfigError, FeatureExtractor, load_feature_config
from voiceswap.progress import progress


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", required=True, help="feature config, e.g. conf/feats/logmel80.yaml")
    parser.add_argument("--max-failure-rate", type=float, default=0.05,
                        help="fail the job when more than this fraction of utterances fail")
    parser.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    parser.add_argument("wav_scp", help="input wav.scp (paths or 'command |' pipes)")
    parser.add_argument("out_ark", help="output ark file")
    parser.add_argument("out_scp", help="output scp file indexing out_ark")
    parser.add_argument("out_utt2num_frames", help="output 'utt num_frames' file")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    try:
        config = load_feature_config(args.config)
        wav_scp = read_kaldi_map(args.wav_scp)
    except (FeatureConfigError, DataDirError) as error:
        logging.error("%s", error)
        return 1
    extractor = FeatureExtractor(config)
    num_frames = {}
    failures = 0
    with ArkWriter(args.out_ark, args.out_scp) as writer:
        for utt, entry in progress(wav_scp.items(), total=len(wav_scp), desc=f"{config.type} features"):
            try:
                waveform = load_audio(entry, sample_rate=config.sample_rate)
                features = extractor(waveform)
                # Finite audio can still give non-finite features (e.g. an overflow); such an
                # utterance fails here, by name, rather than poisoning the statistics of stage 3.
                check_finite(features, "its feature matrix")
            except (AudioError, ValueError) as error:  # NonFiniteError is a ValueError
                failures += 1
                logging.warning("utterance '%s' (%s): %s", utt, args.wav_scp, error)
                continue
            writer[utt] = features
            num_frames[utt] = str(features.shape[0])
    write_kaldi_map(args.out_utt2num_frames, num_frames.items())
    logging.info("wrote %d utterances to %s (%d failed)", len(num_frames), args.out_scp, failures)
    if wav_scp and failures > args.max_failure_rate * len(wav_scp):
        logging.error(
            "%d of %d utterances in %s failed (more than %.0f%%): see the warnings above",
            failures, len(wav_scp), args.wav_scp, 100 * args.max_failure_rate,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
