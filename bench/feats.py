#!/usr/bin/env python3
"""Benchmark of stage 2: feature throughput and parallel scaling. Prints numbers; asserts nothing.

1. Throughput in audio-seconds per CPU-second of our log-mel (decode + features, one thread)
   side by side with kaldi-native-fbank on the same audio with the same frame settings, and
   their ratio (target >= 1.0).
2. Wall time of ``utils/make_feats.sh`` with nj=1 and nj=2 on the same data dir, and the
   speed-up (target >= 1.8x on 2 cores).

Needs a data dir (default data/train from ``./run.sh --stop-stage 1``) and the bench extra:
``utils/setup.sh --extras test,bench``. Run from the repo root with ``. ./path.sh`` first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from voiceswap.data.audio import load_audio
from voiceswap.data.kaldi_dir import read_kaldi_map
from voiceswap.features.spectral import FeatureExtractor, load_feature_config


def cpu_seconds(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def kaldi_native_fbank_runner(config, entries):
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.samp_freq = config.sample_rate
    options.frame_opts.frame_length_ms = 1000.0 * config.win_length / config.sample_rate
    options.frame_opts.frame_shift_ms = 1000.0 * config.hop_length / config.sample_rate
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = False
    options.mel_opts.num_bins = config.n_mels
    options.mel_opts.low_freq = config.f_min
    options.mel_opts.high_freq = config.f_max

    def run():
        for entry in entries:
            waveform = load_audio(entry, sample_rate=config.sample_rate)
            fbank = knf.OnlineFbank(options)
            fbank.accept_waveform(config.sample_rate, waveform)
            fbank.input_finished()
            np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/train")
    parser.add_argument("--config", default="conf/feats/logmel80.yaml")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the throughput runs")
    parser.add_argument("--scale", type=int, default=1,
                        help="list every utterance N times for the nj runs, to see scaling on a larger corpus "
                             "than job start-up (importing torch, ~1.5 s a job) dominates")
    args = parser.parse_args()
    wav_scp = Path(args.data_dir) / "wav.scp"
    if not wav_scp.is_file():
        print(f"{wav_scp} not found: run ./run.sh --stop-stage 1 first", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    config = load_feature_config(args.config)
    entries = list(read_kaldi_map(wav_scp).values())
    audio_seconds = sum(len(load_audio(e)) for e in entries) / config.sample_rate
    extractor = FeatureExtractor(config)

    def ours():
        for entry in entries:
            extractor(load_audio(entry, sample_rate=config.sample_rate))

    print(f"audio: {len(entries)} utterances, {audio_seconds:.1f} s, config {args.config}")
    ours_rate = audio_seconds / min(cpu_seconds(ours) for _ in range(args.repeats))
    print(f"voiceswap log-mel:   {ours_rate:8.1f} audio-s per CPU-s")
    try:
        knf_run = kaldi_native_fbank_runner(config, entries)
    except ImportError:
        print("kaldi-native-fbank is not installed: utils/setup.sh --extras test,bench")
        knf_run = None
    if knf_run is not None:
        knf_rate = audio_seconds / min(cpu_seconds(knf_run) for _ in range(args.repeats))
        print(f"kaldi-native-fbank:  {knf_rate:8.1f} audio-s per CPU-s")
        print(f"ratio voiceswap / kaldi-native-fbank: {ours_rate / knf_rate:.2f} (target >= 1.0)")

    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with open(data_dir / "wav.scp", "w") as f:
            for copy in range(args.scale):
                for utt, entry in read_kaldi_map(wav_scp).items():
                    f.write(f"{utt}-copy{copy:03d} {entry}\n")
        print(f"nj runs on {len(entries) * args.scale} utterances ({audio_seconds * args.scale / 3600:.2f} h)")
        for nj in (1, 2):
            out = Path(tmp) / f"nj{nj}"
            start = time.perf_counter()
            subprocess.run(["utils/make_feats.sh", "--nj", str(nj), "--force", "true", "--feats-config",
                            args.config, str(data_dir), str(out)], check=True, capture_output=True)
            walls[nj] = time.perf_counter() - start
            shutil.rmtree(out)
            print(f"make_feats.sh nj={nj}: {walls[nj]:.2f} s wall")
    print(f"speed-up nj=1 -> nj=2: {walls[1] / walls[2]:.2f}x (target >= 1.8x; {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
