#!/usr/bin/env python3
"""Benchmark of stages 4 and 8 on CPU. Prints numbers; asserts nothing.

1. Training steps/s of a family config with the real DataLoader (kaldiio reads, crops, collate,
   workers) against the same steps on one batch held in memory: the ratio says whether loading
   is the bottleneck (target >= 0.95).
2. Conversion real-time factor: compute seconds per audio second for encode + decode +
   Griffin-Lim over eval utterances (weights untrained: speed does not depend on them).

Needs stages 0-3 (./run.sh --stop-stage 3). Run from the repo root after ``. ./path.sh``:
    python bench/train_throughput.py [--config conf/vqvae.yaml] [--steps 100] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.loaders import build_loaders
from voiceswap.features.spectral import load_feature_config
from voiceswap.data.streams import StreamLayout
from voiceswap.train.experiment import load_vocoder
from voiceswap.train.config import apply_overrides, load_config
from voiceswap.train.registry import OptimizerStep, get_family


def steps_per_second(family, batches, steps: int, warmup: int) -> float:
    iterator = batches if hasattr(batches, "__next__") else iter(batches)
    for step in range(warmup):
        family.train_step(next(iterator), step)
    start = time.perf_counter()
    for step in range(steps):
        family.train_step(next(iterator), step)
    return steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/vqvae.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--dump-dir", default="dump")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed round")
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--convert-utts", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    config = apply_overrides(load_config(args.config), args.overrides)
    loaders = build_loaders(config, StreamLayout.of(args.dump_dir, "exp/bench"), args.data_dir)

    def fresh_family():
        torch.manual_seed(0)
        family = get_family(config["family"])()
        models = family.build(config, num_speakers=len(loaders.spk2id))
        optimizers = family.optimizers(models, config)
        family.bind(models, optimizers, OptimizerStep(optimizers, config["train"]["grad_clip"]))
        for model in models.values():
            model.train()
        return family

    # Alternate the two modes in rounds and keep each one's best round: load from other processes
    # then slows both alike instead of whichever ran second.
    rounds = 4
    per_round = max(1, args.steps // rounds)
    real_family, memory_family = fresh_family(), fresh_family()
    real_batches = itertools.cycle(loaders.train)
    one_batch = next(iter(loaders.train))
    real = in_memory = 0.0
    for _ in range(rounds):
        real = max(real, steps_per_second(real_family, real_batches, per_round, args.warmup))
        in_memory = max(in_memory, steps_per_second(memory_family, itertools.repeat(one_batch), per_round,
                                                    args.warmup))
    data = config["data"]
    print(f"config {args.config} {' '.join(args.overrides)}: batch {data['batch_size']} x {data['crop_frames']} "
          f"frames, {data['num_workers']} loader worker(s), {args.num_threads} threads")
    print(f"train steps/s, real loader:      {real:7.2f}")
    print(f"train steps/s, in-memory batch:  {in_memory:7.2f}")
    print(f"ratio real / in-memory:          {real / in_memory:7.3f} (target >= 0.95)")

    family = fresh_family()
    for model in family.models.values():
        model.eval()
    features = kaldiio.load_scp(str(Path(args.dump_dir) / "norm" / data["input_feats"] / "eval" / "feats.scp"))
    feature_config = load_feature_config(Path(args.dump_dir) / "raw" / data["target_feats"] / "eval"
                                         / "feats_config.yaml")
    vocoder = load_vocoder(load_config("conf/vocoder/griffinlim.yaml"), feature_config.to_dict())
    utts = sorted(features)[: args.convert_utts]
    audio_seconds = compute_seconds = 0.0
    with torch.no_grad():
        for utt in utts:
            source = torch.from_numpy(np.array(features[utt], dtype=np.float32))
            start = time.perf_counter()
            mel = family.convert(source, 0)
            vocoder(mel.T.unsqueeze(0))
            compute_seconds += time.perf_counter() - start
            audio_seconds += source.shape[0] * feature_config.hop_length / feature_config.sample_rate
    print(f"conversion + Griffin-Lim RTF:    {compute_seconds / audio_seconds:7.3f} "
          f"({len(utts)} eval utterances, {audio_seconds:.1f} s of audio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
