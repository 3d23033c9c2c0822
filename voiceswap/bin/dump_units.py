#!/usr/bin/env python3
"""Dump a trained model's discrete units for a set: code indices and code vectors as Kaldi arks.

Writes one ark/scp pair per kind of unit the family gives, e.g. for vqvae
``<out-dir>/indices.{ark,scp}`` (int32 vectors, one index per 20 ms code frame) and
``<out-dir>/vectors.{ark,scp}`` (float32 ``(code frames, code_dim)`` matrices), plus
``<out-dir>/utt2num_frames``. ``--feats-scp NAME=TEMPLATE`` reads input feature NAME from
TEMPLATE (``{set}`` = the set) instead of ``<dump-dir>/norm/NAME/<set>/feats.scp``, e.g. Soft-VC's
content features; a ``frame_shift`` file beside them is copied.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.data.atomic import write_kaldi_map
from voiceswap.progress import progress
from voiceswap.train.pretrained import load_trained
from voiceswap.train.registry import UnsupportedByFamily


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="exp/<tag> with checkpoints/ and spk2id")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--dump-dir", default="dump", help="normalised features: <dir>/norm/<feat>/<set>")
    parser.add_argument("--feats-scp", action="append", default=[], metavar="NAME=TEMPLATE",
                        help="feats.scp of input feature NAME, {set} = the set (e.g. content features)")
    parser.add_argument("set", help="the set to dump, e.g. eval")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    configure_logging(args.verbose)
    try:
        experiment = load_trained(args.model_dir)
    except FileNotFoundError as error:
        logging.error("%s", error)
        return 1
    input_feats = experiment.config["data"]["input_feats"]
    templates = dict(value.split("=", 1) for value in args.feats_scp if "=" in value)
    if input_feats in templates:
        feats_scp = Path(templates[input_feats].replace("{set}", args.set))
    else:
        feats_scp = Path(args.dump_dir) / "norm" / input_feats / args.set / "feats.scp"
    if not feats_scp.is_file():
        logging.error("%s not found: run %s first", feats_scp,
                      "the stage that makes it" if input_feats in templates else "stages 2-3")
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
                # Index sequences stay integers (Kaldi int32 vectors); everything else is float32.
                dtype = np.int32 if not value.is_floating_point() else np.float32
                writers[name][utt] = value.numpy().astype(dtype)
    except UnsupportedByFamily as error:
        logging.error("%s: %s", args.model_dir, error)
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
    if same_rate and (feats_scp.parent / "frame_shift").is_file():
        shutil.copyfile(feats_scp.parent / "frame_shift", out / "frame_shift")
    logging.info("units of %d utterances -> %s", num_utts, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
