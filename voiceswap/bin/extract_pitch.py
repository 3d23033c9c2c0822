#!/usr/bin/env python3
"""The pitch stream of one set (the ``pitch`` step of a family's plan, stage 4), as the config's ``pitch:`` says.

  extract_pitch.py --config conf/softvc_whisper_f0.yaml --dump-dir dump --data-dir data \
                   [--speaker-stats dump/pitch/dio_50-500/train/spk_f0_stats] eval dump/pitch/dio_50-500/eval

F0 of every utterance of ``<data-dir>/<set>/wav.scp`` with pyworld (``pitch.method``: dio, the
default, or harvest; ``pitch.f0_min``/``f0_max`` in Hz) on the frames of the config's target
features (``data.target_feats``: sample rate and hop from ``<dump-dir>/raw/<target>/<set>/feats_config.yaml``,
frame t centred on sample ``t * hop + hop / 2``; the frame counts are checked against that
feature's utt2num_frames). Writes ``<out-dir>/feats.{ark,scp}`` (``(frames, 3)`` float32: log-F0,
voicing, log-F0 relative to the speaker's mean; voiceswap/features/pitch.py), ``utt2num_frames``,
``frame_shift`` and ``spk_f0_stats`` (``speaker mean std voiced_frames`` of log-F0 over this set's
voiced frames). The speaker means of the relative column come from ``--speaker-stats`` (the train
set's table) for the speakers it has, from this set otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from voiceswap.cli import configure_logging
from voiceswap.data.ark import ArkWriter
from voiceswap.data.atomic import atomic_open, write_kaldi_map
from voiceswap.data.audio import AudioError, load_audio
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.pitch import (
    F0Stats,
    PitchError,
    extract_log_f0,
    pitch_settings,
    pitch_stream,
    read_f0_stats,
    speaker_stats,
    write_f0_stats,
)
from voiceswap.features.spectral import FeatureConfigError, load_feature_config
from voiceswap.progress import progress
from voiceswap.train.config import ConfigError, apply_overrides, load_config


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="family config with a pitch: section")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override (repeatable), as train.py")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dump-dir", default="dump")
    parser.add_argument("--speaker-stats", help="the train set's spk_f0_stats: speaker means of the relative column")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("subset", help="the set, e.g. train")
    parser.add_argument("out_dir")
    return parser


def target_frames(dump_dir: Path, target_feats: str, subset: str) -> Tuple[Path, Dict[str, int]]:
    """The target features' raw dir of ``subset`` (its feats_config.yaml) and their frame counts (empty if unknown)."""
    raw = dump_dir / "raw" / Path(target_feats).name / subset
    if not (raw / "feats_config.yaml").is_file():
        raise PitchError(f"{raw}/feats_config.yaml is missing: the pitch stream is made on the frames of the "
                         f"target features {target_feats!r}; run stage 2 first")
    counts = raw / "utt2num_frames"
    return raw, ({utt: int(n) for utt, n in read_kaldi_map(counts).items()} if counts.is_file() else {})


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    out = Path(args.out_dir)
    try:
        config = apply_overrides(load_config(args.config), args.overrides)
        settings = pitch_settings(config.get("pitch"))
        raw, expected = target_frames(Path(args.dump_dir), config["data"]["target_feats"], args.subset)
        features = load_feature_config(raw / "feats_config.yaml")
        data = Path(args.data_dir) / args.subset
        for name in ("wav.scp", "utt2spk"):
            if not (data / name).is_file():
                raise DataDirError(f"{data / name} is missing: run stage 1 first")
        entries, utt2spk = read_kaldi_map(data / "wav.scp"), read_kaldi_map(data / "utt2spk")
        reference = read_f0_stats(args.speaker_stats) if args.speaker_stats else {}
        tracks = extract(entries, utt2spk, expected, features.sample_rate, features.hop_length, settings)
        own = speaker_stats(tracks, utt2spk)
        unvoiced = F0Stats(0.0, 0.0, 0)  # a speaker without a voiced frame: the relative column is all 0 anyway
        means = {spk: (reference.get(spk) or own.get(spk) or unvoiced).mean for spk in set(utt2spk.values())}
        from_here = sorted(spk for spk in own if spk not in reference)
        if args.speaker_stats and from_here:
            logging.info("speaker(s) %s are not in %s: their means come from %s itself", " ".join(from_here),
                         args.speaker_stats, args.subset)
    except (ConfigError, PitchError, FeatureConfigError, DataDirError, AudioError, KeyError) as error:
        logging.error("%s", error)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    with ArkWriter(out / "feats.ark", out / "feats.scp") as writer:
        for utt, (log_f0, voiced) in tracks.items():
            writer[utt] = pitch_stream(log_f0, voiced, means[utt2spk[utt]])
    write_kaldi_map(out / "utt2num_frames", ((utt, str(len(track[0]))) for utt, track in tracks.items()))
    write_f0_stats(out / "spk_f0_stats", own)
    with atomic_open(out / "frame_shift") as f:
        f.write(f"{features.hop_length / features.sample_rate:g}\n")
    for spk, stats in sorted(own.items()):
        logging.info("%s: log-F0 mean %.3f (%.0f Hz), std %.3f, %d voiced frames", spk, stats.mean,
                     np.exp(stats.mean), stats.std, stats.frames)
    return 0


def extract(entries: Dict[str, str], utt2spk: Dict[str, str], expected: Dict[str, int], sample_rate: int,
            hop_length: int, settings: dict) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``utt -> (log_f0, voiced)`` of every utterance, in wav.scp order; frame counts checked against ``expected``."""
    tracks = {}
    start, seconds = time.time(), 0.0
    for utt, entry in progress(entries.items(), total=len(entries), desc="pitch"):
        if utt not in utt2spk:
            raise DataDirError(f"utterance '{utt}' of wav.scp has no speaker in utt2spk: run fix_data_dir.py")
        waveform = load_audio(entry, sample_rate, utt=utt)
        seconds += len(waveform) / sample_rate
        log_f0, voiced = extract_log_f0(waveform, sample_rate, hop_length, **settings)
        if utt in expected and expected[utt] != len(log_f0):
            raise PitchError(f"utterance '{utt}': {len(log_f0)} pitch frames but {expected[utt]} frames of the target "
                             "features: the audio changed since stage 2; re-run stage 2")
        tracks[utt] = (log_f0, voiced)
    logging.info("%s F0 of %d utterances (%.0f s of audio) in %.1f s", settings["method"], len(tracks), seconds,
                 time.time() - start)
    return tracks


if __name__ == "__main__":
    sys.exit(main())
