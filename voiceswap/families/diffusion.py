"""The diffusion families (seed 000, vq-voice-swap): ``diffusion`` (the VQ-conditioned voice swap),
``diffusion_classifier`` (its speaker classifier on noisy inputs, for classifier guidance) and
``diffusion_waveform`` (the seed's own UNet on waveform segments, for generation; see its class).

``diffusion`` trains :class:`~voiceswap.nets.diffusion.encoder.VQDiffusion` jointly (stage 4): the
``conv-mfcc`` encoder turns ``input`` (normalised MFCC-39, ``(B, T, 39)``) into 50 Hz VQ codes, and
the UNet predicts the noise added to ``target`` (normalised log-mel, ``(B, T, 80)``, mel bins as
channels) at ``t ~ U(0, 1)``, given the codes and the speaker label. Loss = masked eps-MSE + VQ
loss. For classifier-free guidance the label is replaced by "no class" with probability
``diffusion.label_dropout`` and the codes are zeroed with ``diffusion.code_dropout`` (the seed: 0.1
each). Validation reports the eps-MSE in the four quartiles of ``t`` (``eps_mse_q1`` .. ``q4``, the
seed's eval) with a fixed noise draw, so numbers of different steps compare.

Conversion (stage 8) = the source's codes + the target's label, sampled with the ``inference:``
section: ``guidance`` ``none`` | ``classifier`` (the ``classifier`` experiment, trained in stage 6,
pushes every step's mean toward the target: ``mean += var * scale * grad log p(y | x, s)``) |
``cfg`` (``eps_c + scale (eps_c - eps_no_label)``); ``code_scale`` adds the seed's separate guidance
on the codes; ``steps`` and ``sampling_schedule`` (``identity`` | ``square``) set the time grid. The
noise is drawn from ``inference.seed``, so two settings convert an utterance from the same noise.

``diffusion_classifier`` trains :class:`~voiceswap.nets.diffusion.classifier.NoisyClassifier` with
cross-entropy on ``x_t`` of the log-mel ``input`` at ``t ~ U(0, 1)``, or with the seed's curriculum
``t = u^power``, ``power`` going linearly from ``curriculum_power`` to 1 over ``curriculum_steps``.
Its noise schedule must be the decoder's (checked when guidance starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from voiceswap.data.dataset import read_spk2id
from voiceswap.data.finite import NonFiniteError
from voiceswap.nets.diffusion.classifier import NoisyClassifier
from voiceswap.nets.diffusion.encoder import VQDiffusion
from voiceswap.nets.diffusion.sampler import (
    Constraint,
    DiffusionSampler,
    NonFiniteSample,
    cfg_eps,
    classifier_grad,
)
from voiceswap.nets.diffusion.schedules import NOISE_SCHEDULES, SAMPLING_SCHEDULES, NoiseSchedule, noise_schedule
from voiceswap.nets.diffusion.unet import UNet
from voiceswap.train.ema import unwrap
from voiceswap.train.plan import Step
from voiceswap.train.registry import Family, SingleLossFamily, UnsupportedByFamily, register_family

GUIDANCE_KINDS = ("none", "classifier", "cfg")
QUARTILES = 4
#: The valid steps' fixed noise: the same draw at every validation, so eps-MSE of two steps compares.
VALID_SEED = 1234


def _schedule_of(config: Mapping[str, Any], where: str) -> NoiseSchedule:
    name = (config.get("diffusion") or {}).get("schedule")
    if name not in NOISE_SCHEDULES:
        raise ValueError(f"{where}diffusion.schedule is {name!r}; noise schedules: {', '.join(NOISE_SCHEDULES)} "
                         f"(--train-overrides {where}diffusion.schedule=exp)")
    return noise_schedule(name)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean squared error over real frames and all channels; ``(B, C, T)`` tensors, ``mask (B, T)``."""
    if mask is None:
        return F.mse_loss(prediction, target)
    weights = mask.unsqueeze(1).to(prediction.dtype)
    return ((prediction - target).pow(2) * weights).sum() / (weights.sum() * prediction.shape[1]).clamp(min=1.0)


