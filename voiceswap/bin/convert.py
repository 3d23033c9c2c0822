#!/usr/bin/env python3
"""Convert utterances to target speakers with a trained model and vocode them.

Each line of ``items`` is ``source_utt target_spk reference_utt`` (``-`` when the corpus has no
parallel reference); a line whose target is the source's own speaker is a reconstruction. For each
line the output id is ``<source_utt>_to_<target_spk>``; this job writes the de-normalised log-mel
to ``<out-dir>/mel.<job>.{ark,scp}``, the 16 kHz audio to ``<out-dir>/wav/<id>.wav`` and one row per
output to ``<out-dir>/conversions.<job>``: ``id source_utt source_spk target_spk reference_utt kind``.

The model reads its ``data.input_feats`` from ``<dump-dir>/norm/<feat>/<set>/feats.scp`` or, with
``--feats-scp NAME=TEMPLATE``, from TEMPLATE (``{set}`` = the set; e.g. Soft-VC's units of the
source). Every output has the source's number of target-feature frames (a model working at a lower
frame rate may produce a frame more or less; it is cropped or its last frame repeated), so the
audio has ``frames x hop`` samples. ``--vocoder hifigan`` needs ``--vocoder-dir`` (stage 7).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf
import torch

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.data.ark import ArkWriter
from voiceswap.data.atomic import atomic_open, temp_path_for
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.spectral import FeatureConfigError, load_feature_config
from voiceswap.progress import progress
from voiceswap.train.pretrained import load_trained, load_vocoder
from voiceswap.train.registry import UnsupportedByFamily


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="exp/<tag> with checkpoints/ and spk2id")
    parser.add_argument("--dump-dir", default="dump", help="features: <dir>/norm, <dir>/stats, <dir>/raw")
    parser.add_argument("--set", default="eval", help="the set the source utterances come from")
    parser.add_argument("--utt2spk", required=True, help="utt2spk of the set")
    parser.add_argument("--vocoder", default="griffinlim")
    parser.add_argument("--vocoder-dir", help="a trained vocoder's experiment dir (hifigan: exp/vocoder_hifigan_<corpus>)")
    parser.add_argument("--feats-scp", action="append", default=[], metavar="NAME=TEMPLATE",
                        help="feats.scp of input feature NAME, {set} = the set (e.g. units)")
    parser.add_argument("--job", default="1", help="job id used in the output file names")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("items", help="lines 'source_utt target_spk reference_utt'")
    parser.add_argument("out_dir")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    torch.set_num_threads(args.num_threads)
    try:
        experiment = load_trained(args.model_dir)
        data = experiment.config["data"]
        # The model's own config says which features it reads and writes.
        templates = dict(value.split("=", 1) for value in args.feats_scp if "=" in value)
        if data["input_feats"] in templates:
            feats_scp = Path(templates[data["input_feats"]].replace("{set}", args.set))
        else:
            feats_scp = Path(args.dump_dir) / "norm" / data["input_feats"] / args.set / "feats.scp"
        num_frames_path = Path(args.dump_dir) / "raw" / data["target_feats"] / args.set / "utt2num_frames"
        source_frames = ({utt: int(n) for utt, n in read_kaldi_map(num_frames_path).items()}
                         if num_frames_path.is_file() else {})
        target_stats = Path(args.dump_dir) / "stats" / data["target_feats"] / "global_stats.npz"
        feature_config = load_feature_config(
            Path(args.dump_dir) / "raw" / data["target_feats"] / args.set / "feats_config.yaml")
        for path in (feats_scp, target_stats):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run stages 2-3 first"
                                        + (" (and the stages that make the model's input)" if templates else ""))
        utt2spk = read_kaldi_map(args.utt2spk)
        items = [line.split() for line in open(args.items) if line.strip()]
        vocoder = load_vocoder(args.vocoder, feature_config.to_dict(), args.vocoder_dir)
    except (FileNotFoundError, FeatureConfigError, DataDirError, UnsupportedByFamily, ValueError) as error:
        logging.error("%s", error)
        return 1
    with np.load(target_stats) as stats:
        mean, std = torch.from_numpy(stats["mean"]).float(), torch.from_numpy(stats["std"]).float()
    features = kaldiio.load_scp(str(feats_scp))
    out = Path(args.out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)

    rows = []
    with ArkWriter(out / f"mel.{args.job}.ark", out / f"mel.{args.job}.scp") as mels:
        for line_number, fields in enumerate(progress(items, total=len(items), desc="convert"), 1):
            if len(fields) != 3:
                logging.error("%s:%d: expected 'source_utt target_spk reference_utt', got %s",
                              args.items, line_number, " ".join(fields))
                return 1
            source, target, reference = fields
            if source not in features or source not in utt2spk:
                logging.error("%s:%d: source utterance '%s' has no features in %s or no speaker in %s",
                              args.items, line_number, source, feats_scp, args.utt2spk)
                return 1
            if target not in experiment.spk2id:
                logging.error("%s:%d: target speaker '%s' is not one the model knows (%s)",
                              args.items, line_number, target, " ".join(experiment.spk2id))
                return 1
            source_features = torch.from_numpy(np.array(features[source], dtype=np.float32))
            normalised = experiment.family.convert(source_features, experiment.spk2id[target])
            frames = source_frames.get(source, normalised.shape[0])
            if normalised.shape[0] > frames:
                normalised = normalised[:frames]
            elif normalised.shape[0] < frames:  # at most a frame or two of a lower-rate input's rounding
                normalised = torch.cat([normalised, normalised[-1:].expand(frames - normalised.shape[0], -1)])
            log_mel = normalised * std + mean
            output_id = f"{source}_to_{target}"
            mels[output_id] = log_mel.numpy()
            waveform = vocoder(log_mel.T.unsqueeze(0))[0].numpy()
            peak = float(np.abs(waveform).max())
            if peak > 0.99:  # Griffin-Lim (and a young HiFi-GAN) can overshoot; clipping would distort every metric
                waveform = waveform * (0.99 / peak)
            wav_path = out / "wav" / f"{output_id}.wav"
            tmp = temp_path_for(wav_path)
            sf.write(tmp, waveform, feature_config.sample_rate, subtype="PCM_16", format="WAV")
            tmp.replace(wav_path)
            kind = "reconstruction" if utt2spk[source] == target else "conversion"
            rows.append(f"{output_id} {source} {utt2spk[source]} {target} {reference} {kind}\n")
    with atomic_open(out / f"conversions.{args.job}") as f:
        f.writelines(rows)
    logging.info("%d outputs of %s -> %s", len(rows), args.model_dir, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
