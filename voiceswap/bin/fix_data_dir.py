#!/usr/bin/env python3
"""Make a Kaldi data dir consistent: keep utterances present in every file, sort, rebuild spk2utt.

Originals go to <data-dir>/.backup/ first, as Kaldi's fix_data_dir.sh does.
"""

from __future__ import annotations

import argparse
import logging
import sys

from voiceswap.data.kaldi_dir import DataDirError, fix_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="fix_data_dir: %(levelname)s: %(message)s")
    try:
        kept = fix_data_dir(args.data_dir)
    except DataDirError as error:
        logging.error("%s", error)
        return 1
    logging.info("%s: %d utterances kept", args.data_dir, kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
