#!/usr/bin/env python3
"""Dump a trained model's discrete units for a set: code indices and code vectors as Kaldi arks.

Writes one ark/scp pair per kind of unit the family gives, e.g. for vqvae
``<out-dir>/indices.{ark,scp}`` (int32 vectors, one index per 20 ms code frame) and
``<out-dir>/vectors.{ark,scp}`` (float32 ``(code frames, code_dim)`` matrices).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.progress import progress
from voiceswap.train.pretrained import load_trained
from voiceswap.train.registry import UnsupportedByFamily


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="exp/<tag> with checkpoints/ and spk2id")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--dump-dir", default="dump", help="normalised features: <dir>/norm/<feat>/<set>")
    parser.add_argument("set", help="the set to dump, e.g. eval")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        experiment = load_trained(args.model_dir)
    except FileNotFoundError as error:
        logging.error("%s", error)
        return 1
    feats_scp = Path(args.dump_dir) / "norm" / experiment.config["data"]["input_feats"] / args.set / "feats.scp"
    if not feats_scp.is_file():
        logging.error("%s not found: run stages 2-3 first", feats_scp)
        return 1
    out = Path(args.out_dir)
    num_utts = sum(1 for _ in open(feats_scp))
    writers = {}
    try:
        for utt, features in progress(read_scp(feats_scp), total=num_utts, desc="units"):
            units = experiment.family.encode_units(torch.from_numpy(np.array(features, dtype=np.float32)))
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
    logging.info("units of %d utterances -> %s", num_utts, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
