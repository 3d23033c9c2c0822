"""F0 as a feature stream: log-F0 on the mel frames, per-speaker statistics, and the range shift of conversion.

The ``pitch`` stream (``extract_pitch.py``, the ``pitch`` step of a family's plan) has one row per
frame of the target log-mel and three columns (:data:`COLUMNS`):

* ``log_f0``: natural log of F0 in Hz on voiced frames, 0 on unvoiced ones;
* ``voiced``: 1.0 or 0.0;
* ``log_f0_rel``: ``log_f0`` minus the mean log-F0 of the utterance's speaker (0 where unvoiced):
  the contour relative to the speaker's own range, which is what a model is conditioned on.

Frames line up with our features: an utterance of ``N`` samples has ``N // hop`` frames and frame
``t`` is centred on sample ``t * hop + hop / 2`` (voiceswap/features/spectral.py pads by reflection
and uses ``center=False``). WORLD's estimators put frame ``k`` at ``k * frame_period``, so the
waveform is analysed from sample ``hop // 2`` on and the first ``N // hop`` frames are kept.

Speaker statistics (:class:`F0Stats`: mean and standard deviation of log-F0 over voiced frames) come
from the train set; at conversion the source contour is normalised by the source speaker's stats and
re-scaled to the target speaker's (:func:`shift_range`), so a model sees what the target speaker
saying the source's melody would look like (:func:`converted_stream`).

Estimators (pyworld): ``dio`` (DIO + StoneMask refinement, ~0.02 x real time on one core, the
default) and ``harvest`` (fewer voicing misses on breathy voices, ~0.6 x real time: 30 times slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

#: Columns of the pitch stream.
COLUMNS = ("log_f0", "voiced", "log_f0_rel")
LOG_F0, VOICED, LOG_F0_REL = range(3)

#: The estimators :func:`extract_log_f0` offers.
METHODS = ("dio", "harvest")

#: A speaker (or utterance) whose log-F0 varies less than this is treated as varying this much:
#: re-scaling a near-monotone source to a lively target would otherwise multiply estimator noise.
MIN_STD = 0.02  # natural-log units: about a third of a semitone


class PitchError(ValueError):
    """Pitch settings, statistics or tracks that cannot be used; the message says what to do."""


def pitch_settings(section: Any) -> Dict[str, Any]:
    """The checked ``pitch:`` section of a config: ``method`` (dio | harvest), ``f0_min``, ``f0_max`` (Hz)."""
    if not isinstance(section, Mapping):
        raise PitchError("the config has no pitch: section (method: dio, f0_min: 50, f0_max: 500) for its pitch stream")
    method = section.get("method", "dio")
    if method not in METHODS:
        raise PitchError(f"pitch.method is {method!r}; use one of {', '.join(METHODS)}")
    f0_min, f0_max = float(section.get("f0_min", 50.0)), float(section.get("f0_max", 500.0))
    if not 0 < f0_min < f0_max:
        raise PitchError(f"pitch.f0_min ({f0_min:g}) and pitch.f0_max ({f0_max:g}) must satisfy 0 < f0_min < f0_max")
    return {"method": method, "f0_min": f0_min, "f0_max": f0_max}


def pitch_name(section: Any) -> str:
    """The dump dir name of a pitch section, e.g. ``dio_50-500`` (streams template field ``{pitch}``)."""
    settings = pitch_settings(section)
    return f"{settings['method']}_{settings['f0_min']:g}-{settings['f0_max']:g}"


def extract_log_f0(waveform: np.ndarray, sample_rate: int, hop_length: int, method: str = "dio",
                   f0_min: float = 50.0, f0_max: float = 500.0) -> Tuple[np.ndarray, np.ndarray]:
    """``(log_f0, voiced)`` of ``N // hop_length`` frames, frame t centred on sample ``t * hop + hop // 2``.

    ``log_f0`` is float32, natural log of Hz where ``voiced`` (bool) and 0 elsewhere.
    """
    import pyworld

    if method not in METHODS:
        raise PitchError(f"unknown F0 method {method!r}; use one of {', '.join(METHODS)}")
    x = np.ascontiguousarray(np.asarray(waveform, dtype=np.float64).reshape(-1))
    frames = len(x) // hop_length
    if frames == 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    # Frame k of WORLD is at time k * frame_period; starting the analysis half a hop in puts it
    # on the centre of our frame k.
    x = x[hop_length // 2 :]
    period_ms = 1000.0 * hop_length / sample_rate
    if method == "dio":
        f0, times = pyworld.dio(x, sample_rate, f0_floor=f0_min, f0_ceil=f0_max, frame_period=period_ms)
        f0 = pyworld.stonemask(x, f0, times, sample_rate)
    else:
        f0, _ = pyworld.harvest(x, sample_rate, f0_floor=f0_min, f0_ceil=f0_max, frame_period=period_ms)
    # WORLD gives floor((N - hop/2) / hop) + 1 >= N // hop frames; pad with unvoiced frames for safety.
    f0 = np.pad(f0[:frames], (0, max(0, frames - len(f0))))
    voiced = (f0 > 0) & np.isfinite(f0)
    log_f0 = np.where(voiced, np.log(np.where(voiced, f0, 1.0)), 0.0).astype(np.float32)
    return log_f0, voiced


@dataclass(frozen=True)
class F0Stats:
    """Mean and standard deviation of log-F0 over voiced frames (``frames`` of them)."""

    mean: float
    std: float
    frames: int

    @classmethod
    def of(cls, log_f0: np.ndarray, voiced: np.ndarray) -> "F0Stats":
        """Statistics of one track (or of concatenated tracks); no voiced frame is a :class:`PitchError`."""
        values = np.asarray(log_f0, dtype=np.float64)[np.asarray(voiced, dtype=bool)]
        if values.size == 0:
            raise PitchError("no voiced frame to take log-F0 statistics from")
        return cls(float(values.mean()), float(values.std()), int(values.size))


def speaker_stats(tracks: Mapping[str, Tuple[np.ndarray, np.ndarray]],
                  utt2spk: Mapping[str, str]) -> Dict[str, F0Stats]:
    """Per-speaker :class:`F0Stats` over the voiced frames of their utterances in ``tracks`` (utt -> (log_f0, voiced)).

    A speaker with no voiced frame at all is left out.
    """
    grouped: Dict[str, list] = {}
    for utt, (log_f0, voiced) in tracks.items():
        grouped.setdefault(utt2spk[utt], []).append(np.asarray(log_f0)[np.asarray(voiced, dtype=bool)])
    stats = {}
    for speaker, parts in grouped.items():
        values = np.concatenate(parts) if parts else np.zeros(0)
        if values.size:
            stats[speaker] = F0Stats.of(values, np.ones(values.size, dtype=bool))
    return stats


def write_f0_stats(path: str | Path, stats: Mapping[str, F0Stats]) -> None:
    """``speaker mean std voiced_frames`` lines, sorted as Kaldi sorts (``LC_ALL=C``), written atomically."""
    from voiceswap.data.atomic import write_kaldi_map

    write_kaldi_map(path, ((spk, f"{s.mean:.6f} {s.std:.6f} {s.frames}") for spk, s in stats.items()))


def read_f0_stats(path: str | Path) -> Dict[str, F0Stats]:
    """The table :func:`write_f0_stats` writes."""
    path = Path(path)
    if not path.is_file():
        raise PitchError(f"{path}: speaker F0 statistics not found; the pitch step of stage 4 writes them")
    stats = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            speaker, mean, std, frames = fields
            stats[speaker] = F0Stats(float(mean), float(std), int(frames))
        except ValueError:
            raise PitchError(f"{path}:{number}: expected 'speaker mean std voiced_frames', got {line!r}") from None
    return stats


def pitch_stream(log_f0: np.ndarray, voiced: np.ndarray, speaker_mean: float) -> np.ndarray:
    """The ``(T, 3)`` float32 stream of :data:`COLUMNS` of a track by a speaker of mean log-F0 ``speaker_mean``."""
    voiced = np.asarray(voiced, dtype=bool)
    log_f0 = np.where(voiced, log_f0, 0.0)
    relative = np.where(voiced, log_f0 - speaker_mean, 0.0)
    return np.stack([log_f0, voiced.astype(np.float64), relative], axis=1).astype(np.float32)


def shift_range(log_f0: np.ndarray, voiced: np.ndarray, source: F0Stats, target: F0Stats) -> np.ndarray:
    """The source contour in the target's range: ``(lf0 - mu_s) / sd_s * sd_t + mu_t`` on voiced frames, else 0.

    Standard deviations below :data:`MIN_STD` count as :data:`MIN_STD`.
    """
    voiced = np.asarray(voiced, dtype=bool)
    scale = max(target.std, MIN_STD) / max(source.std, MIN_STD)
    shifted = (np.asarray(log_f0, dtype=np.float64) - source.mean) * scale + target.mean
    return np.where(voiced, shifted, 0.0).astype(np.float32)


def converted_stream(stream: np.ndarray, source: Optional[F0Stats], target: F0Stats) -> np.ndarray:
    """A source's pitch stream ``(T, 3)`` as the target speaker's: range-shifted, relative to the target's mean.

    ``source`` None: the utterance's own voiced frames give the source statistics (audio of an
    unknown speaker). A stream without voiced frames is returned unvoiced.
    """
    stream = np.asarray(stream, dtype=np.float32)
    if stream.ndim != 2 or stream.shape[1] != len(COLUMNS):
        raise PitchError(f"a pitch stream has {len(COLUMNS)} columns ({', '.join(COLUMNS)}); got shape {stream.shape}")
    voiced = stream[:, VOICED] > 0.5
    if not voiced.any():
        return pitch_stream(np.zeros(len(stream)), voiced, target.mean)
    if source is None:
        source = F0Stats.of(stream[:, LOG_F0], voiced)
    return pitch_stream(shift_range(stream[:, LOG_F0], voiced, source, target), voiced, target.mean)

