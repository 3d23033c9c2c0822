#!/usr/bin/env python3
"""Skip finished work: a stage's output dir holds a `.done` stamp hashing what it was made from.

  stamp.py check <out-dir> [--wav-scp F] [--text S] <input-file>...   exit 0 if up to date
  stamp.py write <out-dir> [--wav-scp F] [--text S] <input-file>...   record the inputs

The hash covers the input files' contents, each --text string (options that change the output)
and, with --wav-scp, the size and modification time of every audio file it lists, so that
regenerated audio under an unchanged wav.scp is noticed.
"""

import argparse
import hashlib
import os
import sys


def digest(inputs, wav_scps, texts):
    hasher = hashlib.sha1()
    for path in inputs:
        if not os.path.isfile(path):
            return None
        hasher.update(path.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                hasher.update(block)
    for wav_scp in wav_scps:
        with open(wav_scp) as f:
            for line in f:
                entry = line.split(maxsplit=1)[1].strip() if " " in line.strip() else ""
                if entry.endswith("|") or not os.path.isfile(entry):
                    hasher.update(entry.encode())
                    continue
                status = os.stat(entry)
                hasher.update(f"{entry} {status.st_size} {status.st_mtime_ns}".encode())
    for text in texts:
        hasher.update(b"\0" + text.encode())
    return hasher.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("check", "write"))
    parser.add_argument("out_dir")
    parser.add_argument("--wav-scp", action="append", default=[])
    parser.add_argument("--text", action="append", default=[])
    parser.add_argument("inputs", nargs="*")
    args = parser.parse_intermixed_args()
    stamp_path = os.path.join(args.out_dir, ".done")
    current = digest(args.inputs, args.wav_scp, args.text)
    if args.action == "check":
        if current is None or not os.path.isfile(stamp_path):
            return 1
        with open(stamp_path) as f:
            return 0 if f.read().strip() == current else 1
    if current is None:
        missing = [path for path in args.inputs if not os.path.isfile(path)]
        print(f"stamp.py: cannot stamp {args.out_dir}: missing input(s) {missing}", file=sys.stderr)
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    tmp = f"{stamp_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(current + "\n")
    os.replace(tmp, stamp_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
