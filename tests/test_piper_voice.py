"""The out-of-corpus natural voice (Piper ``joe``): Whisper understands it, and it is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from voiceswap.data.piper import PiperVoice, PiperVoiceError, phoneme_ids
from voiceswap.eval.asr import WhisperRecognizer, error_counts

SENTENCE = "The old man walked his dog along the river every morning."


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return PiperVoice(sample_rate=16000)


def test_joe_speaks_words_whisper_understands_and_twice_the_same(voice):
    audio = voice(SENTENCE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / 16000
    assert 2.0 < seconds < 6.0, seconds  # ~11 words of read speech
    assert 0.5 < np.abs(audio).max() <= 0.9 + 1e-6
    np.testing.assert_array_equal(voice(SENTENCE), audio)  # a fresh seeded session per call
    counts = error_counts(SENTENCE, WhisperRecognizer()(audio, 16000))
    assert counts["word_edits"] <= counts["words"] // 4, counts  # "most of its words": WER <= 25%


def test_phoneme_ids_are_framed_and_padded():
    id_map = {"^": [1], "_": [0], "$": [2], "a": [14], "b": [15], ",": [8], ".": [10], " ": [3]}
    assert phoneme_ids(["ab", "a"], id_map) == [1, 0, 14, 0, 15, 0, 8, 0, 3, 0, 14, 0, 10, 0, 2]
    # NFD: a precomposed character becomes base + combining mark; unknown marks are dropped.
    assert phoneme_ids(["\u00e1"], id_map, final="") == [1, 0, 14, 0, 2]


def test_empty_text_is_an_error(voice):
    with pytest.raises(PiperVoiceError, match="empty"):
        voice("   ")
