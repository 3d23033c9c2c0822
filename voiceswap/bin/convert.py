#!/usr/bin/env python3
"""Stage 8: convert utterances of a data set to target speakers with a trained model and vocode them.

Each line of ``items`` is ``source_utt target_spk reference_utt`` (``-`` when the corpus has no
parallel reference); a line whose target is the source's own speaker is a reconstruction. For each
line the output id is ``<source_utt>_to_<target_spk>``; this job writes the de-normalised log-mel
to ``<out-dir>/mel.<job>.{ark,scp}``, the audio to ``<out-dir>/wav/<id>.wav`` and one row per
output to ``<out-dir>/conversions.<job>``: ``id source_utt source_spk target_spk reference_utt kind``.

The model (``--exp-dir``, best checkpoint unless ``--checkpoint``) reads the stream its config names
(``data.input_feats``: a normalised feature, or units of stage 5 — voiceswap/data/streams.py). Every
output has the source's number of target-feature frames, so the audio has ``frames x hop`` samples.
The vocoder is ``--vocoder-config`` (conf/vocoder/<name>.yaml); one that is trained (stage 7) needs
``--vocoder-dir``. To convert your own audio files, see ``convert_audio.py``.

An any-to-any model (``model.speaker_conditioning: reference``) converts to a target of any set, known
to it or not: its speaker vector is the mean over the target's reference utterances in ``--data-set``,
which are those that no line of ``--references-from`` (the whole item list of the decode, not one
job's split) uses as a source or a reference; stage 9 takes its speaker centroids from the same
utterances (voiceswap/data/pairs.py: ``speaker_references``).
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional, Set
import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np
import torch

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.conversion import ConversionConditions, ConversionError, Converter, TargetFeatures, write_wav
from voiceswap.data.ark import ArkWriter
from voiceswap.data.atomic import atomic_open
from voiceswap.data.finite import NonFiniteError
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.data.pairs import speaker_references
from voiceswap.data.streams import StreamError, StreamLayout, stream_scp
from voiceswap.features.spectral import FeatureConfigError
from voiceswap.progress import progress
from voiceswap.train.checkpoint import CheckpointError
from voiceswap.train.config import ConfigError, load_config
from voiceswap.train.experiment import Experiment, ExperimentError
from voiceswap.train.registry import UnsupportedByFamily


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="exp/<tag> with checkpoints/, config.yaml and spk2id")
    parser.add_argument("--checkpoint", help="convert with this checkpoint instead of the best (else newest)")
    parser.add_argument("--set", dest="inference_overrides", action="append", default=[],
                        metavar="inference.KEY=VALUE", help="change how the family converts (its inference: section)")
    parser.add_argument("--dump-dir", default="dump", help="features: <dir>/norm, <dir>/stats, <dir>/raw, units")
    parser.add_argument("--data-set", default="eval", help="the set the source utterances come from")
    parser.add_argument("--train-set", default="train", help="whose feats_config.yaml describes the target features")
    parser.add_argument("--utt2spk", required=True, help="utt2spk of the set")
    parser.add_argument("--vocoder-config", default="conf/vocoder/griffinlim.yaml", help="conf/vocoder/<name>.yaml")
    parser.add_argument("--vocoder-dir", help="a trained vocoder's experiment dir (stage 7)")
    parser.add_argument("--references-from",
                        help="any-to-any models: the decode's whole item list, whose unused utterances of each target "
                        "are its references (default: items)")
    parser.add_argument("--job", default="1", help="job id used in the output file names")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("items", help="lines 'source_utt target_spk reference_utt'")
    parser.add_argument("out_dir")
    return parser


def add_reference_speakers(converter: Converter, conditions: Optional[ConversionConditions], experiment: Any,
                           args: argparse.Namespace, utt2spk: Dict[str, str], targets: Set[str]) -> None:
    """Give an any-to-any model each target's vector (and pitch range) from its reference utterances."""
    path = args.references_from or args.items
    lines = [line.split() for line in open(path) if line.strip()]
    bad = [number for number, fields in enumerate(lines, 1) if len(fields) != 3]
    if bad:
        raise ConversionError(f"{path}:{bad[0]}: expected 'source_utt target_spk reference_utt'")
    references, fallback = speaker_references([(s, t, None if r == "-" else r) for s, t, r in lines], utt2spk)
    if fallback:
        logging.warning("speaker(s) %s have no utterance of %s outside the pairs: their references include the pair "
                        "utterances", " ".join(fallback), args.data_set)
    scp = stream_scp(experiment.config, converter.reference_feats, args.data_set,
                     StreamLayout.of(args.dump_dir, args.exp_dir))
    if not scp.is_file():
        raise StreamError(f"{scp} is missing: the reference features {converter.reference_feats!r} of {args.data_set} "
                          "are made by stages 2-3")
    features = kaldiio.load_scp(str(scp))
    for target in sorted(targets, key=str.encode):
        utts = [utt for utt in references.get(target, []) if utt in features]
        if not utts:
            raise ConversionError(f"target speaker '{target}' has no utterance in {args.utt2spk} with features in "
                                  f"{scp} to take its voice from")
        converter.add_speaker(target, [torch.from_numpy(np.array(features[utt], dtype=np.float32)) for utt in utts])
        if conditions is not None:
            conditions.add_speaker_utterances(target, args.data_set, utts)
        logging.info("target %s: the voice of %d reference utterance(s) of %s (%s ...)", target, len(utts),
                     args.data_set, " ".join(utts[:3]))


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    torch.set_num_threads(args.num_threads)
    try:
        experiment = Experiment(args.exp_dir, "stage 4-6 (the model's training)").load(
            checkpoint=args.checkpoint, with_requirements=True, inference_overrides=args.inference_overrides)
        data = experiment.config["data"]
        feats_scp = stream_scp(experiment.config, data["input_feats"], args.data_set,
                               StreamLayout.of(args.dump_dir, args.exp_dir))
        if not feats_scp.is_file():
            raise StreamError(f"{feats_scp} is missing: the model's input stream {data['input_feats']!r} of "
                              f"{args.data_set} is made by stages 2-5")
        num_frames_path = Path(args.dump_dir) / "raw" / data["target_feats"] / args.data_set / "utt2num_frames"
        source_frames = ({utt: int(n) for utt, n in read_kaldi_map(num_frames_path).items()}
                         if num_frames_path.is_file() else {})
        converter = Converter(experiment, TargetFeatures.of(args.dump_dir, data["target_feats"], args.train_set),
                              load_config(args.vocoder_config), args.vocoder_dir)
        # data.cond_feats (Soft-VC's pitch): the source's stream of this set, moved to the target's range.
        conditions = ConversionConditions.of(experiment, args.dump_dir, converter.target.config, args.train_set)
        utt2spk = read_kaldi_map(args.utt2spk)
        items = [line.split() for line in open(args.items) if line.strip()]
        if converter.any_to_any:
            add_reference_speakers(converter, conditions, experiment, args, utt2spk,
                                   {fields[1] for fields in items if len(fields) == 3})
    except (FileNotFoundError, FeatureConfigError, DataDirError, UnsupportedByFamily, ValueError, ConfigError,
            ExperimentError, CheckpointError, StreamError) as error:
        logging.error("%s", error)
        return 1
    features = kaldiio.load_scp(str(feats_scp))
    out = Path(args.out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)

    rows = []
    with ArkWriter(out / f"mel.{args.job}.ark", out / f"mel.{args.job}.scp") as mels:
        for line_number, fields in enumerate(progress(items, total=len(items), desc="convert"), 1):
            where = f"{args.items}:{line_number}"
            if len(fields) != 3:
                logging.error("%s: expected 'source_utt target_spk reference_utt', got %s", where, " ".join(fields))
                return 1
            source, target, reference = fields
            if source not in features or source not in utt2spk:
                logging.error("%s: source utterance '%s' has no features in %s or no speaker in %s",
                              where, source, feats_scp, args.utt2spk)
                return 1
            source_features = torch.from_numpy(np.array(features[source], dtype=np.float32))
            try:
                extra = conditions.utterance(args.data_set, source, utt2spk[source], target) if conditions else None
                log_mel, waveform = converter.convert(source_features, target, source_frames.get(source),
                                                      f"{source} -> {target}", conditions=extra)
            except (ConversionError, NonFiniteError) as error:
                logging.error("%s: %s", where, error)
                return 1
            output_id = f"{source}_to_{target}"
            mels[output_id] = log_mel
            write_wav(out / "wav" / f"{output_id}.wav", waveform, converter.sample_rate)
            kind = "reconstruction" if utt2spk[source] == target else "conversion"
            rows.append(f"{output_id} {source} {utt2spk[source]} {target} {reference} {kind}\n")
    with atomic_open(out / f"conversions.{args.job}") as f:
        f.writelines(rows)
    logging.info("%d outputs of %s -> %s", len(rows), args.exp_dir, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
