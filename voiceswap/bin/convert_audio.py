#!/usr/bin/env python3
"""Convert your own recordings to a speaker of a trained experiment.

  convert_audio.py --exp-dir exp/<tag> --target-spk slt [--vocoder-config conf/vocoder/hifigan.yaml
                   --vocoder-dir exp/vocoder_hifigan_synth] --out-dir out/ in.wav more.flac some_dir/ wav.scp

Inputs are audio files (anything libsndfile reads), directories (their .wav and .flac files,
recursively) or Kaldi ``wav.scp`` files. Each is downmixed to mono and resampled to the corpus's
rate (with a log line saying so), its features are made with the experiment's own feature configs
and normalised with the statistics of ``--dump-dir`` (the corpus the model was trained on), the
family turns them into its input (e.g. Soft-VC: content features -> its unit head -> soft units)
and converts; the vocoder makes ``<out-dir>/<name>_to_<target>.wav``. ``<out-dir>/conversions``
lists ``name input target output``.

An any-to-any model (``model.speaker_conditioning: reference``) converts to the voice of reference
recordings instead of a speaker of its table, e.g. a speaker it never heard::

  convert_audio.py --exp-dir exp/<tag> --target-ref her1.wav --target-ref her2.wav --target-spk her \
                   --out-dir out/ in.wav

Its speaker vector is the mean over the references (and, for a pitch-conditioned model, their F0 gives
the target's pitch range); ``--target-spk`` then only names the outputs (default: ``ref``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from voiceswap.cli import configure_logging
import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.conversion import (AudioFeatures, ConversionConditions, ConversionError, Converter, TargetFeatures,
                                  read_any_audio, write_wav)
from voiceswap.data.atomic import atomic_open
from voiceswap.data.audio import AudioError
from voiceswap.data.finite import NonFiniteError
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.features.content import ContentFeatureError
from voiceswap.features.spectral import FeatureConfigError
from voiceswap.progress import progress
from voiceswap.train.checkpoint import CheckpointError
from voiceswap.train.config import ConfigError, load_config
from voiceswap.train.experiment import Experiment, ExperimentError
from voiceswap.train.registry import UnsupportedByFamily

AUDIO_SUFFIXES = (".wav", ".flac")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="the trained experiment, exp/<tag>")
    parser.add_argument("--target-spk", help="a speaker of the experiment's spk2id (with --target-ref: the name "
                        "of the outputs' voice, default ref)")
    parser.add_argument("--target-ref", action="append", default=[], metavar="WAV",
                        help="any-to-any models: a recording of the target voice (a file, a directory or a wav.scp); "
                        "repeat it for more")
    parser.add_argument("--dump-dir", default="dump", help="the features and statistics the model was trained on")
    parser.add_argument("--train-set", default="train")
    parser.add_argument("--vocoder-config", default="conf/vocoder/griffinlim.yaml")
    parser.add_argument("--vocoder-dir", help="a trained vocoder's experiment dir (stage 7)")
    parser.add_argument("--checkpoint", help="convert with this checkpoint instead of the best")
    parser.add_argument("--set", dest="inference_overrides", action="append", default=[],
                        metavar="inference.KEY=VALUE", help="change how the family converts")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("inputs", nargs="+", help="audio files, directories or wav.scp files")
    return parser


def collect_inputs(inputs: List[str]) -> Dict[str, str]:
    """``{name: path or wav.scp entry}`` of every input, names unique."""
    found: Dict[str, str] = {}

    def add(name: str, entry: str) -> None:
        if name in found:
            raise ConversionError(f"two inputs are named '{name}' ({found[name]} and {entry}): rename one")
        found[name] = entry

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise ConversionError(f"directory {path} holds no {'/'.join(AUDIO_SUFFIXES)} files")
            for file in files:
                add(file.stem, str(file))
        elif path.name == "wav.scp" or path.suffix == ".scp":
            for utt, entry in read_kaldi_map(path).items():
                add(utt, entry)
        elif path.is_file():
            add(path.stem, str(path))
        else:
            raise ConversionError(f"input '{item}' is not a file, a directory or a wav.scp")
    return found


def add_reference_recordings(converter: Converter, conditions: Optional[ConversionConditions],
                             audio_features: AudioFeatures, name: str, references: List[str]) -> None:
    """Make ``name`` a target of an any-to-any model from reference recordings (files, directories, wav.scp)."""
    if not converter.any_to_any:
        raise ConversionError(f"--target-ref: {converter.model.path} converts only to the speakers of its table "
                              f"({' '.join(converter.model.spk2id)}); train a model with --set "
                              "model.speaker_conditioning=reference (and data.reference_feats) for any-to-any "
                              "conversion")
    waveforms, features = [], []
    for entry in collect_inputs(references).values():
        waveform, note = read_any_audio(entry, audio_features.sample_rate)
        if note:
            logging.info("%s: %s", entry, note)
        streams = audio_features(waveform)
        if converter.reference_feats not in streams:
            raise ConversionError(f"the model's references are {converter.reference_feats!r} features, which "
                                  f"{audio_features.dump_dir} has no statistics for: run stages 2-3")
        waveforms.append(waveform)
        features.append(torch.from_numpy(streams[converter.reference_feats]))
    converter.add_speaker(name, features)
    if conditions is not None:
        conditions.add_speaker_audio(name, waveforms)
    logging.info("target voice '%s' from %d reference recording(s)", name, len(features))


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        inputs = collect_inputs(args.inputs)
        model = Experiment(args.exp_dir, "stages 4-6 (the model's training)").load(
            checkpoint=args.checkpoint, with_requirements=True, inference_overrides=args.inference_overrides)
        target = TargetFeatures.of(args.dump_dir, model.config["data"]["target_feats"], args.train_set)
        audio_features = AudioFeatures(args.dump_dir, args.train_set)
        converter = Converter(model, target, load_config(args.vocoder_config), args.vocoder_dir)
        # data.cond_feats (Soft-VC's pitch): made from the recording, moved to the target's range.
        conditions = ConversionConditions.of(model, args.dump_dir, target.config, args.train_set)
        if args.target_ref:
            args.target_spk = args.target_spk or "ref"
            add_reference_recordings(converter, conditions, audio_features, args.target_spk, args.target_ref)
        elif args.target_spk is None:
            raise ConversionError("give the target: --target-spk (a speaker of the model's table) or --target-ref "
                                  "WAV... (recordings of the voice, for an any-to-any model)")
        converter.target_of(args.target_spk)
    except (ConversionError, DataDirError, ExperimentError, CheckpointError, ConfigError, FeatureConfigError,
            UnsupportedByFamily, AudioError, ValueError) as error:
        logging.error("%s", error)
        return 1
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target_name = model.config["data"]["target_feats"]
    rows = []
    for name, entry in progress(inputs.items(), total=len(inputs), desc="convert"):
        try:
            waveform, note = read_any_audio(entry, audio_features.sample_rate)
            if note:
                logging.info("%s: %s", entry, note)
            streams = audio_features(waveform)
            model_input = model.family.prepare_input(streams, model.requirements, model.config)
            extra = conditions.audio(waveform, args.target_spk) if conditions else None
            _, converted = converter.convert(model_input, args.target_spk, streams[f"raw/{target_name}"].shape[0],
                                             f"'{entry}'", conditions=extra)
        except (AudioError, NonFiniteError, ConversionError, ContentFeatureError, UnsupportedByFamily,
                ValueError) as error:
            logging.error("%s: %s", entry, error)
            return 1
        output = out / f"{name}_to_{args.target_spk}.wav"
        write_wav(output, converted, converter.sample_rate)
        rows.append(f"{name} {entry} {args.target_spk} {output}\n")
    with atomic_open(out / "conversions") as f:
        f.writelines(rows)
    logging.info("%d recordings converted to %s -> %s", len(rows), args.target_spk, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
