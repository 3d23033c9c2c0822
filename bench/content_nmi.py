#!/usr/bin/env python3
"""Benchmark: how speaker-free and how phone-like is a content-feature stream? Prints numbers; asserts nothing.

Reproduces the table of README.md, "Content features (``content.features``)": k-means with
``--num-clusters`` (100) clusters is fitted on the train set's frames of a content stream (at most
``--max-frames`` (100000) frames, drawn with ``--seed`` (0); scikit-learn KMeans, k-means++, one
init: voiceswap/features/kmeans.py, the clustering of Soft-VC's units), every frame of the dev set
is assigned to its nearest centroid, and the dev cluster ids are scored with scikit-learn's
``normalized_mutual_info_score`` against

* the frame's speaker (``<data-dir>/<dev-set>/utt2spk``): lower is more speaker-free;
* the frame's phone (``<data-dir>/<dev-set>/phones.ctm``): higher is more phone-like.

Frames are labelled as the unit metrics do (voiceswap/eval/codes.py): frame ``i`` takes the phone
whose interval holds its centre ``(i + 0.5) * frame_shift``, frames past the last interval take the
last phone, silences (``pau``) are phones like any other, and dev utterances without an alignment
are left out (of both scores, so that both count the same frames). ``--normalise`` z-normalises
every dimension with the train frames' mean and standard deviation before k-means (its own row).

    python bench/content_nmi.py --data-dir data --content-dir dump/content/whisper_tiny_en [--normalise]
    python bench/content_nmi.py --data-dir data --feats-scp-train T.scp --feats-scp-dev D.scp --label NAME

A stream's frame shift is ``<content-dir>/<set>/frame_shift`` when present, else ``--frame-shift``
(0.02 s). Prints a markdown table, one row per stream. Needs stage 4's content features (or any
Kaldi feats.scp) and the corpus's phone alignments. Run from the repo root after ``. ./path.sh``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import kaldiio
import numpy as np

from voiceswap.data.kaldi_dir import read_kaldi_map
from voiceswap.eval.codes import frame_labels, read_ctm
from voiceswap.features.kmeans import assign, fit_kmeans, sample_frames

logger = logging.getLogger("content_nmi")

HEADER = "| content features | NMI with speaker | NMI with phone |\n|---|---|---|"


class InputError(Exception):
    """A missing or unusable input; the message names the file."""


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="Kaldi data dirs: <dir>/<set>/{utt2spk,phones.ctm}")
    parser.add_argument("--content-dir", nargs="+", default=[],
                        help="content streams, each with <dir>/<set>/feats.scp (one row per dir)")
    parser.add_argument("--feats-scp-train", help="instead of --content-dir: the train set's feats.scp")
    parser.add_argument("--feats-scp-dev", help="instead of --content-dir: the dev set's feats.scp")
    parser.add_argument("--label", help="the row's name for --feats-scp-*, default the train scp's path")
    parser.add_argument("--train-set", default="train")
    parser.add_argument("--dev-set", default="dev")
    parser.add_argument("--frame-shift", type=float, default=0.02,
                        help="seconds per frame where <content-dir>/<set>/frame_shift is missing")
    parser.add_argument("--normalise", action="store_true",
                        help="z-normalise each dimension with the train frames' mean/std before k-means")
    parser.add_argument("--num-clusters", type=int, default=100)
    parser.add_argument("--max-frames", type=int, default=100000, help="at most this many train frames for k-means")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=1, help="BLAS/OpenMP threads")
    return parser


def existing(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path} is missing: {hint}")
    return path


def read_frame_shift(set_dir: Optional[Path], default: float) -> float:
    """``<set_dir>/frame_shift`` (seconds, as stage 4 writes it) or ``default``."""
    path = set_dir / "frame_shift" if set_dir is not None else None
    if path is None or not path.is_file():
        logger.info("%s: no frame_shift file, taking --frame-shift %g s", set_dir, default)
        return default
    text = path.read_text().strip()
    try:
        shift = float(text)
    except ValueError:
        raise InputError(f"{path}: expected the frame shift in seconds, got {text!r}") from None
    if shift <= 0:
        raise InputError(f"{path}: frame shift must be positive, got {shift}")
    return shift


def load_stream(scp: Path) -> List[Tuple[str, np.ndarray]]:
    """``(utt, (T, D) float32)`` of every entry of a Kaldi feats.scp, in its order."""
    out = [(utt, np.asarray(matrix, dtype=np.float32)) for utt, matrix in kaldiio.load_scp_sequential(str(scp))]
    if not out:
        raise InputError(f"{scp} lists no utterance")
    dims = {m.shape[1] if m.ndim == 2 else -1 for _, m in out}
    if len(dims) != 1 or -1 in dims:
        raise InputError(f"{scp}: expected (frames, dims) matrices of one width, got widths {sorted(dims)}")
    return out


def dev_labels(dev: List[Tuple[str, np.ndarray]], data_set: Path, frame_shift: float
               ) -> Tuple[np.ndarray, List[str], List[str]]:
    """Dev frames of the aligned utterances, with each frame's speaker and phone."""
    utt2spk = read_kaldi_map(existing(data_set / "utt2spk", "the dev set's Kaldi data dir (stage 1)"))
    alignments = read_ctm(str(existing(data_set / "phones.ctm", "the corpus has no phone alignments")))
    frames, speakers, phones = [], [], []
    unaligned, mismatch = [], []
    for utt, matrix in dev:
        if utt not in alignments:
            unaligned.append(utt)
            continue
        if utt not in utt2spk:
            raise InputError(f"{data_set / 'utt2spk'} has no speaker for {utt} (in the dev feats.scp): "
                             "features and data dir are of different corpora?")
        frames.append(matrix)
        speakers += [utt2spk[utt]] * len(matrix)
        phones += frame_labels(alignments[utt], len(matrix), frame_shift)
        mismatch.append(abs(len(matrix) * frame_shift - alignments[utt][-1][1]))
    if unaligned:
        logger.warning("%d of %d dev utterances have no alignment in %s and are left out (e.g. %s)",
                       len(unaligned), len(dev), data_set / "phones.ctm", unaligned[0])
    if not frames:
        raise InputError(f"no utterance of the dev features has an alignment in {data_set / 'phones.ctm'}")
    # A wrong frame shift shows as stream durations far from the alignments' ends.
    median = float(np.median(mismatch))
    (logger.warning if median > 0.1 else logger.info)(
        "median |frames x %g s - alignment end| = %.3f s over %d utterances", frame_shift, median, len(mismatch))
    return np.concatenate(frames), speakers, phones


