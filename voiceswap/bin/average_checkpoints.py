#!/usr/bin/env python3
"""Average the last K checkpoints of an experiment (or the given ones) into one loadable checkpoint.

    average_checkpoints.py --exp-dir exp/<tag> --last 5            # -> exp/<tag>/checkpoints/avg_<a>-<b>.pt
    average_checkpoints.py --out avg.pt ckpt1.pt ckpt2.pt ...

Model weights and EMA weights are averaged element-wise (voiceswap/train/averaging.py); the result
is for inference (``convert.py --checkpoint PATH``), not for resuming training. Works for every family.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from voiceswap.cli import configure_logging
from voiceswap.train.averaging import (AveragingError, average_checkpoints, averaged_name, last_checkpoints,
                                      save_averaged)
from voiceswap.train.checkpoint import checkpoint_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", help="the experiment whose newest --last step checkpoints to average")
    parser.add_argument("--last", type=int, default=5, help="how many of the newest step_<N>.pt to average")
    parser.add_argument("--out", help="the averaged checkpoint (default: <exp-dir>/checkpoints/avg_<first>-<last>.pt)")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("checkpoints", nargs="*", help="checkpoints to average, oldest first (instead of --exp-dir)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    if bool(args.exp_dir) == bool(args.checkpoints):
        logging.error("give either --exp-dir (with --last) or the checkpoint files, not both or neither")
        return 2
    if args.checkpoints and not args.out:
        logging.error("give --out for the averaged checkpoint of the files %s", " ".join(args.checkpoints))
        return 2
    try:
        paths = last_checkpoints(args.exp_dir, args.last) if args.exp_dir else [Path(p) for p in args.checkpoints]
        averaged = average_checkpoints(paths)
        out = save_averaged(averaged, Path(args.out) if args.out
                            else checkpoint_dir(args.exp_dir) / averaged_name(averaged["averaged_steps"]))
    except AveragingError as error:
        logging.error("%s", error)
        return 1
    logging.info("averaged steps %s -> %s", " ".join(map(str, averaged["averaged_steps"])), out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
