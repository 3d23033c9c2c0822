#!/usr/bin/env python3
"""What the recipe asks of a family config, so that run.sh never names a family.

  plan.py family --config C [--set k=v ...] --role conversion|vocoder   print the family name (checked)
  plan.py tag --config C [--set k=v ...]                                print the experiment tag
  plan.py jobs --stage N --config C [--set k=v ...] --exp-dir E ...     print the jobs of stage N
  plan.py checkpoint EXP_DIR [--made-by "stage 4"] [--config C]        print the checkpoint stages 5/8/9 use
  plan.py show --config C                                               print the plan, one step a line

``jobs`` prints one tab-separated line per job (voiceswap.train.jobs.JOB_FIELDS): launcher, the
stamped output dir (``-``: none), log, stamp text, stamp inputs, a description and the command.
Nothing printed means the family has nothing to do in that stage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.streams import StreamError
from voiceswap.features.content import ContentFeatureError
from voiceswap.train.checkpoint import CheckpointError
from voiceswap.train.config import ConfigError, apply_overrides, experiment_tag, load_config
from voiceswap.train.experiment import Experiment, ExperimentError
from voiceswap.train.jobs import PlanError, RecipeContext, stage_jobs
from voiceswap.train.registry import UnknownFamilyError, get_family, registered_families

#: Which conf/ dir holds the configs of a role (for the error that lists them).
CONFIG_DIRS = {"conversion": Path("conf"), "vocoder": Path("conf/vocoder")}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="family config, e.g. conf/vqvae.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override (repeatable)")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", type=int, default=1)
    commands = parser.add_subparsers(dest="command", required=True)
    family = commands.add_parser("family", help="the config's family, checked against a role")
    add_config_args(family)
    family.add_argument("--role", choices=sorted(CONFIG_DIRS), required=True)
    tag = commands.add_parser("tag", help="the experiment tag of a config and its overrides")
    add_config_args(tag)
    jobs = commands.add_parser("jobs", help="the jobs of one stage")
    add_config_args(jobs)
    jobs.add_argument("--stage", type=int, required=True)
    jobs.add_argument("--exp-dir", required=True, help="the experiment dir, exp/<tag>")
    jobs.add_argument("--dump-dir", default="dump")
    jobs.add_argument("--data-dir", default="data")
    jobs.add_argument("--train-set", default="train")
    jobs.add_argument("--dev-set", default="dev")
    jobs.add_argument("--eval-set", default="eval")
    jobs.add_argument("--nj", type=int, default=1, help="run.sh's --nj: threads of a neural feature extractor's job")
    checkpoint = commands.add_parser("checkpoint", help="the checkpoint later stages load from an experiment")
    checkpoint.add_argument("--made-by", default="its training stage", help="the stage that trains it (for errors)")
    checkpoint.add_argument("--config", help="the experiment's config: print nothing if its family trains nothing "
                            "(e.g. the griffinlim vocoder)")
    checkpoint.add_argument("exp_dir")
    show = commands.add_parser("show", help="the plan of a config")
    add_config_args(show)
    commands.add_parser("models", help="run.sh --model all: the default config of every conversion family")
    return parser


def default_models() -> List[str]:
    """The config name that stands for each registered conversion family (``run.sh --model all``)."""
    names = []
    for name in registered_families("conversion"):
        default = get_family(name).default_config
        path = CONFIG_DIRS["conversion"] / f"{default}.yaml"
        if default is None or not path.is_file():
            raise ConfigError(f"conversion family {name!r} names no default config under {CONFIG_DIRS['conversion']} "
                              f"(its default_config is {default!r}); --model all needs one per family")
        names.append(default)
    return names


def configs_of_role(role: str) -> str:
    """``name (family)`` of every config of ``role`` under conf/, for error messages."""
    found = []
    for path in sorted(CONFIG_DIRS[role].glob("*.yaml")):
        try:
            name = load_config(path).get("family")
            if name in registered_families(role):
                found.append(f"{path.stem} ({name})")
        except ConfigError:
            continue
    return ", ".join(found) or "(none)"


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    try:
        if args.command == "models":
            print(" ".join(default_models()))
            return 0
        if args.command == "checkpoint":
            if args.config:
                config = load_config(args.config)
                if not any(step.kind == "train" for step in get_family(config.get("family"))().plan(config)):
                    return 0
            print(Experiment(args.exp_dir, args.made_by).checkpoint())
            return 0
        if args.command == "family" and not Path(args.config).is_file():
            flag = "--model" if args.role == "conversion" else "--vocoder"
            raise ConfigError(f"no config {args.config} for {flag} {Path(args.config).stem!r}; {flag} takes one of: "
                              f"{configs_of_role(args.role)}")
        config = apply_overrides(load_config(args.config), args.overrides)
        family = get_family(config.get("family"))()
        if args.command == "family":
            if family.role != args.role:
                flag = "--model" if args.role == "conversion" else "--vocoder"
                raise ConfigError(f"{args.config}: family {config['family']!r} is a {family.role}, not a {args.role} "
                                  f"family; {flag} takes one of: {configs_of_role(args.role)}")
            print(config["family"])
        elif args.command == "tag":
            print(experiment_tag(args.config, args.overrides))
        elif args.command == "show":
            for step in family.plan(config):
                print(f"stage {step.stage}: {step.kind} {step.section or '.'}"
                      f"{' reads ' + ','.join(step.reads) if step.reads else ''}"
                      f"{' writes ' + ','.join(step.writes) if step.writes else ''}")
        else:
            ctx = RecipeContext(args.config, args.overrides, Path(args.exp_dir), Path(args.dump_dir),
                                Path(args.data_dir), args.train_set, args.dev_set, args.eval_set, args.nj)
            for job in stage_jobs(args.stage, family, config, ctx):
                print(job.line())
    except (ConfigError, UnknownFamilyError, PlanError, StreamError, ContentFeatureError, ExperimentError,
            CheckpointError) as error:
        logging.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