def score_stream(label: str, train_scp: Path, dev_scp: Path, train_shift_dir: Optional[Path],
                 dev_shift_dir: Optional[Path], args: argparse.Namespace) -> str:
    """One markdown row: ``| label | NMI with speaker | NMI with phone |``."""
    from sklearn.metrics import normalized_mutual_info_score

    start = time.perf_counter()
    existing(train_scp, "extract the train set's content features (stage 4)")
    existing(dev_scp, "extract the dev set's content features (stage 4)")
    train_shift = read_frame_shift(train_shift_dir, args.frame_shift)
    dev_shift = read_frame_shift(dev_shift_dir, args.frame_shift)
    if abs(train_shift - dev_shift) > 1e-9:
        raise InputError(f"train and dev frame shifts differ ({train_shift} vs {dev_shift} s): not one stream")
    train = load_stream(train_scp)
    dev = load_stream(dev_scp)
    if train[0][1].shape[1] != dev[0][1].shape[1]:
        raise InputError(f"{train_scp} has {train[0][1].shape[1]} dims but {dev_scp} {dev[0][1].shape[1]}")
    dev_frames, speakers, phones = dev_labels(dev, Path(args.data_dir) / args.dev_set, dev_shift)

    train_frames = [m for _, m in train]
    if args.normalise:
        stacked = np.concatenate(train_frames).astype(np.float64)
        mean, std = stacked.mean(0), stacked.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        del stacked
        train_frames = [((m - mean) / std).astype(np.float32) for m in train_frames]
        dev_frames = ((dev_frames - mean) / std).astype(np.float32)
        label = f"{label}, z-normalised (train mean/std)"
    sample = sample_frames(train_frames, args.max_frames, args.seed)
    logger.info("%s: k-means %d on %d of %d train frames (%d dims, %g s shift), %d dev frames", label,
                args.num_clusters, len(sample), sum(len(m) for m in train_frames), sample.shape[1], dev_shift,
                len(dev_frames))
    fit_start = time.perf_counter()
    centroids, inertia = fit_kmeans(sample, args.num_clusters, args.seed)
    logger.info("k-means fitted in %.1f s (inertia %.4g)", time.perf_counter() - fit_start, inertia)
    clusters = assign(dev_frames, centroids)
    nmi_speaker = normalized_mutual_info_score(speakers, clusters)
    nmi_phone = normalized_mutual_info_score(phones, clusters)
    logger.info("%s: %d dev clusters used, %d speakers, %d phones; NMI speaker %.4f, phone %.4f; %.1f s", label,
                len(np.unique(clusters)), len(set(speakers)), len(set(phones)), nmi_speaker, nmi_phone,
                time.perf_counter() - start)
    return f"| {label} | {nmi_speaker:.3f} | {nmi_phone:.3f} |"


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if bool(args.feats_scp_train) != bool(args.feats_scp_dev):
        parser.error("--feats-scp-train and --feats-scp-dev go together")
    if not args.content_dir and not args.feats_scp_train:
        parser.error("give --content-dir DIR..., or --feats-scp-train and --feats-scp-dev")
    streams = [(Path(d).name, Path(d) / args.train_set / "feats.scp", Path(d) / args.dev_set / "feats.scp",
                Path(d) / args.train_set, Path(d) / args.dev_set) for d in args.content_dir]
    if args.feats_scp_train:
        train_scp, dev_scp = Path(args.feats_scp_train), Path(args.feats_scp_dev)
        streams.append((args.label or str(train_scp), train_scp, dev_scp, train_scp.parent, dev_scp.parent))

    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    rows = []
    with threadpool_limits(limits=args.num_threads):
        for label, train_scp, dev_scp, train_dir, dev_dir in streams:
            try:
                rows.append(score_stream(label, train_scp, dev_scp, train_dir, dev_dir, args))
            except InputError as error:
                logger.error("%s", error)
                return 1
    print(f"\nk-means {args.num_clusters} on {args.train_set} (<= {args.max_frames} frames, seed {args.seed}), "
          f"NMI of the {args.dev_set} frames' clusters ({args.data_dir})\n")
    print(HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
