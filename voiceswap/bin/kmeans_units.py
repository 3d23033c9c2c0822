#!/usr/bin/env python3
"""Discrete units by k-means over content features (Soft-VC, stages 4-5).

  kmeans_units.py fit   [--config C --set k=v ...] <train-feats.scp> <model.npz>
  kmeans_units.py apply <model.npz> <feats.scp> <out-dir> [--name discrete]

``fit`` clusters the frames of a feats.scp (at most ``content.kmeans.max_frames`` of them, drawn
with ``content.kmeans.seed``) into ``content.model.num_units`` clusters with scikit-learn's KMeans
(seeded: the same inputs and seed give the same centroids) and saves the centroids.
``apply`` labels every frame with its nearest centroid: ``<out-dir>/<name>.{ark,scp}`` (Kaldi int32
vectors, one id per frame) and ``<out-dir>/utt2num_frames``; a ``frame_shift`` file beside the
features is copied, so the units keep their rate.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from voiceswap.cli import configure_logging
from voiceswap.data.ark import ArkWriter, read_scp
from voiceswap.data.atomic import temp_path_for, write_kaldi_map
from voiceswap.features.kmeans import assign, fit_kmeans, sample_frames
from voiceswap.progress import progress
from voiceswap.train.config import ConfigError, apply_overrides, load_config


def kmeans_settings(config_path: str, overrides: list) -> Dict[str, int]:
    config = apply_overrides(load_config(config_path), overrides)
    content = config.get("content")
    if not isinstance(content, dict) or "kmeans" not in content:
        raise ConfigError(f"{config_path} has no content.kmeans section: it is not a Soft-VC config")
    num_units = int(content["model"]["num_units"])
    acoustic = config.get("model", {}).get("num_units")
    if acoustic is not None and int(acoustic) != num_units:
        raise ConfigError(f"model.num_units ({acoustic}) must equal content.model.num_units ({num_units}): the "
                          "acoustic model reads the k-means ids; set both")
    kmeans = content["kmeans"]
    return {"num_clusters": num_units, "seed": int(kmeans["seed"]), "max_frames": int(kmeans["max_frames"]),
            "max_iter": int(kmeans["max_iter"])}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", type=int, default=1)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit k-means on a feats.scp")
    fit.add_argument("--config",
                     help="Soft-VC config: content.model.num_units and content.kmeans.{seed,max_frames,max_iter}")
    fit.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    fit.add_argument("--num-clusters", type=int, help="without --config")
    fit.add_argument("--seed", type=int, default=0, help="without --config")
    fit.add_argument("--max-frames", type=int, default=200000, help="without --config (0: all)")
    fit.add_argument("--max-iter", type=int, default=100, help="without --config")
    fit.add_argument("feats_scp")
    fit.add_argument("model")
    apply = commands.add_parser("apply", help="label every frame with its nearest centroid")
    apply.add_argument("--name", default="discrete", help="output ark/scp name")
    apply.add_argument("model")
    apply.add_argument("feats_scp")
    apply.add_argument("out_dir")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not Path(args.feats_scp).is_file():
        logging.error("%s not found: run the content-feature step of stage 4 first", args.feats_scp)
        return 1
    if args.command == "fit":
        return run_fit(args)
    return run_apply(args)


def run_fit(args: argparse.Namespace) -> int:
    try:
        if args.config:
            settings = kmeans_settings(args.config, args.overrides)
        elif args.num_clusters:
            settings = {"num_clusters": args.num_clusters, "seed": args.seed, "max_frames": args.max_frames,
                        "max_iter": args.max_iter}
        else:
            raise ConfigError("give --config (a Soft-VC config) or --num-clusters")
        frames = sample_frames((m for _, m in read_scp(args.feats_scp)), settings["max_frames"], settings["seed"])
        start = time.time()
        centroids, inertia = fit_kmeans(frames, settings["num_clusters"], settings["seed"], settings["max_iter"])
    except (ConfigError, ValueError) as error:
        logging.error("%s", error)
        return 1
    model = Path(args.model)
    model.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(model).with_suffix(".npz")  # np.savez appends .npz to other names
    np.savez(tmp, centroids=centroids, seed=settings["seed"], inertia=inertia, num_frames=frames.shape[0])
    tmp.replace(model)
    logging.info("k-means: %d clusters of %d frames (dim %d, seed %d) in %.1f s, inertia/frame %.3f -> %s",
                 settings["num_clusters"], frames.shape[0], frames.shape[1], settings["seed"], time.time() - start,
                 inertia / frames.shape[0], model)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    if not Path(args.model).is_file():
        logging.error("%s not found: run stage 4 (k-means) first", args.model)
        return 1
    with np.load(args.model) as saved:
        centroids = saved["centroids"]
    out = Path(args.out_dir)
    frames = {}
    num_utts = sum(1 for _ in open(args.feats_scp))
    with ArkWriter(out / f"{args.name}.ark", out / f"{args.name}.scp") as writer:
        for utt, matrix in progress(read_scp(args.feats_scp), total=num_utts, desc="k-means units"):
            if matrix.shape[1] != centroids.shape[1]:
                logging.error("utterance '%s' of %s has dim %d but the k-means centroids have dim %d: the features "
                              "changed since stage 4; re-run it",
                              utt, args.feats_scp, matrix.shape[1], centroids.shape[1])
                raise SystemExit(1)
            writer[utt] = assign(matrix, centroids)
            frames[utt] = matrix.shape[0]
    write_kaldi_map(out / "utt2num_frames", ((utt, str(n)) for utt, n in frames.items()))
    frame_shift = Path(args.feats_scp).parent / "frame_shift"
    if frame_shift.is_file():
        shutil.copyfile(frame_shift, out / "frame_shift")
    logging.info("k-means units of %d utterances -> %s", len(frames), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
