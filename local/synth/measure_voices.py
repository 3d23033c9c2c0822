#!/usr/bin/env python3
"""Measure how well a speaker encoder (resemblyzer) tells the synth corpus's voices apart.

Synthesises --num-sentences WordNet sentences per voice into a temporary corpus
with the corpus's own code (select_sentences.py, synthesize.py), embeds every
utterance with resemblyzer's VoiceEncoder on the CPU (its weights ship in the
wheel) and prints:

  within-voice cosine   mean over voices of the mean cosine between two
                        utterances of the voice
  across-voice cosine   mean over voice pairs of the mean cosine between an
                        utterance of one and an utterance of the other
  highest cross pairs   the voice pairs with the highest such mean
  speaker ID accuracy   nearest centroid (cosine), leave-one-out: each
                        utterance against every voice's centroid, its own
                        voice's computed without it

A new voice is worth adding if speaker ID stays near 100% and its highest
cross-voice cosine stays well below the within-voice mean. 24 voices x 8
sentences take about a minute on one CPU core.

Example:
    python3 local/synth/measure_voices.py --speakers many --num-sentences 8
"""

import argparse
import itertools
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile

from voiceswap.cli import configure_logging
from voiceswap.eval.speaker import SpeakerEncoder

import engines
import select_sentences
import synthesize
import voices


def synthesize_voices(work_dir: Path, speakers: List[str], num_sentences: int, seed: int) -> Dict[str, List[Path]]:
    """{speaker: wav paths}, every speaker saying the same num_sentences sentences."""
    candidates = select_sentences.candidate_sentences(select_sentences.WORDNET_DIR)
    select_sentences.write_sentences(
        select_sentences.select_sentences(candidates, num_sentences, seed), str(work_dir / "sentences.txt")
    )
    sentences = synthesize.read_sentences(work_dir / "sentences.txt")
    items = synthesize.job_items(sentences, speakers, 1, 1)
    layout = synthesize.CorpusLayout(work_dir, 1)
    synthesize.synthesize_items(layout, items)
    wavs: Dict[str, List[Path]] = {speaker: [] for speaker in speakers}
    for item in items:
        wavs[item.speaker].append(layout.wav(item))
    return wavs


def embed(wavs: Dict[str, List[Path]]) -> Dict[str, np.ndarray]:
    """{speaker: (utterances, 256) unit-norm resemblyzer embeddings}, as stage 9's speaker similarity embeds."""
    encoder = SpeakerEncoder()
    return {speaker: np.stack([encoder(*soundfile.read(path, dtype="float32")) for path in paths])
            for speaker, paths in wavs.items()}


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def measure(embeddings: Dict[str, np.ndarray]) -> Tuple[float, float, List[Tuple[float, str, str]], float]:
    """(within-voice cosine, across-voice cosine, [(cosine, voice, voice)] highest first, speaker ID accuracy)."""
    within = []
    for emb in embeddings.values():
        if len(emb) < 2:
            raise ValueError("every voice needs at least 2 utterances: ask for --num-sentences 2 or more")
        similarity = emb @ emb.T
        within.append(similarity[~np.eye(len(emb), dtype=bool)].mean())
    pairs = sorted(
        ((float((embeddings[a] @ embeddings[b].T).mean()), a, b) for a, b in itertools.combinations(embeddings, 2)),
        reverse=True,
    )
    centroids = {speaker: unit(emb.mean(axis=0)) for speaker, emb in embeddings.items()}
    correct = total = 0
    for speaker, emb in embeddings.items():
        for index, utterance in enumerate(emb):
            own = unit(np.delete(emb, index, axis=0).mean(axis=0))
            scores = {other: float(utterance @ (own if other == speaker else centroid))
                      for other, centroid in centroids.items()}
            correct += max(scores, key=scores.__getitem__) == speaker
            total += 1
    return float(np.mean(within)), float(np.mean([cosine for cosine, _, _ in pairs])), pairs, correct / total


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--speakers", default="many",
                        help="speaker ids or presets (" + ", ".join(voices.PRESETS) + "), spaces or commas")
    parser.add_argument("--num-sentences", type=int, default=8, help="sentences per voice")
    parser.add_argument("--seed", type=int, default=777, help="seed of the sentence draw")
    parser.add_argument("--num-pairs", type=int, default=5, help="highest cross-voice pairs to print")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the synthesised audio here (default: a temporary directory, removed)")
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    configure_logging(args.verbose)
    if args.num_sentences < 2:
        sys.exit(f"{sys.argv[0]}: --num-sentences must be at least 2 (within-voice pairs), got {args.num_sentences}")
    start = time.time()
    try:
        speakers = voices.parse_speakers(args.speakers)
        if len(speakers) < 2:
            raise ValueError(f"give at least 2 speakers to compare, got '{args.speakers}'")
        voices.engine_versions(speakers)  # a missing engine: one clear line
        with tempfile.TemporaryDirectory(prefix="measure_voices.") as tmp:
            work_dir = args.work_dir or Path(tmp)
            work_dir.mkdir(parents=True, exist_ok=True)
            logging.info(f"synthesising {len(speakers)} voices x {args.num_sentences} sentences in {work_dir}")
            wavs = synthesize_voices(work_dir, speakers, args.num_sentences, args.seed)
            logging.info(f"embedding {sum(map(len, wavs.values()))} utterances with resemblyzer (CPU)")
            embeddings = embed(wavs)
        within, across, pairs, accuracy = measure(embeddings)
    except (ValueError, OSError, engines.EngineError) as error:
        sys.exit(f"{sys.argv[0]}: {error}")
    print(f"voices {len(speakers)}, {args.num_sentences} sentences each (seed {args.seed})")
    print(f"within-voice cosine {within:.3f}")
    print(f"across-voice cosine {across:.3f}")
    for cosine, first, second in pairs[: args.num_pairs]:
        print(f"cross-voice pair {first} {second} {cosine:.3f}")
    print(f"speaker ID accuracy (nearest centroid, leave-one-out) {100 * accuracy:.1f}%")
    logging.info(f"took {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
