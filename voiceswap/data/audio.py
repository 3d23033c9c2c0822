"""Reading the audio that a ``wav.scp`` entry points at, with errors a user can act on."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from voiceswap.data.finite import NonFiniteError, check_finite


class AudioError(ValueError):
    """Audio that cannot be used; the message says what was wrong and what to do."""


def read_audio_entry(entry: str) -> Tuple[np.ndarray, int]:
    """Decode a wav.scp value: a file path, or a shell command ending in ``|`` (Kaldi pipes).

    Returns float32 samples shaped ``(frames, channels)`` and the sample rate.
    """
    entry = entry.strip()
    if entry.endswith("|"):
        command = entry[:-1].strip()
        result = subprocess.run(command, shell=True, capture_output=True)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise AudioError(
                f"command '{command}' failed (code {result.returncode}): "
                f"{message[-1] if message else 'no message'}"
            )
        source = io.BytesIO(result.stdout)
        name = f"output of '{command}'"
    else:
        path = Path(entry)
        if not path.is_file():
            raise AudioError(f"audio file '{entry}' does not exist; fix the path in wav.scp")
        source = path
        name = f"'{entry}'"
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"cannot decode {name}: {error}; is it a valid audio file?") from None
    return samples, rate


def load_audio(entry: str, sample_rate: Optional[int] = None, utt: Optional[str] = None) -> np.ndarray:
    """Load a wav.scp entry as mono float32 in [-1, 1], rejecting what the recipe cannot use.

    Stereo, empty audio and (when ``sample_rate`` is given) another rate are errors rather than
    silently converted: the data-prep stage of the corpus is the place to fix them. So is a NaN or
    infinite sample (possible in float WAVs): it would make every feature frame around it, the
    global statistics and so every normalised set NaN. ``utt`` (the wav.scp key) is named in errors.
    """
    samples, rate = read_audio_entry(entry)
    if samples.shape[1] != 1:
        raise AudioError(
            f"'{entry}' has {samples.shape[1]} channels; the recipe needs mono audio "
            "(convert in data prep, e.g. 'sox in.wav -c 1 out.wav' or a 'sox ... -c 1 - |' pipe)"
        )
    if samples.shape[0] == 0:
        raise AudioError(f"'{entry}' is empty (0 samples); remove the utterance or fix the file")
    if sample_rate is not None and rate != sample_rate:
        raise AudioError(
            f"'{entry}' is sampled at {rate} Hz but the feature config expects {sample_rate} Hz; "
            "resample it in data prep (e.g. a 'sox in.wav -r 16000 -t wav - |' pipe in wav.scp)"
        )
    where = f"utterance '{utt}' (audio '{entry}')" if utt else f"audio '{entry}'"
    try:
        check_finite(samples[:, 0], where)
    except NonFiniteError as error:
        raise AudioError(f"{error}; fix or re-export the file, or remove the utterance in data prep") from None
    return samples[:, 0]
