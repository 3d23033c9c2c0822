"""flite, festival and sox wrappers, and the phone labels shared by every engine.

Each engine returns a wav file and phone timings in its own format; the helpers
here turn those timings into one kind of label: `start end phone` segments in
seconds that cover the audio from 0 to its last sample, in the lowercase
CMU/ARPAbet phone set flite uses (plus `pau` for silence).
"""

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # numpy and soundfile load lazily: voices.py must start fast
    import numpy as np

SAMPLE_RATE = 16000

SHARED_PHONES = frozenset(
    "aa ae ah ao aw ax axr ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy "
    "p r s sh t th uh uw v w y z zh pau".split()
)
# festival's radio phone set also has these silence symbols.
_SILENCE_ALIASES = {"h#": "pau", "brth": "pau", "sil": "pau"}

# How far an engine's own last label may end from the audio end before we call
# its output inconsistent. Measured: flite slt/rms/awb within 3 ms, kal16 ~116 ms
# past the end, festival ~25 ms short.
MAX_LABEL_END_MISMATCH = 0.3

Segment = Tuple[float, float, str]


class EngineError(RuntimeError):
    """An engine failed or produced output we cannot use."""


def _run(command: Sequence[str], what: str, input_bytes: Optional[bytes] = None) -> str:
    try:
        result = subprocess.run(command, input=input_bytes, capture_output=True, check=False)
    except FileNotFoundError:
        raise EngineError(f"{command[0]} is not installed (needed for {what}): see utils/setup.sh") from None
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip().splitlines()
        raise EngineError(f"{command[0]} failed for {what} (exit {result.returncode}): {' | '.join(stderr[-3:])}")
    return result.stdout.decode(errors="replace")


def segments_from_end_times(phone_ends: Sequence[Tuple[str, float]]) -> List[Segment]:
    """[(phone, end), ...] as flite and festival give them -> [(start, end, phone), ...] from 0."""
    segments = []
    start = 0.0
    for phone, end in phone_ends:
        segments.append((start, end, phone))
        start = end
    return segments


def normalise_segments(segments: Sequence[Segment], duration: float, utt_id: str) -> List[Segment]:
    """Make labels cover exactly [0, duration] in the shared phone set.

    Clips labels that run past the audio (kal16's final pause), stretches the
    last label to the audio end (festival stops ~25 ms early), rounds to ms,
    merges neighbouring pauses (espeak gives `_:` then `_`) and drops segments
    that rounding left empty.
    """
    if not segments:
        raise EngineError(f"{utt_id}: the engine returned no phone labels")
    label_end = segments[-1][1]
    if abs(label_end - duration) > MAX_LABEL_END_MISMATCH:
        raise EngineError(
            f"{utt_id}: labels end at {label_end:.3f} s but the audio lasts {duration:.3f} s: "
            f"the engine's timings do not match its audio"
        )
    end_ms = int(round(duration * 1000))
    boundaries = [min(int(round(start * 1000)), end_ms) for start, _, _ in segments] + [end_ms]
    boundaries[0] = 0
    result: List[Segment] = []
    for index, (_, _, engine_phone) in enumerate(segments):
        phone = _SILENCE_ALIASES.get(engine_phone, engine_phone)
        if phone not in SHARED_PHONES:
            raise EngineError(f"{utt_id}: phone '{phone}' is not in the shared CMU phone set")
        start_ms, stop_ms = boundaries[index], max(boundaries[index + 1], boundaries[index])
        boundaries[index + 1] = stop_ms  # keep times monotonic after clipping
        if stop_ms <= start_ms:
            continue
        if result and result[-1][2] == "pau" and phone == "pau":
            result[-1] = (result[-1][0], stop_ms, "pau")
        else:
            result.append((start_ms, stop_ms, phone))
    return [(start / 1000.0, stop / 1000.0, phone) for start, stop, phone in result]


def format_lab(segments: Sequence[Segment]) -> str:
    """`start end phone` lines, seconds with 3 decimals."""
    return "".join(f"{start:.3f} {end:.3f} {phone}\n" for start, end, phone in segments)


