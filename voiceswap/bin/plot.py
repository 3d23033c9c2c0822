#!/usr/bin/env python3
"""Stage 10: analysis plots of one experiment, as PNG files under ``<out-dir>`` (exp/<tag>/plots_<vocoder>).

loss_curves.png                train/valid curves from metrics.jsonl
spectrogram_<n>.png            source | converted | reference log-mel of a few conversion pairs
speaker_similarity.png         mean similarity to the target of every source x target speaker pair (stage 9)
code_usage.png                 code histogram on the eval set                        (models with units)
codebook_pca.png (_umap.png)   codebook and encoder frames in 2-D, by speaker and by code (UMAP if installed)
bigrams_phones.png, bigrams_codes.png   bigram matrices with and without the diagonal
p_code_given_phone.png         P(code | phone) heat map
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List

import kaldiio
import numpy as np
import torch

from voiceswap.cli import configure_logging
from voiceswap.data.kaldi_dir import read_kaldi_map
from voiceswap.eval import codes as C
from voiceswap.eval import plots
from voiceswap.eval.layout import convert_dir, scores_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="exp/<tag>")
    parser.add_argument("--vocoder", default="griffinlim",
                        help="whose stage-8/9 outputs to plot: exp/<tag>/{convert,scores}_<vocoder>")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dump-dir", default="dump")
    parser.add_argument("--eval-set", default="eval")
    parser.add_argument("--train-set", default="train")
    parser.add_argument("--feats", default="logmel80", help="log-mel features under dump/raw")
    parser.add_argument("--num-spectrograms", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=20000, help="encoder frames in the 2-D projections")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("out_dir")
    return parser


def plot_spectrograms(args, exp: Path, out: Path) -> List[Path]:
    conversions = convert_dir(exp, args.vocoder) / "conversions"
    if not conversions.is_file():
        logging.warning("%s is missing (stage 8): no spectrograms", conversions)
        return []
    rows = [line.split() for line in conversions.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r[5] == "conversion"]
    chosen = [rows[i] for i in C_spread(len(rows), args.num_spectrograms)]
    real = kaldiio.load_scp(str(Path(args.dump_dir) / "raw" / args.feats / args.eval_set / "feats.scp"))
    converted = kaldiio.load_scp(str(convert_dir(exp, args.vocoder) / "mel.scp"))
    written = []
    for n, (out_id, source, source_spk, target_spk, reference, _) in enumerate(chosen, 1):
        panels = [(f"source {source}", np.asarray(real[source])),
                  (f"converted -> {target_spk}", np.asarray(converted[out_id]))]
        if reference != "-":
            panels.append((f"reference {reference}", np.asarray(real[reference])))
        written.append(plots.spectrograms(panels, out / f"spectrogram_{n}.png", f"{source_spk} -> {target_spk}"))
    return written


def C_spread(n: int, k: int) -> List[int]:
    from voiceswap.eval.plan import spread

    return spread(n, k)


def plot_units(args, exp: Path, out: Path) -> List[Path]:
    units = Path(args.dump_dir) / "units" / exp.name / args.eval_set
    ctm_path = Path(args.data_dir) / args.eval_set / "phones.ctm"
    if not (units / "indices.scp").is_file():
        logging.info("no units in %s: the model has no discrete codes; unit plots skipped", units)
        return []
    written = []
    utt2spk = read_kaldi_map(Path(args.data_dir) / args.eval_set / "utt2spk")
    indices = {u: np.asarray(v).reshape(-1).astype(np.int64)
               for u, v in kaldiio.load_scp(str(units / "indices.scp")).items()}
    all_codes = np.concatenate(list(indices.values()))
    import voiceswap.families  # noqa: F401
    from voiceswap.train.experiment import Experiment

    experiment = Experiment(exp).load()
    model = experiment.models["model"]
    from voiceswap.eval.units import inventory_size

    codebook_size = inventory_size(units, list(indices.values()))  # stage 5 records it beside the units
    written.append(plots.code_usage(all_codes, codebook_size, out / "code_usage.png"))
    codebook = next((b for name, b in list(model.named_buffers()) + list(model.named_parameters())
                     if name.endswith("codebook") and b.dim() == 2), None)
    if codebook is not None and hasattr(model, "encode"):
        feats = kaldiio.load_scp(str(Path(args.dump_dir) / "norm" / experiment.config["data"]["input_feats"]
                                     / args.eval_set / "feats.scp"))
        frames, speakers, frame_codes = [], [], []
        with torch.no_grad():
            for utt in sorted(indices):
                z = model.encode(torch.from_numpy(np.array(feats[utt], dtype=np.float32)).T.unsqueeze(0))[0].T.numpy()
                n = min(len(z), len(indices[utt]))
                frames.append(z[:n])
                frame_codes.append(indices[utt][:n])
                speakers += [utt2spk[utt]] * n
        frames_np, codes_np = np.concatenate(frames), np.concatenate(frame_codes)
        if len(frames_np) > args.max_frames:
            keep = np.random.default_rng(0).choice(len(frames_np), args.max_frames, replace=False)
            frames_np, codes_np, speakers = frames_np[keep], codes_np[keep], [speakers[i] for i in keep]
        cb = codebook.detach().numpy()
        written.append(plots.projection(cb, frames_np, speakers, codes_np, out / "codebook_pca.png", "pca"))
        try:
            import umap  # noqa: F401
            written.append(plots.projection(cb, frames_np, speakers, codes_np, out / "codebook_umap.png", "umap"))
        except ImportError:
            logging.info("umap-learn is not installed: PCA projection only")
    if ctm_path.is_file():
        alignments = C.read_ctm(str(ctm_path))
        frames_count = read_kaldi_map(Path(args.dump_dir) / "raw" / args.feats / args.eval_set / "utt2num_frames")
        phone_seqs, code_seqs = [], []
        hop = 0.01  # feature hop of our configs; the code shift is derived from the frame ratio
        for utt in sorted(indices):
            if utt not in alignments:
                continue
            factor = max(1, round(int(frames_count[utt]) / len(indices[utt])))
            phone_seqs.append(C.frame_labels(alignments[utt], len(indices[utt]), factor * hop))
            code_seqs.append(indices[utt].tolist())
        phone_labels = sorted({p for s in phone_seqs for p in s})
        code_labels = sorted({c for s in code_seqs for c in s})
        for what, seqs, labels in (("phones", phone_seqs, phone_labels), ("codes", code_seqs, code_labels)):
            written.append(plots.bigrams(C.bigram_matrix(seqs, labels),
                                         C.bigram_matrix(seqs, labels, zero_diagonal=True),
                                         labels, out / f"bigrams_{what}.png", what[:-1]))
        flat_p = [p for s in phone_seqs for p in s]
        flat_c = [c for s in code_seqs for c in s]
        phones, codes, table = C.code_given_phone(flat_p, flat_c)
        written.append(plots.matrix(table, phones, codes, out / "p_code_given_phone.png", "P(code | phone)",
                                    "code", "phone"))
    else:
        logging.info("no %s: phone plots skipped", ctm_path)
    return written


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    torch.set_num_threads(1)
    exp, out = Path(args.exp_dir), Path(args.out_dir)
    if not exp.is_dir():
        logging.error("%s is not an experiment dir: run stages 4-9 first", exp)
        return 1
    written = []
    metrics = exp / "metrics.jsonl"
    if metrics.is_file():
        path = plots.loss_curves(metrics, out / "loss_curves.png")
        written += [path] if path else []
    else:
        logging.warning("%s is missing (stage 4): no loss curves", metrics)
    written += plot_spectrograms(args, exp, out)
    similarity = scores_dir(exp, args.vocoder) / "similarity.json"
    if similarity.is_file():
        sim = json.loads(similarity.read_text())
        values = np.array([[np.nan if v is None else v for v in row] for row in sim["matrix"]], dtype=float)
        if values.size:
            written.append(plots.matrix(values, sim["speakers"], sim["speakers"], out / "speaker_similarity.png",
                                        "similarity of outputs to the target centroid", "target speaker",
                                        "source speaker", annotate=True))
    else:
        logging.warning("%s is missing (stage 9): no speaker-similarity matrix", similarity)
    written += plot_units(args, exp, out)
    logging.info("%d plots in %s", len(written), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
