#!/usr/bin/env python3
"""Sample utterances from a trained diffusion model and score them as vq-voice-swap (seed 000) does.

Draws ``--num-samples`` log-mels of ``--seconds`` each from the diffusion decoder of ``--exp-dir``
without content (the zeroed codes its ``diffusion.code_dropout`` trained it on), or waveforms from
the seed's waveform model (``conf/diffusion_waveform.yaml``, written without a vocoder), either for the
speakers of the model in turn (``--speakers all``, speaker-conditional), for the given speaker
names, or with the "no speaker" label (``--speakers none``, unconditional; needs
``diffusion.label_dropout`` > 0). The ``inference:`` settings apply (``--set inference.steps=25``,
``inference.guidance=classifier`` steers each sample toward its speaker). Each sample is vocoded
(``--vocoder-config``) and written to ``<out-dir>/wav/sample_XXXXXX.wav``; ``<out-dir>/samples``
lists ``id speaker``.

With ``--classifier-dir`` (the metric suite's speaker classifier, ``exp/speaker_classifier_<corpus>``
as stage 9 trains it) the samples are scored like stage 9 scores converted speech, from the log-mel of
the written audio: the seed's **class score** (exp of the mean KL between each sample's speaker
posterior and their mean; high: each sample is clearly one speaker, and all speakers appear) and
**Frechet score** (between the classifier's penultimate features of the samples and of the real
train-set utterances; lower is better). ``--dev-set`` adds the eps-MSE in the four quartiles of t
on that set (the seed's eval script). Everything goes to ``<out-dir>/scores.json``.

Example (after stages 4 and 9 of ``./run.sh --model diffusion``):
    generate.py --exp-dir exp/diffusion --num-samples 200 --classifier-dir exp/speaker_classifier_synth \\
        --dev-set dev exp/diffusion/generate
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import kaldiio
import numpy as np
import torch

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.cli import configure_logging
from voiceswap.conversion import PEAK, ConversionError, TargetFeatures, write_wav
from voiceswap.data.atomic import atomic_open
from voiceswap.data.audio import load_audio
from voiceswap.data.finite import NonFiniteError, check_finite
from voiceswap.data.kaldi_dir import DataDirError
from voiceswap.data.loaders import build_loaders
from voiceswap.data.streams import StreamLayout
from voiceswap.eval.classifier_scores import class_score, frechet_score
from voiceswap.features.spectral import FeatureExtractor
from voiceswap.progress import progress
from voiceswap.train.checkpoint import CheckpointError
from voiceswap.train.config import ConfigError, load_config
from voiceswap.train.experiment import Experiment, ExperimentError, LoadedExperiment, load_vocoder
from voiceswap.train.registry import UnsupportedByFamily


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="a trained diffusion experiment (exp/<tag>)")
    parser.add_argument("--set", dest="inference_overrides", action="append", default=[],
                        metavar="inference.KEY=VALUE", help="sampling settings (the config's inference: section)")
    parser.add_argument("--num-samples", type=int, default=200, help="how many utterances (the seed: 10,000)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of every sample (the seed: 4 s)")
    parser.add_argument("--speakers", default="all",
                        help="all: the model's speakers in turn; none: unconditional; or names, comma-separated")
    parser.add_argument("--batch-size", type=int, default=8, help="samples drawn at once")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--dump-dir", default="dump", help="features: <dir>/stats and <dir>/raw (and <dir>/norm)")
    parser.add_argument("--data-dir", default="data", help="Kaldi data dirs (for --dev-set)")
    parser.add_argument("--train-set", default="train", help="the Frechet reference and the feature config")
    parser.add_argument("--dev-set", default=None, help="also report eps-MSE per quartile of t on this set")
    parser.add_argument("--feats", default="logmel80", help="the log-mel features of the judge (a mel model: its own)")
    parser.add_argument("--vocoder-config", default="conf/vocoder/griffinlim.yaml", help="conf/vocoder/<name>.yaml")
    parser.add_argument("--vocoder-dir", help="a trained vocoder's experiment dir (stage 7)")
    parser.add_argument("--classifier-dir", help="the metric suite's speaker classifier: class and Frechet scores")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("out_dir")
    return parser


def sample_speakers(spec: str, spk2id: Dict[str, int], count: int) -> List[Optional[str]]:
    """The speaker of every sample (None: unconditional)."""
    if spec == "none":
        return [None] * count
    names = sorted(spk2id, key=lambda spk: spk2id[spk]) if spec == "all" else spec.split(",")
    unknown = [name for name in names if name not in spk2id]
    if unknown:
        raise ConversionError(f"--speakers: {unknown} are not speakers of the model ({' '.join(spk2id)})")
    return [names[i % len(names)] for i in range(count)]


def dev_eps_mse(model: LoadedExperiment, args: argparse.Namespace) -> Dict[str, float]:
    """The family's valid metrics (eps-MSE per quartile of t, fixed noise) averaged over ``--dev-set``."""
    loaders = build_loaders(model.config, StreamLayout.of(args.dump_dir, args.exp_dir), args.data_dir,
                            args.train_set, args.dev_set)
    totals: Dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in loaders.valid:
            size = len(batch["utts"])
            for key, value in model.family.valid_step(batch).items():
                totals[key] = totals.get(key, 0.0) + value * size
            count += size
    return {key: value / count for key, value in totals.items() if key.startswith("eps_mse")}


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    torch.set_num_threads(args.num_threads)
    try:
        if args.num_samples < 1 or args.seconds <= 0 or args.batch_size < 1:
            raise ConversionError(f"--num-samples ({args.num_samples}) and --batch-size ({args.batch_size}) must be "
                                  f">= 1 and --seconds ({args.seconds}) > 0")
        model = Experiment(args.exp_dir, "stage 4 (the diffusion decoder)").load(
            with_requirements=True, inference_overrides=args.inference_overrides)
        if not hasattr(model.family, "sample"):
            raise UnsupportedByFamily(f"{args.exp_dir} holds a {model.config['family']} model: generate.py samples "
                                      "diffusion models")
        model.family.requirements = dict(model.requirements)
        # The seed's waveform model writes its samples as they are; a mel model's go through the vocoder.
        waveform_model = getattr(model.family, "domain", "mel") == "waveform"
        feats = model.config["data"].get("target_feats", args.feats)
        target = TargetFeatures.of(args.dump_dir, feats, args.train_set)
        vocoder = None if waveform_model else load_vocoder(load_config(args.vocoder_config), target.config.to_dict(),
                                                           args.vocoder_dir)
        speakers = sample_speakers(args.speakers, model.spk2id, args.num_samples)
        judge = None
        if args.classifier_dir:
            from voiceswap.eval.measure import SpeakerClassifierJudge

            judge = SpeakerClassifierJudge(args.classifier_dir, Path(args.dump_dir) / "stats" / feats /
                                           "global_stats.npz")
    except (FileNotFoundError, ValueError, ConfigError, ExperimentError, CheckpointError, UnsupportedByFamily,
            DataDirError) as error:
        logging.error("%s", error)
        return 1

    out = Path(args.out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    length = args.seconds * target.config.sample_rate / (1 if waveform_model else target.config.hop_length)
    frames = int(round(length))  # mel frames, or samples of the waveform model
    generator = torch.Generator().manual_seed(args.seed)
    extractor = FeatureExtractor(target.config)
    rows, probs, features = [], [], []
    synthesis_seconds, audio_seconds = 0.0, 0.0  # sampling + vocoding, not scoring: the real-time factor
    for first in progress(range(0, args.num_samples, args.batch_size), desc="generate"):
        batch = speakers[first:first + args.batch_size]
        labels = None if batch[0] is None else torch.tensor([model.spk2id[s] for s in batch])
        start = time.perf_counter()
        try:
            mels = model.family.sample(None, labels, frames, len(batch), generator)
        except NonFiniteError as error:
            logging.error("samples %d-%d: %s", first, first + len(batch) - 1, error)
            return 1
        if waveform_model:
            mels = model.family.to_audio(mels)
        for offset, output in enumerate(mels):
            sample_id = f"sample_{first + offset:06d}"
            if waveform_model:
                waveform = output.numpy()
            else:
                log_mel = output.T * target.std + target.mean  # output: normalised log-mel (n_mels, frames)
                with torch.no_grad():
                    waveform = vocoder(log_mel.T.unsqueeze(0))[0].numpy()
            check_finite(waveform, f"the vocoded audio of {sample_id}")
            peak = float(np.abs(waveform).max()) if waveform.size else 0.0
            if peak > PEAK:
                waveform = waveform * (PEAK / peak)
            synthesis_seconds += time.perf_counter() - start
            path = out / "wav" / f"{sample_id}.wav"
            write_wav(path, waveform, target.config.sample_rate)
            audio_seconds += len(waveform) / target.config.sample_rate
            rows.append(f"{sample_id} {batch[offset] or '-'}\n")
            start = time.perf_counter()
            if judge is not None:  # scored from the written audio, as stage 9 scores converted speech
                measured = judge(extractor(load_audio(str(path), target.config.sample_rate)))
                probs.append(measured["probs"])
                features.append(measured["clf_emb"])
    with atomic_open(out / "samples") as f:
        f.writelines(rows)

    scores: Dict[str, object] = {"exp_dir": str(args.exp_dir), "checkpoint": str(model.checkpoint),
                                 "num_samples": args.num_samples, "seconds": args.seconds, "speakers": args.speakers,
                                 "inference": model.config["inference"], "vocoder": args.vocoder_config,
                                 "real_time_factor": synthesis_seconds / audio_seconds}
    if judge is not None:
        train_scp = Path(args.dump_dir) / "norm" / feats / args.train_set / "feats.scp"
        reference = np.stack([judge(np.array(m, dtype=np.float32), normalised=True)["clf_emb"]
                              for _, m in kaldiio.load_scp_sequential(str(train_scp))])
        scores.update({"class_score": class_score(np.stack(probs)), "classifier_dir": args.classifier_dir,
                       "frechet_score": frechet_score(np.stack(features), reference) if len(features) >= 2 else None,
                       "num_speakers": len(judge.speakers)})
        if args.speakers != "none":
            predicted = [judge.speakers[int(np.argmax(p))] for p in probs]
            scores["speaker_accuracy"] = float(np.mean([p == s for p, s in zip(predicted, speakers)]))
    if args.dev_set:
        scores["dev_eps_mse"] = dev_eps_mse(model, args)
    with atomic_open(out / "scores.json") as f:
        json.dump(scores, f, indent=2)
    logging.info("%d samples in %s (RTF %.2f); %s", args.num_samples, out, scores["real_time_factor"],
                 ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if k in ("class_score", "frechet_score",
                                                                                "speaker_accuracy")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
