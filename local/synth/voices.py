#!/usr/bin/env python3
"""The voices of the synth corpus, and a check that the engines they need are installed.

Run as a script, it validates a speaker list and prints one `<engine>_version
VERSION` line per engine those speakers use; get_corpus.sh stores the lines in
`<db-dir>/.complete`, so a corpus built with other engine versions is rebuilt.

Example:
    python3 local/synth/voices.py --speakers "slt rms ked esf2"
"""

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

import engines


@dataclass(frozen=True)
class Voice:
    speaker: str  # corpus speaker id (utterance ids are <speaker>-<sentence id>)
    engine: str  # flite | festival | espeak
    engine_voice: str  # the engine's own name for the voice
    gender: str  # f | m
    speed: Optional[float] = None  # sox speed warp applied after synthesis


# Eight voices a speaker encoder tells apart (measured: speaker ID 100%, highest
# cross-voice cosine 0.78). `sltw` is slt slowed by 0.88: a speed warp makes a
# new speaker for the encoder, while an F0 change alone does not.
VOICES: Dict[str, Voice] = {
    voice.speaker: voice
    for voice in [
        Voice("slt", "flite", "slt", "f"),
        Voice("rms", "flite", "rms", "m"),
        Voice("awb", "flite", "awb", "m"),
        Voice("kal", "flite", "kal16", "m"),
        Voice("ked", "festival", "ked_diphone", "m"),
        Voice("esf2", "espeak", "en-us+f2", "f"),
        Voice("esm7", "espeak", "en-us+m7", "m"),
        Voice("sltw", "flite", "slt", "f", speed=0.88),
    ]
}
DEFAULT_SPEAKERS = "slt rms awb kal ked esf2 esm7 sltw"


def parse_speakers(speakers: str) -> List[str]:
    """Split a speaker list (spaces or commas); raises ValueError naming an unknown or repeated id."""
    ids = speakers.replace(",", " ").split()
    if not ids:
        raise ValueError("the speaker list is empty: give e.g. --speakers \"slt rms ked esf2\"")
    for speaker in ids:
        if speaker not in VOICES:
            raise ValueError(f"unknown speaker '{speaker}': choose from {' '.join(VOICES)}")
        if "-" in speaker:  # '-' separates speaker and sentence in utterance ids
            raise ValueError(f"speaker id '{speaker}' must not contain '-'")
    if len(set(ids)) != len(ids):
        raise ValueError(f"speaker list '{speakers}' names a speaker twice")
    return ids


def engine_versions(speakers: List[str]) -> Dict[str, str]:
    """{engine: version} for the engines these speakers need; raises EngineError if one is missing."""
    used = {VOICES[speaker].engine for speaker in speakers}
    versions = {}
    if "flite" in used:
        versions["flite"] = engines.tool_version(["flite", "--version"])
    if "festival" in used:
        versions["festival"] = engines.tool_version(["festival", "--version"])
    if "espeak" in used:
        import espeak  # loads libespeak-ng only when an espeak voice is asked for

        try:
            versions["espeak"] = "libespeak-ng " + espeak.espeak_version()
        except OSError as error:
            raise engines.EngineError(f"cannot load libespeak-ng ({error}): install libespeak-ng1") from None
    # sox resamples espeak's 22.05 kHz output and makes the speed-warped voices.
    if "espeak" in used or any(VOICES[speaker].speed for speaker in speakers):
        versions["sox"] = engines.tool_version(["sox", "--version"])
    return versions


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--speakers", default=DEFAULT_SPEAKERS, help="speaker ids, separated by spaces or commas")
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        speakers = parse_speakers(args.speakers)
        versions = engine_versions(speakers)
    except (ValueError, engines.EngineError) as error:
        sys.exit(f"{sys.argv[0]}: {error}")
    for engine, version in sorted(versions.items()):
        print(f"{engine}_version {version}")


if __name__ == "__main__":
    main()
