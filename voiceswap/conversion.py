"""Conversion with a trained experiment: model input -> target speaker's log-mel -> vocoder -> audio.

Used by stage 8 (``bin/convert.py``, eval pairs from the dumped streams) and by ``bin/convert_audio.py``
(your own wav files, features made on the fly with the experiment's feature configs and stats).

A family that makes the waveform itself (``convert_audio(model_input, target_speaker) -> (N,)``
samples, e.g. ``waveglow_vq``) skips the vocoder: its audio is the output, and the log-mel written
beside it is computed from that audio with the target features' config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import torch

from voiceswap.data.atomic import temp_path_for
from voiceswap.data.finite import check_finite
from voiceswap.features.spectral import FeatureConfig, load_feature_config
from voiceswap.train.experiment import LoadedExperiment, load_vocoder

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Griffin-Lim (and a young HiFi-GAN) can overshoot; clipping would distort every metric.
PEAK = 0.99


class ConversionError(ValueError):
    """A conversion that cannot be done as asked; the message says what and where."""


@dataclass
class TargetFeatures:
    """What the model's output stream is: its feature config and the global stats that de-normalise it."""

    config: FeatureConfig
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, dump_dir: PathLike, name: str, train_set: Optional[str] = None) -> "TargetFeatures":
        """``<dump>/stats/<name>/global_stats.npz`` and the feats_config.yaml stage 2 kept under
        ``<dump>/raw/<name>``."""
        dump_dir = Path(dump_dir)
        stats = dump_dir / "stats" / name / "global_stats.npz"
        if not stats.is_file():
            raise ConversionError(f"{stats} is missing: run stages 2-3 first")
        sets = sorted((dump_dir / "raw" / name).glob("*/feats_config.yaml"))
        if train_set and (dump_dir / "raw" / name / train_set / "feats_config.yaml").is_file():
            sets = [dump_dir / "raw" / name / train_set / "feats_config.yaml"]
        if not sets:
            raise ConversionError(f"no {dump_dir}/raw/{name}/<set>/feats_config.yaml: run stage 2 first")
        with np.load(stats) as loaded:
            mean, std = torch.from_numpy(loaded["mean"]).float(), torch.from_numpy(loaded["std"]).float()
        return cls(load_feature_config(sets[0]), mean, std)


def makes_audio(family: Any) -> bool:
    """Whether a family converts straight to audio (it has ``convert_audio``), so that no vocoder is used."""
    return callable(getattr(family, "convert_audio", None))


