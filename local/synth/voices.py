#!/usr/bin/env python3
"""The voices of the synth corpus, and a check that the engines they need are installed.

Run as a script, it validates a speaker list and prints one `<engine>_version
VERSION` line per engine those speakers use; get_corpus.sh stores the lines in
`<db-dir>/.complete`, so a corpus built with other engine versions is rebuilt.
With --list it prints the list's speaker ids instead, presets expanded.

Speaker ids: the seven engine voices (`slt rms awb kal ked esf2 esm7`) and
speed-warped copies of them named `<base>w<percent>`: `rmsw116` is rms with
`sox speed 1.16` (higher and faster), `esf2w76` is esf2 with `sox speed 0.76`
(lower and slower). `sltw` (slt x 0.88) keeps its older, shorter name. A warp
keeps the base voice's gender. A speed warp scales every formant and F0
together, which makes a new speaker for a speaker encoder; an F0 change alone,
a tempo change or an equaliser does not (measured with resemblyzer: see
../shared/notes/offline-corpus.md and local/synth/measure_voices.py).

Presets, usable wherever a speaker list is asked for (alone or among ids):
  default  the eight voices of DEFAULT_SPEAKERS
  many     the 24 voices of MANY_SPEAKERS (default + 16 warps)

Example:
    python3 local/synth/voices.py --speakers "slt rms ked esf2"
    python3 local/synth/voices.py --speakers many --list
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
    speed: Optional[float] = None  # sox speed warp applied after synthesis (labels divided by it)


# Eight voices a speaker encoder tells apart (measured: speaker ID 100%, highest
# cross-voice cosine 0.78). `sltw` is slt slowed by 0.88: a speed warp makes a
# new speaker for the encoder, while an F0 change alone does not.
_BASE_VOICES = [
    Voice("slt", "flite", "slt", "f"),
    Voice("rms", "flite", "rms", "m"),
    Voice("awb", "flite", "awb", "m"),
    Voice("kal", "flite", "kal16", "m"),
    Voice("ked", "festival", "ked_diphone", "m"),
    Voice("esf2", "espeak", "en-us+f2", "f"),
    Voice("esm7", "espeak", "en-us+m7", "m"),
    Voice("sltw", "flite", "slt", "f", speed=0.88),
]
# Speed warps of the base voices for the many-speaker preset, chosen by measurement with
# local/synth/measure_voices.py: each voice slowed (x 0.85) and sped up (x 1.16), further
# where a step that size stayed too close to the next voice (esm7 x 1.25); slt has sltw
# (x 0.88) and gets x 0.72 and x 1.20; esf2, whose warps move farthest for the encoder,
# has room for four (x 0.76, 0.88, 1.16, 1.30). Steps of x 1.08 or less between two
# voices of one base give pairs the encoder confuses.
_WARPS = {
    "slt": [0.72, 1.20],  # (0.88 is sltw)
    "rms": [0.85, 1.16],
    "awb": [0.85, 1.16],
    "kal": [0.85, 1.16],
    "ked": [0.85, 1.16],
    "esf2": [0.76, 0.88, 1.16, 1.30],
    "esm7": [0.85, 1.25],
}


def warped_id(base: str, speed: float) -> str:
    """`<base>w<percent>`: rmsw116 is rms x 1.16."""
    return f"{base}w{round(speed * 100)}"


def _warped(base: Voice, speed: float) -> Voice:
    return Voice(warped_id(base.speaker, speed), base.engine, base.engine_voice, base.gender, speed=speed)


_BY_ID = {voice.speaker: voice for voice in _BASE_VOICES}
VOICES: Dict[str, Voice] = {
    voice.speaker: voice
    for voice in _BASE_VOICES + [_warped(_BY_ID[base], speed) for base, speeds in _WARPS.items() for speed in speeds]
}
DEFAULT_SPEAKERS = "slt rms awb kal ked esf2 esm7 sltw"
# Every voice: each base voice followed by its warps (a warp reuses its base's synthesis).
MANY_SPEAKERS = (
    "slt sltw sltw72 sltw120 rms rmsw85 rmsw116 awb awbw85 awbw116 kal kalw85 kalw116 "
    "ked kedw85 kedw116 esf2 esf2w76 esf2w88 esf2w116 esf2w130 esm7 esm7w85 esm7w125"
)
PRESETS = {"default": DEFAULT_SPEAKERS, "many": MANY_SPEAKERS}


def parse_speakers(speakers: str) -> List[str]:
    """Split a speaker list (spaces or commas), expanding presets (`default`, `many`); raises ValueError
    naming an unknown or repeated id."""
    words = speakers.replace(",", " ").split()
    if not words:
        raise ValueError("the speaker list is empty: give e.g. --speakers \"slt rms ked esf2\" or a preset: "
                         + " ".join(PRESETS))
    ids = [speaker for word in words for speaker in (PRESETS[word].split() if word in PRESETS else [word])]
    for speaker in ids:
        if speaker not in VOICES:
            raise ValueError(f"unknown speaker '{speaker}': choose from {' '.join(VOICES)} "
                             f"or a preset ({', '.join(PRESETS)})")
        if "-" in speaker:  # '-' separates speaker and sentence in utterance ids
            raise ValueError(f"speaker id '{speaker}' must not contain '-'")
    repeated = sorted({speaker for speaker in ids if ids.count(speaker) > 1})
    if repeated:
        raise ValueError(f"speaker list '{speakers}' names {' '.join(repeated)} twice")
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
    parser.add_argument("--speakers", default=DEFAULT_SPEAKERS,
                        help="speaker ids or presets (" + ", ".join(PRESETS) + "), separated by spaces or commas")
    parser.add_argument("--list", action="store_true",
                        help="print the speaker ids (presets expanded, one space between) instead of engine versions")
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
        if args.list:
            print(" ".join(speakers))
            return
        versions = engine_versions(speakers)
    except (ValueError, engines.EngineError) as error:
        sys.exit(f"{sys.argv[0]}: {error}")
    for engine, version in sorted(versions.items()):
        print(f"{engine}_version {version}")


if __name__ == "__main__":
    main()