def flite(text: str, voice: str, wav_path: Path, what: str) -> List[Tuple[str, float]]:
    """Synthesise with flite; return its (phone, end seconds) list from `-psdur`."""
    stdout = _run(["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav_path)], what)
    phone_ends = []
    for token in stdout.split():
        phone, sep, end = token.rpartition(":")
        if not sep:
            raise EngineError(f"flite printed '{token}' for {what}: expected phone:end_time")
        phone_ends.append((phone, float(end)))
    return phone_ends


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_batch(
    voice: str, items: Sequence[Tuple[str, Path, Path]], script_path: Path, what: str
) -> None:
    """Synthesise many (text, wav_path, segs_path) items in ONE festival process.

    Starting festival costs far more than synthesising a sentence, so a batch
    script loads the voice once and saves each utterance's wave and segments.
    """
    lines = [f"(voice_{voice})"]
    for text, wav_path, segs_path in items:
        lines.append(f"(set! u (SynthText {_scheme_string(text)}))")
        lines.append(f"(utt.save.wave u {_scheme_string(str(wav_path))} 'riff)")
        lines.append(f"(utt.save.segs u {_scheme_string(str(segs_path))})")
    script_path.write_text("\n".join(lines) + "\n")
    _run(["festival", "-b", str(script_path)], what)
    for text, wav_path, segs_path in items:
        if not wav_path.is_file() or not segs_path.is_file():
            raise EngineError(f"festival wrote no {wav_path.name}/{segs_path.name} for {what}: text '{text}'")


def read_festival_segs(segs_path: Path) -> List[Tuple[str, float]]:
    """(phone, end seconds) from festival's `end_time 100 phone` lines after the `#` line."""
    phone_ends = []
    in_body = False
    for line in segs_path.read_text().splitlines():
        if not in_body:
            in_body = line.strip() == "#"
            continue
        fields = line.split()
        if len(fields) != 3:
            raise EngineError(f"{segs_path}: expected 'end_time 100 phone', got '{line}'")
        phone_ends.append((fields[2], float(fields[0])))
    return phone_ends


def sox_to_16k(in_path: Path, out_path: Path, what: str, speed: Optional[float] = None) -> None:
    """Resample a wav to 16 kHz mono 16-bit, optionally speed-warping it first.

    `speed 0.88` lowers pitch and lengthens by 1/0.88 (a new speaker for a
    speaker encoder, unlike an F0 shift alone). -D: no dither, so the output
    is the same on every run.
    """
    effects = ["speed", str(speed)] if speed is not None else []
    _run(["sox", "-D", str(in_path), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
          str(out_path)] + effects, what)


def sox_raw_to_16k(
    samples: "np.ndarray", sample_rate: int, out_path: Path, what: str, speed: Optional[float] = None
) -> None:
    """Write int16 samples at `sample_rate` as a 16 kHz wav (espeak-ng gives 22.05 kHz), optionally
    speed-warping them as sox_to_16k does."""
    effects = ["speed", str(speed)] if speed is not None else []
    _run(["sox", "-D", "-t", "raw", "-r", str(sample_rate), "-e", "signed-integer", "-b", "16", "-c", "1",
          "-L", "-", "-r", str(SAMPLE_RATE), "-b", "16", "-e", "signed-integer", "-t", "wav", str(out_path)]
         + effects, what, input_bytes=samples.astype("<i2").tobytes())


def check_wav(path: Path, what: str) -> float:
    """Duration in seconds of a 16 kHz mono 16-bit wav; raises if it is anything else."""
    import soundfile

    info = soundfile.info(str(path))
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.subtype != "PCM_16":
        raise EngineError(
            f"{what}: engine wrote {info.samplerate} Hz, {info.channels} channel(s), {info.subtype}; "
            f"expected {SAMPLE_RATE} Hz mono PCM_16"
        )
    return info.frames / info.samplerate


def tool_version(command: Sequence[str]) -> str:
    """The version line of `tool --version`, whitespace collapsed.

    The exit status is ignored: `flite --version` exits 1 after printing it.
    """
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        raise EngineError(f"{command[0]} is not installed: see utils/setup.sh") from None
    output = (result.stdout + result.stderr).decode(errors="replace")
    lines = [" ".join(line.split()) for line in output.splitlines()]
    # flite prints its copyright (with years) before the line that says "version:".
    for line in lines:
        if "version" in line.lower() and any(char.isdigit() for char in line):
            return line
    for line in lines:
        if any(char.isdigit() for char in line):
            return line
    return " ".join(output.split())


def replace_atomically(tmp_path: Path, final_path: Path) -> None:
    """rename(2) within one file system: readers see the old file or the whole new one."""
    os.replace(tmp_path, final_path)