class Converter:
    """One loaded model + vocoder: ``convert(model_input, target) -> (log_mel (T, n_mels), waveform)``."""

    def __init__(self, model: LoadedExperiment, target: TargetFeatures, vocoder_config: Mapping[str, Any],
                 vocoder_dir: Optional[PathLike] = None) -> None:
        self.model = model
        self.target = target
        # The experiments the family converts with (a diffusion model's guidance classifier), loaded with it.
        model.family.requirements = dict(model.requirements)
        self._mel_of_audio: Any = None
        if makes_audio(model.family):
            # Not even loaded: a vocoder that is not used must not be required to exist (stage 7).
            logger.info("the %s family makes the audio itself: vocoder %s not used", model.config.get("family"),
                        vocoder_config.get("family"))
            self.vocoder = None
        else:
            self.vocoder = load_vocoder(vocoder_config, target.config.to_dict(), vocoder_dir)
        self.speaker_vectors: Dict[str, torch.Tensor] = {}

    @property
    def sample_rate(self) -> int:
        return self.target.config.sample_rate

    @property
    def any_to_any(self) -> bool:
        """Whether the model converts to voices given by reference utterances (``model.speaker_conditioning:
        reference``) rather than to the speakers of its table."""
        return (self.model.config.get("model") or {}).get("speaker_conditioning") == "reference"

    @property
    def reference_feats(self) -> str:
        """The features the model's reference encoder reads (``data.reference_feats``)."""
        return self.model.config["data"]["reference_feats"]

    def add_speaker(self, speaker: str, references: Sequence[torch.Tensor]) -> None:
        """Make ``speaker`` a target of an any-to-any model from its reference utterances' features
        (``data.reference_feats``, normalised; each ``(T, D)``)."""
        self.speaker_vectors[speaker] = self.model.family.speaker_vector(references)

    def speaker_id(self, speaker: str) -> int:
        if speaker not in self.model.spk2id:
            raise ConversionError(f"target speaker '{speaker}' is not one the model knows "
                                  f"({' '.join(self.model.spk2id)})")
        return self.model.spk2id[speaker]

    def target_of(self, speaker: str) -> Union[int, torch.Tensor]:
        """What the family converts to: ``speaker``'s id in the table, or its vector (any-to-any)."""
        if not self.any_to_any:
            return self.speaker_id(speaker)
        if speaker not in self.speaker_vectors:
            raise ConversionError(f"target speaker '{speaker}' has no reference utterances: this model converts to "
                                  "a voice given by references (model.speaker_conditioning: reference)")
        return self.speaker_vectors[speaker]

    @torch.no_grad()
    def convert(self, model_input: torch.Tensor, target_speaker: str, num_frames: Optional[int] = None,
                what: str = "the utterance",
                conditions: Optional[Mapping[str, Any]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Normalised model output in the target's voice, de-normalised and vocoded.

        ``num_frames``: the source's frame count of the target features; a model working at a lower
        frame rate may give a frame more or less, which is cropped or its last frame repeated.
        ``conditions``: what a model with ``data.cond_feats`` is also conditioned on, by stream name
        (:class:`ConversionConditions`), passed on as ``family.convert(..., conditions=...)``.
        """
        if self.vocoder is None:
            return self._convert_to_audio(model_input, self.speaker_id(target_speaker), num_frames, what)
        # Only a conditioned model is given conditions: every other family keeps convert(features, speaker).
        extra = {} if conditions is None else {"conditions": conditions}
        normalised = self.model.family.convert(model_input, self.target_of(target_speaker), **extra)
        frames = num_frames or normalised.shape[0]
        if normalised.shape[0] > frames:
            normalised = normalised[:frames]
        elif normalised.shape[0] < frames:  # at most a frame or two of a lower-rate input's rounding
            normalised = torch.cat([normalised, normalised[-1:].expand(frames - normalised.shape[0], -1)])
        log_mel = normalised * self.target.std + self.target.mean
        check_finite(log_mel.numpy(), f"the converted log-mel of {what} ({self.model.checkpoint})")
        waveform = self.vocoder(log_mel.T.unsqueeze(0))[0].numpy()
        check_finite(waveform, f"the vocoded audio of {what}")
        peak = float(np.abs(waveform).max()) if waveform.size else 0.0
        if peak > PEAK:
            waveform = waveform * (PEAK / peak)
        return log_mel.numpy(), waveform

    def _convert_to_audio(self, model_input: torch.Tensor, target_id: int, num_frames: Optional[int],
                          what: str) -> Tuple[np.ndarray, np.ndarray]:
        """A family's own audio, cut or zero-padded to ``num_frames x hop`` samples, and its log-mel."""
        config = self.target.config
        if config.type != "logmel":
            raise ConversionError(f"the model's target features are {config.type}, not a log-mel: the mel ark of "
                                  "a family that makes audio is the log-mel of that audio")
        waveform = self.model.family.convert_audio(model_input, target_id).float().numpy().reshape(-1)
        samples = (num_frames or len(waveform) // config.hop_length) * config.hop_length
        waveform = waveform[:samples] if len(waveform) >= samples else np.pad(waveform, (0, samples - len(waveform)))
        check_finite(waveform, f"the converted audio of {what} ({self.model.checkpoint})")
        peak = float(np.abs(waveform).max()) if waveform.size else 0.0
        if peak > PEAK:
            waveform = waveform * (PEAK / peak)
        if self._mel_of_audio is None:
            from voiceswap.features.spectral import FeatureExtractor

            self._mel_of_audio = FeatureExtractor(config)
        return self._mel_of_audio(waveform.astype(np.float32)), waveform


class ConversionConditions:
    """The streams of ``data.cond_feats`` a model is conditioned on, made for one conversion (source -> target).

    Only streams that the family's plan makes with a ``pitch`` step can be made at conversion: the
    source's pitch stream moved to the target speaker's log-F0 range
    (:func:`voiceswap.features.pitch.converted_stream`). The target's statistics are the train set's
    (``spk_f0_stats`` beside the stream), or, for the targets of an any-to-any model, those of its
    reference utterances (:meth:`add_speaker_utterances`, :meth:`add_speaker_audio`). A corpus
    utterance (:meth:`utterance`, stage 8) reads the stream of its set, and its speaker's statistics
    come from the train set, or from its own set for a speaker not trained on. Your own audio
    (:meth:`audio`) is analysed with the config's ``pitch:`` settings on the target features' frames,
    and its own voiced frames give the source statistics.
    """

    def __init__(self, model: LoadedExperiment, dump_dir: PathLike, target: FeatureConfig,
                 train_set: str = "train") -> None:
        from voiceswap.data.loaders import cond_feats
        from voiceswap.data.streams import StreamLayout
        from voiceswap.features.pitch import pitch_settings, read_f0_stats
        from voiceswap.train.jobs import producer

        self.config = model.config
        self.layout = StreamLayout.of(dump_dir, model.path)
        self.target = target
        self.names = cond_feats(self.config["data"])
        for name in self.names:
            step = producer(model.family, self.config, name)
            if step is None or step.kind != "pitch":
                raise ConversionError(f"data.cond_feats names {name!r}, which no pitch step of the "
                                      f"{self.config.get('family')} plan makes: only pitch streams can be made "
                                      "at conversion")
        self.train_set = train_set
        self.settings = pitch_settings(self.config.get("pitch")) if self.names else {}
        self.train_stats = {name: read_f0_stats(self._dir(name, train_set) / "spk_f0_stats") for name in self.names}
        # Any-to-any targets: statistics of their reference utterances, which take the train set's place.
        self.reference_stats: Dict[str, Dict[str, Any]] = {name: {} for name in self.names}
        self._sets: dict = {}

    @classmethod
    def of(cls, model: LoadedExperiment, dump_dir: PathLike, target: FeatureConfig,
           train_set: str = "train") -> Optional["ConversionConditions"]:
        """The conditions of ``model``, or None for a model without ``data.cond_feats`` (most families)."""
        if not (model.config.get("data") or {}).get("cond_feats"):
            return None
        return cls(model, dump_dir, target, train_set)

    def _dir(self, name: str, subset: str) -> Path:
        from voiceswap.data.streams import stream_dir

        return stream_dir(self.config, name, subset, self.layout)

    def _set(self, name: str, data_set: str) -> Tuple[Mapping[str, Any], Mapping[str, Any]]:
        """The ``name`` streams of ``data_set`` and their speakers' statistics (read once)."""
        import kaldiio

        from voiceswap.features.pitch import read_f0_stats

        if (name, data_set) not in self._sets:
            scp = self._dir(name, data_set) / "feats.scp"
            if not scp.is_file():
                raise ConversionError(f"{scp} is missing: the {name} stream of {data_set} is made by stage 4")
            self._sets[name, data_set] = (kaldiio.load_scp(str(scp)), read_f0_stats(scp.parent / "spk_f0_stats"))
        return self._sets[name, data_set]

    def add_speaker_utterances(self, speaker: str, data_set: str, utts: Sequence[str]) -> None:
        """An any-to-any target's log-F0 statistics from its reference utterances ``utts`` of ``data_set``."""
        from voiceswap.features.pitch import LOG_F0, VOICED, F0Stats, PitchError

        for name in self.names:
            streams, _ = self._set(name, data_set)
            missing = [utt for utt in utts if utt not in streams]
            if missing:
                raise ConversionError(f"reference utterance(s) {' '.join(missing[:3])} of '{speaker}' have no {name} "
                                      f"stream in {self._dir(name, data_set)}: re-run stage 4")
            stream = np.concatenate([np.asarray(streams[utt]) for utt in utts])
            try:
                self.reference_stats[name][speaker] = F0Stats.of(stream[:, LOG_F0], stream[:, VOICED] > 0.5)
            except PitchError:
                raise ConversionError(f"the reference utterances of '{speaker}' ({' '.join(utts[:3])} ...) have no "
                                      "voiced frame: no pitch range to convert to") from None

    def add_speaker_audio(self, speaker: str, waveforms: Sequence[np.ndarray]) -> None:
        """An any-to-any target's log-F0 statistics from reference recordings (at the target features' rate)."""
        from voiceswap.features.pitch import F0Stats, PitchError, extract_log_f0

        tracks = [extract_log_f0(waveform, self.target.sample_rate, self.target.hop_length, **self.settings)
                  for waveform in waveforms]
        try:
            stats = F0Stats.of(np.concatenate([f0 for f0, _ in tracks]), np.concatenate([v for _, v in tracks]))
        except PitchError:
            raise ConversionError(f"the reference recordings of '{speaker}' have no voiced frame: no pitch range "
                                  "to convert to") from None
        for name in self.names:
            self.reference_stats[name][speaker] = stats

    def _target_stats(self, name: str, target_speaker: str) -> Any:
        stats = self.reference_stats[name].get(target_speaker) or self.train_stats[name].get(target_speaker)
        if stats is None:
            raise ConversionError(f"target speaker '{target_speaker}' has no log-F0 statistics in "
                                  f"{self._dir(name, self.train_set)}/spk_f0_stats: re-run the pitch step of stage 4")
        return stats

    def utterance(self, data_set: str, utt: str, source_speaker: str, target_speaker: str) -> dict:
        """``{name: (T, 3) float32}`` for corpus utterance ``utt`` of ``data_set`` converted to ``target_speaker``."""
        from voiceswap.features.pitch import PitchError, converted_stream

        conditions = {}
        for name in self.names:
            streams, set_stats = self._set(name, data_set)
            if utt not in streams:
                raise ConversionError(f"utterance '{utt}' has no {name} stream in {self._dir(name, data_set)}: "
                                      "re-run stage 4")
            source = self.train_stats[name].get(source_speaker) or set_stats.get(source_speaker)
            try:
                conditions[name] = converted_stream(np.asarray(streams[utt]), source,
                                                    self._target_stats(name, target_speaker))
            except PitchError as error:
                raise ConversionError(f"utterance '{utt}' of {self._dir(name, data_set)}: {error}") from None
        return conditions

    def audio(self, waveform: np.ndarray, target_speaker: str) -> dict:
        """``{name: (T, 3) float32}`` for audio of an unknown speaker (at the target features' rate)."""
        from voiceswap.features.pitch import converted_stream, extract_log_f0, pitch_stream

        log_f0, voiced = extract_log_f0(waveform, self.target.sample_rate, self.target.hop_length, **self.settings)
        source = pitch_stream(log_f0, voiced, 0.0)  # converted_stream takes its statistics from its voiced frames
        return {name: converted_stream(source, None, self._target_stats(name, target_speaker)) for name in self.names}


def write_wav(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM, written to a temp file and renamed (nothing half-written survives a crash)."""
    tmp = temp_path_for(path)
    sf.write(tmp, waveform, sample_rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)


class AudioFeatures:
    """The feature streams of stages 2-3 for audio outside the corpus, made as the corpus's were.

    Every feature of ``<dump>/raw/<name>/`` whose global statistics exist (``<dump>/stats/<name>``)
    is extracted with the stored ``feats_config.yaml`` and normalised with those statistics: the
    streams are ``<name>`` (normalised), ``raw/<name>`` and ``audio`` (the samples).
    """

    def __init__(self, dump_dir: PathLike, train_set: str = "train") -> None:
        from voiceswap.features.spectral import FeatureExtractor

        dump_dir = self.dump_dir = Path(dump_dir)
        self.features = {}
        for raw in sorted((dump_dir / "raw").glob("*")):
            stats = dump_dir / "stats" / raw.name / "global_stats.npz"
            configs = [raw / train_set / "feats_config.yaml"] + sorted(raw.glob("*/feats_config.yaml"))
            config_path = next((path for path in configs if path.is_file()), None)
            if config_path is None or not stats.is_file():
                continue
            with np.load(stats) as loaded:
                mean, std = loaded["mean"].astype(np.float32), loaded["std"].astype(np.float32)
            self.features[raw.name] = (FeatureExtractor(load_feature_config(config_path)), mean, std)
        if not self.features:
            raise ConversionError(f"no features with statistics under {dump_dir}/raw and {dump_dir}/stats: "
                                  "run stages 2-3 of the corpus the model was trained on")
        rates = {extractor.config.sample_rate for extractor, _, _ in self.features.values()}
        if len(rates) != 1:
            raise ConversionError(f"the features of {dump_dir} have several sample rates {sorted(rates)}")
        self.sample_rate = rates.pop()

    def __call__(self, waveform: np.ndarray) -> dict:
        streams: dict = {"audio": waveform}
        for name, (extractor, mean, std) in self.features.items():
            raw = extractor(waveform)
            streams[f"raw/{name}"] = raw
            streams[name] = ((raw - mean) / std).astype(np.float32)
        return streams


def read_any_audio(path: PathLike, sample_rate: int) -> Tuple[np.ndarray, str]:
    """Mono float32 samples at ``sample_rate`` from any file soundfile reads; the note says what was changed."""
    from voiceswap.data.audio import AudioError, read_audio_entry

    samples, rate = read_audio_entry(str(path))
    notes = []
    if samples.shape[1] > 1:
        notes.append(f"{samples.shape[1]} channels downmixed to mono")
        samples = samples.mean(axis=1, keepdims=True)
    waveform = samples[:, 0]
    if waveform.size == 0:
        raise AudioError(f"'{path}' is empty (0 samples)")
    check_finite(waveform, f"the audio of '{path}'")
    if rate != sample_rate:
        import torchaudio

        notes.append(f"resampled {rate} -> {sample_rate} Hz")
        waveform = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(waveform)), rate,
                                                  sample_rate).numpy()
    return waveform.astype(np.float32), ", ".join(notes)