def quartile_times(batch_size: int, quartile: int, generator: torch.Generator) -> torch.Tensor:
    """``t`` drawn uniformly inside quartile ``quartile`` (0-based) of ``[0, 1]``."""
    return (quartile + torch.rand(batch_size, generator=generator)) / QUARTILES


@dataclass(frozen=True)
class InferenceSettings:
    """The ``inference:`` section, checked: every bad value is one line naming the option."""

    guidance: str
    scale: float
    code_scale: float
    steps: int
    sampling_schedule: str
    sigma_large: bool
    constrain_zero_mean: bool
    constrain_clip: Optional[float]
    seed: int

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "InferenceSettings":
        section = config.get("inference")
        if not isinstance(section, Mapping):
            raise ValueError("the diffusion config has no inference: section (guidance, scale, steps, ...)")
        fix = "(stage 8: --inference-overrides \"inference.{key}=...\")"
        try:
            settings = cls(**{key: section[key] for key in cls.__dataclass_fields__})
        except KeyError as error:
            key = error.args[0]
            raise ValueError(f"the inference: section lacks {key!r} {fix.format(key=key)}") from None
        if settings.guidance not in GUIDANCE_KINDS:
            raise ValueError(f"inference.guidance is {settings.guidance!r}; choose one of {', '.join(GUIDANCE_KINDS)} "
                             + fix.format(key="guidance"))
        if settings.sampling_schedule not in SAMPLING_SCHEDULES:
            raise ValueError(f"inference.sampling_schedule is {settings.sampling_schedule!r}; sampling schedules: "
                             f"{', '.join(SAMPLING_SCHEDULES)} " + fix.format(key="sampling_schedule"))
        if isinstance(settings.steps, bool) or not isinstance(settings.steps, int) or settings.steps < 1:
            raise ValueError(f"inference.steps is {settings.steps!r}; the sampler needs an integer >= 1 step "
                             + fix.format(key="steps"))
        if settings.scale < 0 or settings.code_scale < 0:
            raise ValueError(f"inference.scale ({settings.scale}) and inference.code_scale ({settings.code_scale}) "
                             "must be >= 0 " + fix.format(key="scale"))
        if settings.constrain_clip is not None and settings.constrain_clip <= 0:
            raise ValueError(f"inference.constrain_clip is {settings.constrain_clip}; a positive bound, or null for "
                             "no clip " + fix.format(key="constrain_clip"))
        return settings

    def sampler(self, schedule: NoiseSchedule, steps: Optional[int] = None) -> DiffusionSampler:
        return DiffusionSampler(schedule, steps or self.steps, self.sampling_schedule, self.sigma_large,
                                Constraint(self.constrain_zero_mean, self.constrain_clip))


