"""The HiFi-GAN vocoder family (stage 7): generator + (MPD, MSD) discriminator, LSGAN + feature matching + mel L1.

Batch keys (a segment dataset, batch of ``B`` random segments of ``T`` frames, e.g. ``T = 52``
frames = 8320 samples as in the seed):

* ``mel`` ``(B, T, n_mels)`` float: natural-log mel frames as the features store them *before*
  normalisation (``dump/raw/logmel80``; de-normalise if you start from ``dump/norm``), or, to
  fine-tune on an acoustic model's output, its teacher-forced de-normalised predictions of the
  same frames;
* ``audio`` ``(B, T * hop_length)`` (or ``(B, 1, T * hop_length)``) float in [-1, 1]: the samples
  ``[t0 * hop, (t0 + T) * hop)`` of the utterance whose frames ``t0 .. t0 + T - 1`` are ``mel``
  (with our features, frame ``t`` is centred on sample ``t * hop + hop / 2``).

The mel loss compares log-mels of the generated and of the real segment, both computed by
:class:`~voiceswap.nets.vocoders.hifigan_losses.LogMelSpectrogram` with the ``features`` section's
parameters (not the batch's ``mel``, whose frames at the segment edges saw audio outside it).

Each ``train_step`` updates the discriminator on ``(audio, G(mel).detach())``, then the generator
on ``adv + feature_matching_weight * fm + mel_weight * mel_l1`` (2 and 45 as published). During the
generator's pass the discriminator's parameters do not require gradients, so its accumulated
gradients are untouched (needed with ``train.grad_accum_steps`` > 1) and no time is spent on them.

With ``loss.adversarial_start_step`` N > 0 the first N steps train the generator alone on
``mel_weight * mel_l1`` and leave the discriminator untouched (ParallelWaveGAN's
``discriminator_train_start_steps``): a generator-only step costs about a third of a GAN step on a
CPU, and the discriminators then start from a generator that already makes speech-like audio.

Optimisers ``generator`` and ``discriminator`` come from the config's ``optim`` section
(:mod:`voiceswap.train.optim`). Learning rates decay by 0.999 every 1000 updates (``scheduler: {type:
exponential, gamma: 0.999, period: 1000}``: the seed decays once per epoch; we use the per-update
gamma ``0.999 ** (1 / 1000)``, which matches at every epoch boundary). The discriminator's schedule
counts its own updates, so it does not decay during the warm-up.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from voiceswap.nets.vocoders.hifigan import HiFiGANDiscriminator, HiFiGANGenerator
from voiceswap.nets.vocoders.hifigan_losses import (
    LogMelSpectrogram,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_l1_loss,
)
from voiceswap.features.spectral import mel_mismatches, mel_parameters
from voiceswap.nets.vocoders.hifigan import HiFiGANVocoder
from voiceswap.train.plan import Step
from voiceswap.train.registry import Family, register_family



def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


@register_family("hifigan")
class HiFiGANFamily(Family):
    """HiFi-GAN V1/V2-style vocoder; optimisers ``generator`` and ``discriminator`` (AdamW, 2e-4, (0.8, 0.99))."""

    ema_targets = ["generator"]
    role = "vocoder"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return [Step(7, "train")]  # once per corpus and features, shared by every model

    def vocoder(self, config: Mapping[str, Any], feature_config: Mapping[str, Any]) -> torch.nn.Module:
        """The trained generator (loaded by voiceswap.train.experiment) for features ``feature_config``."""
        differences = mel_mismatches(config["features"], feature_config)
        if differences:
            raise ValueError(f"this {config['family']} vocoder was trained on other features than these "
                             f"({'; '.join(differences)}): train one on these features "
                             "(stage 7, another --vocoder-dir)")
        return HiFiGANVocoder(_unwrap(self.models["generator"]).eval())

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        features = config["features"]
        self.log_mel = LogMelSpectrogram(**mel_parameters(features))
        self.hop_length = int(features["hop_length"])
        losses = config.get("loss", {})
        self.mel_weight = float(losses.get("mel_weight", 45.0))
        self.feature_matching_weight = float(losses.get("feature_matching_weight", 2.0))
        self.adversarial_start_step = int(losses.get("adversarial_start_step", 0))
        if self.adversarial_start_step < 0:
            raise ValueError(f"loss.adversarial_start_step must be >= 0, got {self.adversarial_start_step}")
        model = config["model"]
        generator = HiFiGANGenerator(in_channels=features["n_mels"], hop_length=self.hop_length, **model["generator"])
        return {"generator": generator, "discriminator": HiFiGANDiscriminator(**model["discriminator"])}

    def _segments(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``mel (B, n_mels, T)`` and ``audio (B, 1, T * hop)`` from the batch, with the lengths checked."""
        mel = batch["mel"].transpose(1, 2)
        audio = batch["audio"]
        if audio.dim() == 2:
            audio = audio.unsqueeze(1)
        if audio.shape[-1] != mel.shape[-1] * self.hop_length:
            raise ValueError(f"audio segments have {audio.shape[-1]} samples but {mel.shape[-1]} mel frames need "
                             f"{mel.shape[-1]} x {self.hop_length} = {mel.shape[-1] * self.hop_length}: cut the "
                             "audio at frame boundaries (samples [t0 * hop, (t0 + T) * hop))")
        return mel, audio

    def _log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.log_mel.mel.spectrogram.window.device != waveform.device:
            self.log_mel = self.log_mel.to(waveform.device)
        return self.log_mel(waveform)

    def train_step(self, batch, step):
        generator, discriminator = self.models["generator"], self.models["discriminator"]
        mel, audio = self._segments(batch)
        fake = generator(mel)
        with torch.no_grad():
            real_log_mel = self._log_mel(audio)
        if step < self.adversarial_start_step:
            return self._generator_only_step(fake, real_log_mel)

        # Discriminator: real -> 1, generated -> 0.
        outputs = discriminator(audio, fake.detach())
        d_mpd = discriminator_adversarial_loss(outputs["mpd"][0], outputs["mpd"][1])
        d_msd = discriminator_adversarial_loss(outputs["msd"][0], outputs["msd"][1])
        d_loss = d_mpd + d_msd
        metrics: Dict[str, float] = {"d_loss": d_loss.item(), "d_mpd": d_mpd.item(), "d_msd": d_msd.item()}
        self._record_norm(metrics, "d_grad_norm", self.optimizer_step(d_loss, "discriminator"))

        # Generator: fool the (just updated) discriminator, match its features and the mel.
        plain_discriminator = _unwrap(discriminator)  # no DDP gradient sync for a pass that updates G only
        flags = [p.requires_grad for p in plain_discriminator.parameters()]
        plain_discriminator.requires_grad_(False)
        try:
            outputs = plain_discriminator(audio, fake)
            adversarial = generator_adversarial_loss(outputs["mpd"][1]) + generator_adversarial_loss(outputs["msd"][1])
            feature_matching = (feature_matching_loss(outputs["mpd"][2], outputs["mpd"][3])
                                + feature_matching_loss(outputs["msd"][2], outputs["msd"][3]))
            mel_l1 = mel_l1_loss(self._log_mel(fake), real_log_mel)
            g_loss = adversarial + self.feature_matching_weight * feature_matching + self.mel_weight * mel_l1
            g_norm = self.optimizer_step(g_loss, "generator")
        finally:
            for parameter, flag in zip(plain_discriminator.parameters(), flags):
                parameter.requires_grad_(flag)
        metrics.update({"loss": g_loss.item(), "g_adv": adversarial.item(), "g_fm": feature_matching.item(),
                        "mel_l1": mel_l1.item()})
        self._record_norm(metrics, "g_grad_norm", g_norm)
        return metrics

    def _generator_only_step(self, fake: torch.Tensor, real_log_mel: torch.Tensor) -> Dict[str, float]:
        """A warm-up step: the generator on the mel loss alone; the discriminator is not run."""
        mel_l1 = mel_l1_loss(self._log_mel(fake), real_log_mel)
        g_loss = self.mel_weight * mel_l1
        metrics = {"loss": g_loss.item(), "mel_l1": mel_l1.item()}
        self._record_norm(metrics, "g_grad_norm", self.optimizer_step(g_loss, "generator"))
        return metrics

    @staticmethod
    def _record_norm(metrics: Dict[str, float], name: str, norm: Optional[float]) -> None:
        if norm is not None:  # None on accumulation micro-batches that do not update
            metrics[name] = norm

    @torch.no_grad()
    def valid_step(self, batch):
        mel, audio = self._segments(batch)
        fake = self.models["generator"](mel)
        return {"mel_l1": mel_l1_loss(self._log_mel(fake), self._log_mel(audio)).item()}
