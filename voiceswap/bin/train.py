#!/usr/bin/env python3
"""Train a model family: ``--config conf/<family>.yaml`` plus ``--set section.key=value`` overrides.

Trains into ``--exp-dir`` (exp/<tag>) and resumes from its newest valid checkpoint unless
``--resume false``. Runs unchanged as one process, under ``torchrun --nproc_per_node=N`` and under
``srun`` (DistributedDataParallel, nccl on GPUs, gloo on CPU); ``data.batch_size`` is per process,
so the global batch is ``batch_size x world size x train.grad_accum_steps`` (logged at the start).
The resolved config (with the voiceswap version and git hash) and the speaker table ``spk2id`` are
written to the experiment dir.

``--section content`` trains the sub-config ``config["content"]`` (a complete config of another
family, e.g. Soft-VC's soft-unit head in stage 4) into ``<exp-dir>/content``, with the overrides
applied to the whole file, so both stages of one experiment share one tag. The streams the model
reads (``data.input_feats``/``target_feats``) are resolved from the whole config
(voiceswap/data/streams.py); a missing one names the stage of the plan that makes it.
"""

from __future__ import annotations

import argparse
from typing import List, Optional
import logging
import os
import sys
from pathlib import Path

import torch

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.atomic import write_kaldi_map
from voiceswap.data.dataset import read_spk2id
from voiceswap.data.kaldi_dir import DataDirError
from voiceswap.data.loaders import DimensionMismatch, build_loaders
from voiceswap.data.streams import StreamError, StreamLayout, stream_scp
from voiceswap.train.checkpoint import CheckpointError
from voiceswap.train.config import ConfigError, apply_overrides, load_config
from voiceswap.train.distributed import init_distributed, shutdown, wrap_models
from voiceswap.train.experiment import SPK2ID
from voiceswap.train.jobs import PlanError, producer, section_config, section_dir
from voiceswap.train.registry import get_family, UnknownFamilyError
from voiceswap.train.trainer import Trainer, TrainerError


def str2bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value == "true"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", required=True, help="family config, e.g. conf/vqvae.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key (repeatable); an unknown key is an error")
    parser.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    parser.add_argument("--exp-dir", required=True,
                        help="experiment dir (exp/<tag>); a --section trains into <exp-dir>/<section>")
    parser.add_argument("--resume", type=str2bool, default=True, help="resume from the newest valid checkpoint")
    parser.add_argument("--dump-dir", default="dump", help="features, units and content features (the streams)")
    parser.add_argument("--data-dir", default="data", help="Kaldi data dirs: <dir>/<set>/utt2spk")
    parser.add_argument("--train-set", default="train")
    parser.add_argument("--valid-set", default="dev")
    parser.add_argument("--ngpu", type=int, default=0, help="GPUs per process group (0: CPU); one per process")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="torch intra-op threads (default: the CPUs divided among local processes)")
    parser.add_argument("--section", default="", help="train this sub-config of --config (e.g. content)")
    parser.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    return parser


def write_spk2id(outdir: Path, spk2id: dict) -> None:
    path = outdir / SPK2ID
    if path.is_file() and read_spk2id(path) != spk2id:
        raise DataDirError(f"{path} lists other speakers than this train set: use another --exp-dir")
    write_kaldi_map(path, ((spk, str(index)) for spk, index in spk2id.items()))


def check_streams(root: dict, config: dict, layout: StreamLayout, subsets: list) -> None:
    """Every stream the model reads exists, or the error names the stage of the plan that makes it."""
    data = config["data"]
    names = [data["feats"]] if "feats" in data else [data["input_feats"], data["target_feats"]]
    family = get_family(root["family"])()
    for name in names:
        for subset in subsets:
            scp = stream_scp(root, name, subset, layout)
            if not scp.is_file():
                step = producer(family, root, name)
                maker = (f"stage {step.stage} ({step.kind}{' ' + step.section if step.section else ''})" if step
                         else "stages 2-3 (features)")
                raise DataDirError(f"stream {name!r} of set {subset} is missing ({scp}): run {maker} first")


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    layout = StreamLayout.of(args.dump_dir, args.exp_dir)
    try:
        root = apply_overrides(load_config(args.config), overrides)
        config = section_config(root, args.section)
        family = get_family(config["family"])()
        seed = config["train"]["seed"]
        check_streams(root, config, layout, [args.train_set, args.valid_set])
    except (ConfigError, UnknownFamilyError, KeyError, PlanError, StreamError, DataDirError) as error:
        logging.error("%s", error)
        return 1

    context = init_distributed(use_gpu=args.ngpu > 0)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", context.world_size))
    torch.set_num_threads(args.num_threads or max(1, (os.cpu_count() or 1) // local_processes))
    if context.rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs; the others only complain
    try:
        loaders = build_loaders(config, layout, args.data_dir, args.train_set, args.valid_set,
                                world_size=context.world_size, rank=context.rank,
                                pin_memory=context.device.type == "cuda", stream_config=root)
    except (DataDirError, DimensionMismatch, ValueError) as error:
        message = str(error)
        if args.section:  # the override that fixes it lives in the section
            message = message.replace("--set model.", f"--set {args.section}.model.")
        logging.error("%s", message)
        shutdown()
        return 1
    spk2id = loaders.spk2id
    outdir = section_dir(Path(args.exp_dir), args.section)
    if context.rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
        write_spk2id(outdir, spk2id)
    logging.info("%s: %d train utterances, %d speakers, %d valid utterances", config["family"],
                 len(loaders.train.dataset), len(spk2id), len(loaders.valid.dataset))

    torch.manual_seed(seed)  # the same initial weights for the same seed, on every rank
    try:
        models = family.build(config, num_speakers=len(spk2id))
    except ValueError as error:  # a model config that cannot work (e.g. HiFi-GAN upsampling vs hop)
        logging.error("%s: %s", args.config, error)
        shutdown()
        return 1
    # Optimisers see the plain parameters; DDP wraps the same tensors after moving them.
    models = {name: model.to(context.device) for name, model in models.items()}
    optimizers = family.optimizers(models, config)
    models = wrap_models(models, context)
    try:
        trainer = Trainer(family, models, optimizers, family.schedulers(optimizers, config),
                          loaders.train, loaders.valid, config, outdir, rank=context.rank,
                          world_size=context.world_size, device=context.device)
        resumed = trainer.resume() if args.resume else False
        if not resumed and config["train"].get("init_from"):
            trainer.initialize_from(config["train"]["init_from"])
        trainer.train()
    except (TrainerError, ConfigError, CheckpointError) as error:
        logging.error("%s", error)
        return 1
    finally:
        shutdown()
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