@register_family("diffusion")
class DiffusionFamily(Family):
    """The VQ-conditioned diffusion voice swap; one model (encoder + VQ + UNet), one optimiser.

    Plan: stage 4 trains encoder, codebook and decoder jointly; stage 5 dumps the codes; stage 6
    trains the ``classifier:`` section (family ``diffusion_classifier``) into ``exp/<tag>/classifier``.
    """

    role = "conversion"
    default_config = "diffusion"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        steps = [Step(4, "train"), Step(5, "dump_units")]
        if isinstance(config.get("classifier"), Mapping):
            steps.append(Step(6, "train", "classifier"))
        return steps

    def requires(self, config: Mapping[str, Any]) -> Dict[str, int]:
        """Classifier guidance needs the ``classifier`` experiment of stage 6; the other settings need nothing."""
        if (config.get("inference") or {}).get("guidance") == "classifier":
            return {"classifier": 6}
        return {}

    # The Converter hands over the loaded requirements (LoadedExperiment by name); checked on arrival.
    @property
    def requirements(self) -> Mapping[str, Any]:
        return getattr(self, "_requirements", {})

    @requirements.setter
    def requirements(self, requirements: Mapping[str, Any]) -> None:
        classifier = requirements.get("classifier")
        if classifier is not None:
            self._check_classifier(classifier)
        self._requirements = dict(requirements)

    def _check_classifier(self, classifier: Any) -> None:
        where = f"the guidance classifier {classifier.path}"
        if classifier.config.get("family") != "diffusion_classifier":
            raise ValueError(f"{where} is a {classifier.config.get('family')!r} model, not a diffusion_classifier")
        theirs = (classifier.config.get("diffusion") or {}).get("schedule")
        ours = self.config["diffusion"]["schedule"]
        if theirs != ours:
            raise ValueError(f"{where} was trained on the {theirs!r} noise schedule, the decoder on {ours!r}: "
                             f"retrain it (stage 6) with --train-overrides classifier.diffusion.schedule={ours}")
        # A requirement lives in a sub-dir of the decoder's experiment, whose spk2id gives the labels.
        decoder_speakers = Path(classifier.path).parent / "spk2id"
        if decoder_speakers.is_file() and read_spk2id(decoder_speakers) != classifier.spk2id:
            raise ValueError(f"{where} knows other speakers than the decoder ({decoder_speakers}): retrain it "
                             "(stage 6) on the same train set")

    def unit_inventory(self) -> Optional[int]:
        return int(unwrap(self.models["model"]).vq.codebook_size)

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        self.config = config
        self.schedule = _schedule_of(config, "")
        settings = config["diffusion"]
        self.label_dropout = float(settings["label_dropout"])
        self.code_dropout = float(settings["code_dropout"])
        for key in ("label_dropout", "code_dropout"):
            if not 0.0 <= float(settings[key]) < 1.0:
                raise ValueError(f"diffusion.{key} is {settings[key]}; a probability in [0, 1)")
        self.inference = InferenceSettings.of(config)
        if self.inference.guidance == "classifier" and not isinstance(config.get("classifier"), Mapping):
            raise ValueError("inference.guidance=classifier needs a classifier: section (family diffusion_classifier, "
                             "trained by stage 6); this config has none: use inference.guidance=cfg or none")
        if self.inference.guidance == "cfg" and self.label_dropout == 0.0:
            raise ValueError("inference.guidance=cfg needs a model trained with diffusion.label_dropout > 0 "
                             "(it never saw the 'no speaker' label); use inference.guidance=none or classifier")
        return {"model": VQDiffusion(num_speakers=num_speakers, schedule=self.schedule, **config["model"])}

    # Training.

    def _forward(self, batch: Mapping[str, Any], t: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor,
                 code_keep: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        """eps-MSE over real frames and the VQ output, for times ``t (B,)`` and ``noise`` like the target."""
        x0 = batch["target"].transpose(1, 2)
        if batch["input"].shape[1] != batch["target"].shape[1]:
            raise ValueError(f"{batch['input'].shape[1]} input frames for {batch['target'].shape[1]} target frames: "
                             "the diffusion decoder needs input and target features at one frame rate "
                             "(data.input_feats mfcc39, data.target_feats logmel80)")
        x_t = self.schedule.q_sample(x0, t, noise)
        eps_hat, vq = self.models["model"](x_t, t, labels, batch["input"].transpose(1, 2), batch.get("mask"), code_keep)
        return masked_mse(eps_hat, noise, batch.get("mask")), vq

    def train_step(self, batch: Mapping[str, Any], step: int) -> Dict[str, float]:
        target = batch["target"]
        batch_size, device = target.shape[0], target.device
        t = torch.rand(batch_size, device=device)
        noise = torch.randn(batch_size, target.shape[2], target.shape[1], device=device)
        labels = batch["speakers"].clone()
        num_speakers = unwrap(self.models["model"]).num_speakers
        labels[torch.rand(batch_size, device=device) < self.label_dropout] = num_speakers  # "no class"
        code_keep = (torch.rand(batch_size, device=device) >= self.code_dropout).to(target.dtype)
        eps_mse, vq = self._forward(batch, t, noise, labels, code_keep)
        loss = eps_mse + vq.loss
        metrics = {"loss": loss.item(), "eps_mse": eps_mse.item(), "vq": vq.loss.item(),
                   "perplexity": float(vq.perplexity), "codes_used": float(vq.num_codes_used)}
        grad_norm = self.optimizer_step(loss, "model")
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        return metrics

    @torch.no_grad()
    def valid_step(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        """eps-MSE in each quartile of t (conditional: codes and label), VQ loss and code usage."""
        target = batch["target"]
        generator = torch.Generator().manual_seed(VALID_SEED)
        metrics: Dict[str, float] = {}
        for quartile in range(QUARTILES):
            t = quartile_times(target.shape[0], quartile, generator).to(target.device)
            noise = torch.randn(target.shape[0], target.shape[2], target.shape[1], generator=generator)
            noise = noise.to(target.device)
            eps_mse, vq = self._forward(batch, t, noise, batch["speakers"], None)
            metrics[f"eps_mse_q{quartile + 1}"] = eps_mse.item()
        metrics["eps_mse"] = sum(metrics[f"eps_mse_q{q + 1}"] for q in range(QUARTILES)) / QUARTILES
        metrics.update({"vq": vq.loss.item(), "perplexity": float(vq.perplexity),
                        "codes_used": float(vq.num_codes_used)})
        metrics["loss"] = metrics["eps_mse"] + metrics["vq"]
        return metrics

    # Inference.

    @torch.no_grad()
    def encode_units(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(T, in_dim)`` -> code ``indices (ceil(T/2),)`` and quantised ``vectors (ceil(T/2), code_dim)``."""
        output = unwrap(self.models["model"]).quantize(features.T.unsqueeze(0))
        return {"indices": output.indices[0], "vectors": output.quantized[0].T}

    def _classifier(self) -> torch.nn.Module:
        loaded = self.requirements.get("classifier")
        if loaded is None:
            raise UnsupportedByFamily("inference.guidance=classifier but no guidance classifier was loaded: load the "
                                      "experiment with its requirements (Experiment.load(with_requirements=True)); "
                                      "stage 6 trains it into exp/<tag>/classifier")
        return unwrap(loaded.models["model"])

    def _denoiser(self) -> torch.nn.Module:
        """The model whose ``eps(x_t, t, labels, codes)`` predicts the noise."""
        return unwrap(self.models["model"])

    def _no_codes(self, batch_size: int, frames: int, device: torch.device) -> Optional[torch.Tensor]:
        """The codes of "no content": zeros, as code dropout trains them (None: a model without codes)."""
        code_dim = unwrap(self.models["model"]).vq.code_dim
        return torch.zeros(batch_size, code_dim, (frames + 1) // 2, device=device)

    def sample(self, codes: Optional[torch.Tensor], labels: Optional[torch.Tensor], frames: int, batch_size: int = 1,
               generator: Optional[torch.Generator] = None, steps: Optional[int] = None) -> torch.Tensor:
        """``(B, channels, frames)`` (normalised log-mel) from ``codes (B, code_dim, T_c)`` (None: no content, as
        code dropout trained it) and speaker ``labels (B,)`` (None: no speaker), with the inference settings."""
        unet = self._denoiser()
        device = next(unet.parameters()).device
        settings = self.inference
        if codes is None:
            codes = self._no_codes(batch_size, frames, device)
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(settings.seed)
        x_T = torch.randn(batch_size, unet.in_channels, frames, generator=generator, device=device)

        def conditional(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return unet.eps(x, t, labels, codes)

        eps_fn = conditional
        if settings.guidance == "cfg" and labels is not None:
            eps_fn = cfg_eps(conditional, lambda x, t: unet.eps(x, t, None, codes), settings.scale)
        if settings.code_scale and codes is not None:
            no_codes = torch.zeros_like(codes)
            eps_fn = cfg_eps(eps_fn, lambda x, t: unet.eps(x, t, labels, no_codes), settings.code_scale)
        grad_fn = None
        if settings.guidance == "classifier" and labels is not None:
            classifier = self._classifier()
            grad_fn = classifier_grad(lambda x, t: classifier(x, t)["logits"], labels)
        sampler = settings.sampler(self.schedule, steps)
        try:
            return sampler.sample(eps_fn, x_T, generator, grad_fn, settings.scale if grad_fn is not None else 0.0)
        except NonFiniteSample as error:
            raise NonFiniteError(f"diffusion sampling ({settings}): {error}") from None

    @torch.no_grad()
    def convert(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        """The source's codes + the target's label: ``(T, in_dim)`` -> normalised log-mel ``(T, out_dim)``."""
        model = unwrap(self.models["model"])
        device = next(model.parameters()).device
        codes = model.quantize(features.to(device).T.unsqueeze(0)).quantized
        labels = torch.tensor([target_speaker], dtype=torch.long, device=device)
        return self.sample(codes, labels, features.shape[0])[0].T


@register_family("diffusion_classifier")
class DiffusionClassifierFamily(SingleLossFamily):
    """Speaker classifier on ``x_t`` (normalised log-mel ``input``), cross-entropy; AdamW as the seed."""

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        self.schedule = _schedule_of(config, "classifier.")
        settings = config["diffusion"]
        self.curriculum_steps = int(settings.get("curriculum_steps", 0))
        self.curriculum_power = float(settings.get("curriculum_power", 1.0))
        if self.curriculum_steps < 0 or self.curriculum_power < 1.0:
            raise ValueError(f"classifier.diffusion.curriculum_steps ({self.curriculum_steps}) must be >= 0 and "
                             f"curriculum_power ({self.curriculum_power}) >= 1")
        self.step = 0
        model = dict(config["model"])
        model["in_channels"] = model.pop("in_dim")
        return {"model": NoisyClassifier(num_classes=num_speakers, **model)}

    def power(self, step: int) -> float:
        """The curriculum's exponent at ``step``: ``curriculum_power`` -> 1 linearly (1 without a curriculum)."""
        if not self.curriculum_steps:
            return 1.0
        progress = min(1.0, step / self.curriculum_steps)
        return self.curriculum_power + (1.0 - self.curriculum_power) * progress

    def _logits(self, batch: Mapping[str, Any], t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x_t = self.schedule.q_sample(batch["input"].transpose(1, 2), t, noise)
        return self.models["model"](x_t, t, batch.get("mask"))["logits"]

    def losses(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        features = batch["input"]
        # u^power with power > 1 favours small t (little noise) early in training, the seed's curriculum.
        t = torch.rand(features.shape[0], device=features.device) ** self.power(self.step)
        logits = self._logits(batch, t, torch.randn_like(features.transpose(1, 2)))
        loss = F.cross_entropy(logits, batch["speakers"])
        accuracy = (logits.argmax(1) == batch["speakers"]).float().mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}

    def train_step(self, batch: Any, step: int) -> Dict[str, float]:
        self.step = step
        return super().train_step(batch, step)

    @torch.no_grad()
    def valid_step(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        """Cross-entropy and accuracy in each quartile of t (fixed noise draw) and their means."""
        features = batch["input"]
        generator = torch.Generator().manual_seed(VALID_SEED)
        metrics: Dict[str, float] = {}
        for quartile in range(QUARTILES):
            t = quartile_times(features.shape[0], quartile, generator).to(features.device)
            noise = torch.randn(features.shape[0], features.shape[2], features.shape[1],
                                generator=generator).to(features.device)
            logits = self._logits(batch, t, noise)
            metrics[f"loss_q{quartile + 1}"] = F.cross_entropy(logits, batch["speakers"]).item()
            metrics[f"accuracy_q{quartile + 1}"] = (logits.argmax(1) == batch["speakers"]).float().mean().item()
        for name in ("loss", "accuracy"):
            metrics[name] = sum(metrics[f"{name}_q{q + 1}"] for q in range(QUARTILES)) / QUARTILES
        return metrics


def mu_law_encode(audio: torch.Tensor, mu: float = 255.0) -> torch.Tensor:
    """The seed's continuous mu-law companding of ``[-1, 1]`` audio (not quantised)."""
    return torch.sign(audio) * torch.log1p(mu * audio.abs()) / math.log1p(mu)


def mu_law_decode(encoded: torch.Tensor, mu: float = 255.0) -> torch.Tensor:
    return torch.sign(encoded) * ((1.0 + mu) ** encoded.abs() - 1.0) / mu


@register_family("diffusion_waveform")
class DiffusionWaveformFamily(DiffusionFamily):
    """The seed's own model: a UNet on 16 kHz waveform segments (one channel), speaker-conditional
    (with label dropout for classifier-free guidance) or unconditional; no codes, so it generates
    (``generate.py``) rather than converts. Trained by ``train.py --config conf/diffusion_waveform.yaml``
    on the vocoders' aligned segments (``data.dataset: mel_audio_segments``, batch key ``audio``);
    ``diffusion.encoding: ulaw`` trains on the seed's continuous mu-law companding of the samples.
    """

    role = "component"
    domain = "waveform"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return [Step(4, "train")]

    def requires(self, config: Mapping[str, Any]) -> Dict[str, int]:
        return {}

    def unit_inventory(self) -> Optional[int]:
        return None

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        self.config = config
        self.schedule = _schedule_of(config, "")
        settings = config["diffusion"]
        self.label_dropout = float(settings["label_dropout"])
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"diffusion.label_dropout is {self.label_dropout}; a probability in [0, 1)")
        self.encoding = settings.get("encoding", "linear")
        if self.encoding not in ("linear", "ulaw"):
            raise ValueError(f"diffusion.encoding is {self.encoding!r}; linear or ulaw (the seed's mu-law companding)")
        self.inference = InferenceSettings.of(config)
        if self.inference.guidance == "classifier":
            raise ValueError("inference.guidance=classifier: the waveform model has no guidance classifier; "
                             "use inference.guidance=cfg or none")
        model = dict(config["model"])
        conditional = bool(model.pop("conditional", True))
        return {"model": UNet(in_channels=1, num_classes=num_speakers if conditional else 0, **model)}

    def _denoiser(self) -> torch.nn.Module:
        return unwrap(self.models["model"])

    def _no_codes(self, batch_size: int, frames: int, device: torch.device) -> Optional[torch.Tensor]:
        return None

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(B, S)`` in [-1, 1] -> the model's ``(B, 1, S)`` domain."""
        return (mu_law_encode(audio) if self.encoding == "ulaw" else audio).unsqueeze(1)

    def to_audio(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples ``(B, 1, S)`` -> audio ``(B, S)`` in [-1, 1]."""
        samples = samples[:, 0].clamp(-1.0, 1.0)
        return mu_law_decode(samples) if self.encoding == "ulaw" else samples

    def _eps_mse(self, batch: Mapping[str, Any], t: torch.Tensor, noise: torch.Tensor,
                 labels: Optional[torch.Tensor]) -> torch.Tensor:
        x0 = self.encode(batch["audio"])
        return F.mse_loss(self.models["model"](self.schedule.q_sample(x0, t, noise), t, labels), noise)

    def train_step(self, batch: Mapping[str, Any], step: int) -> Dict[str, float]:
        audio = batch["audio"]
        t = torch.rand(audio.shape[0], device=audio.device)
        labels = batch["speakers"].clone()
        num_classes = self._denoiser().num_classes
        labels[torch.rand(audio.shape[0], device=audio.device) < self.label_dropout] = num_classes
        loss = self._eps_mse(batch, t, torch.randn_like(audio).unsqueeze(1), labels if num_classes else None)
        metrics = {"loss": loss.item(), "eps_mse": loss.item()}
        grad_norm = self.optimizer_step(loss, "model")
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        return metrics

    @torch.no_grad()
    def valid_step(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        audio = batch["audio"]
        generator = torch.Generator().manual_seed(VALID_SEED)
        labels = batch["speakers"] if self._denoiser().num_classes else None
        metrics: Dict[str, float] = {}
        for quartile in range(QUARTILES):
            t = quartile_times(audio.shape[0], quartile, generator).to(audio.device)
            noise = torch.randn(audio.shape[0], 1, audio.shape[1], generator=generator).to(audio.device)
            metrics[f"eps_mse_q{quartile + 1}"] = self._eps_mse(batch, t, noise, labels).item()
        metrics["eps_mse"] = sum(metrics[f"eps_mse_q{q + 1}"] for q in range(QUARTILES)) / QUARTILES
        metrics["loss"] = metrics["eps_mse"]
        return metrics

    def encode_units(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        raise UnsupportedByFamily("the diffusion_waveform family has no codes")

    def convert(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        raise UnsupportedByFamily("the diffusion_waveform family generates (generate.py); it has no content input "
                                  "to convert: use conf/diffusion.yaml for the voice swap")
