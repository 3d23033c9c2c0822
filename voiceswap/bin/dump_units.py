#!/usr/bin/env python3
"""Dump a trained model's units for a set (stage 5): code indices and code vectors as Kaldi arks.

Writes one ark/scp pair per kind of unit the family gives, e.g. for vqvae
``<out-dir>/indices.{ark,scp}`` (int32 vectors, one index per 20 ms code frame) and
``<out-dir>/vectors.{ark,scp}`` (float32 ``(code frames, code_dim)`` matrices), plus
``<out-dir>/utt2num_frames`` and ``<out-dir>/num_units`` (the size of the ``indices`` inventory, for
the unit metrics of stage 9). The model is ``<exp-dir>[/<section>]``; its input stream
(``data.input_feats``) is resolved from ``--config`` (voiceswap/data/streams.py); a ``frame_shift``
file beside the input is copied when the units keep its rate.
"""

from __future__ import annotations

import argparse
from typing import List, Optional
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.data.atomic import atomic_open, write_kaldi_map
from voiceswap.data.finite import NonFiniteError, check_finite
from voiceswap.data.streams import StreamError, StreamLayout, stream_scp
from voiceswap.progress import progress
from voiceswap.train.checkpoint import CheckpointError
from voiceswap.train.config import ConfigError, apply_overrides, load_config
from voiceswap.train.experiment import Experiment, ExperimentError
from voiceswap.train.jobs import PlanError, section_config, section_dir
from voiceswap.train.registry import UnsupportedByFamily


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", required=True, help="the recipe config (conf/<model>.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override (repeatable), as train.py")
    parser.add_argument("--section", default="", help="the trained section whose units to dump (e.g. content)")
    parser.add_argument("--exp-dir", required=True, help="the experiment dir exp/<tag>")
    parser.add_argument("--dump-dir", default="dump", help="features, units and content features (the streams)")
    parser.add_argument("--data-dir", default="data", help="unused; accepted like the other step scripts")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("data_set", help="the set to dump, e.g. eval")
    parser.add_argument("out_dir")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        root = apply_overrides(load_config(args.config), args.overrides)
        input_name = section_config(root, args.section)["data"]["input_feats"]
        feats_scp = stream_scp(root, input_name, args.data_set, StreamLayout.of(args.dump_dir, args.exp_dir))
        experiment = Experiment(section_dir(Path(args.exp_dir), args.section), "stage 4").load()
        if not feats_scp.is_file():
            raise StreamError(f"{feats_scp} not found: the input stream {input_name!r} of {args.data_set} "
                              "is made by an earlier stage (stages 2-4)")
    except (ConfigError, PlanError, StreamError, ExperimentError, CheckpointError) as error:
        logging.error("%s", error)
        return 1
    out = Path(args.out_dir)
    num_utts = sum(1 for _ in open(feats_scp))
    writers = {}
    num_frames = {}
    same_rate = True  # units at the input's frame rate keep its frame_shift
    try:
        for utt, features in progress(read_scp(feats_scp), total=num_utts, desc="units"):
            units = experiment.family.encode_units(torch.from_numpy(np.array(features, dtype=np.float32)))
            num_frames[utt] = next(iter(units.values())).shape[0]
            same_rate = same_rate and num_frames[utt] == features.shape[0]
            for name, value in units.items():
                if name not in writers:
                    writers[name] = ArkWriter(out / f"{name}.ark", out / f"{name}.scp")
                array = value.numpy()
                check_finite(array, f"{name} units of utterance '{utt}' ({experiment.checkpoint})")
                # Index sequences stay integers (Kaldi int32 vectors); everything else is float32.
                writers[name][utt] = array.astype(np.int32 if not value.is_floating_point() else np.float32)
    except (UnsupportedByFamily, NonFiniteError) as error:
        logging.error("%s: %s", experiment.path, error)
        for writer in writers.values():
            writer.abort()
        return 1
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    write_kaldi_map(out / "utt2num_frames", ((utt, str(n)) for utt, n in num_frames.items()))
    inventory = experiment.family.unit_inventory()
    if inventory is not None:
        with atomic_open(out / "num_units") as f:
            f.write(f"{inventory}\n")
    if same_rate and (feats_scp.parent / "frame_shift").is_file():
        shutil.copyfile(feats_scp.parent / "frame_shift", out / "frame_shift")
    logging.info("units of %d utterances -> %s", num_utts, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
