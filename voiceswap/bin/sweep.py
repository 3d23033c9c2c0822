#!/usr/bin/env python3
"""The runs of a sweep and its report (library: voiceswap/eval/sweep.py; the command is utils/sweep.sh).

  sweep.py runs --config C [--set k=v ...] [--sweep KEY=V1,V2 ...] [--sets "k=v k=v" ...]
                [--seeds "0 1 2"] [--seed-keys "train.seed"] --manifest DIR/sweep.json
      expand and check the sweep, write the manifest, print one ``tag<TAB>overrides`` line per run
  sweep.py report --manifest DIR/sweep.json --exp-dir exp --vocoder griffinlim [--out-dir DIR]
      read each run's exp/<tag>/scores_<vocoder>/metrics.json; write sweep.md, sweep.tsv,
      sweep_runs.tsv and plots/*.png (runs not scored yet are listed as such)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from voiceswap.cli import configure_logging
from voiceswap.eval.sweep import HEADLINE_METRICS, Sweep, SweepError, expand, metric_columns, write_report
from voiceswap.train.config import ConfigError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", type=int, default=1)
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="expand a sweep into runs and write its manifest")
    runs.add_argument("--config", required=True, help="the model config, e.g. conf/vqvae.yaml")
    runs.add_argument("--set", dest="base", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="an override of every run (repeatable)")
    runs.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                      help="a swept key and its values (repeatable: the grid of all)")
    runs.add_argument("--sets", action="append", default=[], metavar="'K=V K=V'",
                      help="one override set, a point of its own (repeatable)")
    runs.add_argument("--seeds", default="", help="seeds, e.g. '0 1 2' (each point runs once per seed)")
    runs.add_argument("--seed-keys", default="train.seed", help="the config keys each seed sets")
    runs.add_argument("--manifest", required=True, help="where to write sweep.json")
    report = commands.add_parser("report", help="the table and plots of a sweep")
    report.add_argument("--manifest", required=True, help="the sweep.json utils/sweep.sh wrote")
    report.add_argument("--exp-dir", default="exp")
    report.add_argument("--vocoder", default="griffinlim",
                        help="whose scores: exp/<tag>/scores_<vocoder> (the vocoder plus any inference settings)")
    report.add_argument("--out-dir", help="default: the manifest's dir")
    report.add_argument("--plot", default=",".join(HEADLINE_METRICS),
                        help="metrics to plot, comma-separated ids such as converted.wer, codes.perplexity")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    try:
        if args.command == "runs":
            try:
                seeds = [int(seed) for seed in args.seeds.replace(",", " ").split()]
            except ValueError:
                raise SweepError(f"--seeds {args.seeds!r}: give integers, e.g. --seeds \"0 1 2\"") from None
            sweep = expand(args.config, args.base, args.sweep, args.sets, seeds, args.seed_keys.split())
            sweep.save(Path(args.manifest))
            for run in sweep.runs:
                print(f"{run.tag}\t{' '.join(run.overrides)}")
        else:
            known = {metric for metric, _ in metric_columns()}
            wanted = [m for m in args.plot.split(",") if m]
            unknown = [m for m in wanted if m not in known]
            if unknown:
                raise SweepError(f"--plot: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
            manifest = Path(args.manifest)
            sweep = Sweep.load(manifest)
            paths = write_report(sweep, args.exp_dir, args.vocoder, Path(args.out_dir or manifest.parent), wanted)
            logging.info("sweep table: %s (and %s, %s); %d plots in %s", paths["md"], paths["tsv"].name,
                         paths["runs_tsv"].name, len(paths) - 3, paths["md"].parent / "plots")
    except (SweepError, ConfigError) as error:
        logging.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
