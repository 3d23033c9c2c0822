"""The WaveGlow families (seed 001): ``waveglow`` (a mel vocoder, stage 7) and ``waveglow_vq`` (a conversion model).

``waveglow`` (role vocoder, ``--vocoder waveglow``) trains
:class:`~voiceswap.nets.vocoders.waveglow.WaveGlowVocoderNet` once per corpus on aligned segments
(``data.dataset: mel_audio_segments``): batch keys ``mel (B, T, n_mels)`` natural-log mel before
normalisation and ``audio (B, T * hop)``. Loss: the flow's negative log-likelihood per dimension
(:func:`~voiceswap.nets.vocoders.waveglow.flow_nll`). :meth:`WaveGlowFamily.vocoder` samples with
``inference.sigma`` (0.9, the seed's) from a generator seeded with ``inference.seed``.

``waveglow_vq`` (role conversion, ``--model waveglow_vq``) trains
:class:`~voiceswap.nets.vocoders.waveglow.WaveGlowVQ`: a waveform VQ encoder (soft-EM VQ, beta =
gamma = 0.01) and a speaker embedding conditioning the flow, jointly (loss = NLL + VQ loss). Its
input is the waveform itself, as a stream: stage 4 writes every set's audio in frames of the hop
(content features of ``kind: waveform``, ``(N // hop, hop)`` per utterance, stream ``wave``), so the
training crops, the unit dump of stage 5 and the conversion of stage 8 read the same samples the
log-mel features were made from. Batch keys: ``input (B, T, hop)``, ``mask (B, T)``, ``speakers (B,)``.
Stage 5 dumps the code indices (``indices``, one per ``prod(encoder_strides)`` samples: 4 ms at
16 kHz with the seed's /64). Stage 8 converts with :meth:`WaveGlowVQFamily.convert_audio`: the
source's codes sampled with the target's embedding; the family makes the audio itself, so no
vocoder is used (voiceswap.conversion computes the log-mel of that audio for the mel ark).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from voiceswap.features.spectral import mel_mismatches
from voiceswap.nets.vocoders.waveglow import (
    WaveGlowConfigError,
    WaveGlowVocoder,
    WaveGlowVocoderNet,
    WaveGlowVQ,
    flow_nll,
)
from voiceswap.train.plan import Step
from voiceswap.train.registry import SingleLossFamily, UnsupportedByFamily, register_family

#: The seed's inference sigma (training uses sigma = 1).
DEFAULT_SIGMA = 0.9


def _inference(config: Mapping[str, Any]) -> Tuple[float, int]:
    """``(sigma, seed)`` of the config's ``inference:`` section, checked."""
    section = config.get("inference") or {}
    sigma, seed = float(section.get("sigma", DEFAULT_SIGMA)), int(section.get("seed", 0))
    if not sigma > 0:
        raise WaveGlowConfigError(f"inference.sigma is {sigma}: it must be > 0 (the seed samples with 0.9)")
    return sigma, seed


@register_family("waveglow")
class WaveGlowFamily(SingleLossFamily):
    """The mel-conditioned WaveGlow vocoder; one model, one optimiser (Adam, step decay, as the seed)."""

    role = "vocoder"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return [Step(7, "train")]  # once per corpus and features, shared by every model

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        features, model = config["features"], dict(config["model"])
        hop = int(features["hop_length"])
        self.sigma, self.seed = _inference(config)
        self.hop_length = hop
        return {"model": WaveGlowVocoderNet(n_mels=int(features["n_mels"]), hop_length=hop, **model)}

    def losses(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        mel = batch["mel"].transpose(1, 2)
        audio = batch["audio"]
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        output = self.models["model"](audio, mel)
        loss = flow_nll(output)
        return loss, {"loss": loss.item(), "z_std": output.z.detach().float().std().item()}

    def vocoder(self, config: Mapping[str, Any], feature_config: Mapping[str, Any]) -> torch.nn.Module:
        """The trained flow (loaded by voiceswap.train.experiment) as ``(B, n_mels, T) -> (B, T * hop)``."""
        differences = mel_mismatches(config["features"], feature_config)
        if differences:
            raise ValueError(f"this {config['family']} vocoder was trained on other features than these "
                             f"({'; '.join(differences)}): train one on these features "
                             "(stage 7, another --vocoder-dir)")
        sigma, seed = _inference(config)
        net = self.models["model"]
        return WaveGlowVocoder(getattr(net, "module", net), sigma, seed)


@register_family("waveglow_vq")
class WaveGlowVQFamily(SingleLossFamily):
    """The seed's VQ-conditioned WaveGlow with a speaker embedding: converts by swapping the speaker.

    Plan: stage 4 writes the waveform stream and trains the model; stage 5 dumps its code indices.
    """

    role = "conversion"
    default_config = "waveglow_vq"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return [Step(4, "content_features", writes=("wave",)),
                Step(4, "train"),
                Step(5, "dump_units", reads=("wave",), writes=("code_indices",))]

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        features = (config.get("content") or {}).get("features") or {}
        if features.get("kind") != "waveform":
            raise WaveGlowConfigError("waveglow_vq reads the waveform: set content.features.kind=waveform "
                                      f"(got {features.get('kind')!r}) with the hop of the log-mel features")
        self.hop_length = int(features["hop_length"])
        model = WaveGlowVQ(num_speakers=num_speakers, **config["model"])
        crop = (config.get("data") or {}).get("crop_frames")
        if crop and (int(crop) * self.hop_length) % model.multiple:
            raise WaveGlowConfigError(
                f"data.crop_frames {crop} x hop {self.hop_length} = {int(crop) * self.hop_length} samples is not a "
                f"multiple of {model.multiple} (the encoder's stride and model.n_group): "
                "use a crop_frames that makes it one")
        self.sigma, self.seed = _inference(config)
        self.multiple = model.multiple
        self.stride = model.encoder.stride
        self.n_group = model.n_group
        return {"model": model}

    def unit_inventory(self) -> Optional[int]:
        return int(self._net().vq.codebook_size)

    def _net(self) -> WaveGlowVQ:
        net = self.models["model"]
        return getattr(net, "module", net)

    def _padded(self, frames: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """Framed audio ``(B, T, hop)`` -> ``(B, N')`` zero-padded to a multiple of :attr:`multiple`, and
        ``N = T * hop``."""
        if frames.shape[-1] != self.hop_length:
            raise ValueError(f"the wave stream has frames of {frames.shape[-1]} samples, the config's "
                             f"content.features.hop_length is {self.hop_length}: re-run stage 4's waveform stream")
        audio = frames.reshape(frames.shape[0], -1)
        samples = audio.shape[1]
        missing = -samples % self.multiple
        return (F.pad(audio, (0, missing)) if missing else audio), samples

    def losses(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        audio, _ = self._padded(batch["input"])
        mask = batch.get("mask")
        real = (mask.sum(dim=1) * self.hop_length if mask is not None
                else torch.full((audio.shape[0],), audio.shape[1], device=audio.device))
        # A code frame or flow step counts when all its samples are real (padding sits at the end).
        code_ends = (torch.arange(audio.shape[1] // self.stride, device=audio.device) + 1) * self.stride
        step_ends = (torch.arange(audio.shape[1] // self.n_group, device=audio.device) + 1) * self.n_group
        code_mask = code_ends.unsqueeze(0) <= real.unsqueeze(1)
        step_mask = step_ends.unsqueeze(0) <= real.unsqueeze(1)
        output = self.models["model"](audio, batch["speakers"], code_mask)
        nll = flow_nll(output.flow, step_mask)
        loss = nll + output.vq.loss
        return loss, {"loss": loss.item(), "nll": nll.item(), "vq": output.vq.loss.item(),
                      "perplexity": float(output.vq.perplexity), "codes_used": float(output.vq.num_codes_used)}

    @torch.no_grad()
    def encode_units(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Framed audio ``(T, hop)`` -> ``indices (ceil(T * hop / stride),)``: one code per ``stride`` samples."""
        audio, samples = self._padded(features.unsqueeze(0))
        codes = self._net().quantize(audio).indices[0]
        return {"indices": codes[: -(-samples // self.stride)]}

    @torch.no_grad()
    def convert_audio(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        """Framed source audio ``(T, hop)`` -> ``(T * hop,)`` samples: its codes sampled with the target's embedding.

        ``z`` comes from a generator seeded with ``inference.seed`` (``inference.sigma``): repeatable.
        """
        audio, samples = self._padded(features.unsqueeze(0))
        generator = torch.Generator(device=audio.device).manual_seed(self.seed)
        speakers = torch.tensor([target_speaker], dtype=torch.long, device=audio.device)
        return self._net().convert(audio, speakers, self.sigma, generator)[0, :samples]

    def convert(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        raise UnsupportedByFamily("waveglow_vq converts straight to audio (convert_audio); it has no log-mel output")

    def prepare_input(self, streams, requirements, config):
        """Audio outside the corpus -> the framed waveform this model reads (``(N // hop, hop)``)."""
        from voiceswap.features.content import frame_waveform

        if "audio" not in streams:
            raise UnsupportedByFamily("waveglow_vq converts audio: give it the samples (stream 'audio')")
        return torch.from_numpy(frame_waveform(streams["audio"], self.hop_length))
