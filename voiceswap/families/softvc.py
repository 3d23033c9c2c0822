"""The Soft-VC families (seed 002): ``softvc_units`` (stage 4) and ``softvc`` (stage 6).

``softvc_units`` trains :class:`~voiceswap.nets.softvc.SoftUnitHead`: content features in, the
soft units it predicts are scored against discrete k-means labels with cross-entropy. Batch keys:

* ``input`` ``(B, T, D_in)`` float: content features (normalised), ``mask`` ``(B, T)`` True on real frames;
* ``units`` ``(B, T_u)`` long: the discrete label of every unit frame (or, when the labels come as
  a feature stream, ``target`` ``(B, T_u, 1)`` float ids); optional ``units_mask`` ``(B, T_u)``.
  ``T_u = ceil(T / model.downsample)``; a difference of up to ``downsample`` frames (rounding of
  the label extractor) is cropped away.

``encode_units(features (T, D_in))`` -> ``{"indices": (T_u,) long, "vectors": (T_u, unit_dim)}``:
the argmax unit and the soft unit, what stage 5 dumps.

``softvc`` trains :class:`~voiceswap.nets.softvc.AcousticModel`. Batch keys:

* ``input``: units ``(B, T_u, 1)`` float ids (``model.discrete: true``, ``model.in_dim: 1``), soft
  units ``(B, T_u, unit_dim)``, or with ``data.input_feats: content`` the content features themselves
  ``(B, T_u, D)`` (Whisper-PPG: conf/softvc_whisper_ppg.yaml);
* ``target``: normalised log-mel ``(B, T, n_mels)``, ``T`` about ``2 * T_u`` (``model.upsample: true``,
  units at 50 Hz) or ``T_u`` (``upsample: false``, units at the mel rate);
* ``speakers`` ``(B,)`` long; masks: ``input_mask (B, T_u)`` and ``target_mask (B, T)`` if the batch
  has them, else ``mask`` is used for whichever stream it matches in length (the collate's mask
  when both streams have one frame rate); a target mask missing is derived from the unit mask.

* ``cond_pitch`` ``(B, T, 3)`` (only with ``model.pitch_bins`` > 0 and ``data.cond_feats: [pitch]``):
  the pitch stream of voiceswap/features/pitch.py at the mel rate (log-F0, voicing, log-F0 relative
  to the speaker's mean), made by the plan's ``pitch`` step in stage 4; its voicing and relative
  columns are quantised into the model's pitch bins.

Loss: L1 over real frames and all bins (the seed averaged over padding too: a quirk not kept).
``convert(units (T_u, D), speaker, conditions)`` runs the decoder free, from a zero frame, for
``2 * T_u`` frames; a pitch-conditioned model needs ``conditions["pitch"]``, the source's pitch
stream already moved to the target speaker's range (voiceswap.features.pitch.converted_stream),
and then gives exactly its number of frames.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from voiceswap.features.pitch import COLUMNS as PITCH_COLUMNS, LOG_F0_REL, VOICED
from voiceswap.nets.softvc import AcousticModel, SoftUnitHead, lengths_to_mask
from voiceswap.train.jobs import PlanError
from voiceswap.train.plan import Step
from voiceswap.train.registry import Family, SingleLossFamily, UnsupportedByFamily, register_family
from voiceswap.train.speakers import Target, batch_speakers, model_speaker_vector, target_batch


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean absolute error over real frames and all bins; ``(B, T, D)`` tensors, ``mask (B, T)`` (None: all real)."""
    if mask is None:
        return F.l1_loss(prediction, target)
    weights = mask.unsqueeze(-1).to(prediction.dtype)
    return ((prediction - target).abs() * weights).sum() / (weights.sum() * prediction.shape[-1]).clamp(min=1.0)


def _grad_norm(metrics: Dict[str, float], name: str, norm: Optional[float]) -> None:
    # With gradient accumulation, micro-batches that do not update return no norm.
    if norm is not None:
        metrics[name] = norm


#: The conditioning stream a pitch-conditioned Soft-VC model reads (``data.cond_feats``).
PITCH = "pitch"


def _uses_pitch(config: Mapping[str, Any]) -> bool:
    """Whether ``data.cond_feats`` asks for the pitch stream (the only conditioning stream Soft-VC reads)."""
    names = list((config.get("data") or {}).get("cond_feats") or [])
    unknown = [name for name in names if name != PITCH]
    if unknown:  # a PlanError (a ValueError) so that plan.py reports it in one line
        raise PlanError(f"data.cond_feats names {unknown}: Soft-VC is conditioned only on the {PITCH!r} stream")
    return PITCH in names


#: The stream of content features (stage 4); an acoustic model with ``data.input_feats: content`` reads
#: them directly, with no k-means, unit head or soft units (Whisper-PPG -> acoustic model, as so-vits-svc).
CONTENT = "content"


def _reads_content_directly(config: Mapping[str, Any]) -> bool:
    return (config.get("data") or {}).get("input_feats") == CONTENT


@register_family("softvc_units")
class SoftUnitsFamily(SingleLossFamily):
    """Soft-unit head trained by cross-entropy against discrete units; AdamW (the seed: lr 2e-5 on all of HuBERT)."""

    def unit_inventory(self) -> Optional[int]:
        return int(self.models["model"].num_units)

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        return {"model": SoftUnitHead(**config["model"])}

    def _labels(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Unit labels ``(B, T_u)`` long and their mask (None: all real) from ``units`` or a ``target`` stream."""
        if "units" in batch:
            labels = batch["units"]
        elif "target" in batch:
            labels = batch["target"]
        else:
            raise KeyError("softvc_units needs discrete unit labels: batch key 'units' (B, T_u) long "
                           "or a 'target' stream (B, T_u, 1) of ids")
        if labels.dim() == 3:
            labels = labels.squeeze(-1)
        labels = labels.round().long() if labels.is_floating_point() else labels.long()
        mask = batch.get("units_mask")
        if mask is None and batch.get("mask") is not None and batch["mask"].shape[1] == labels.shape[1] \
                and self.models["model"].downsample == 1:
            mask = batch["mask"]
        return labels, mask

    def losses(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        head = self.models["model"]
        features, frame_mask = batch["input"], batch.get("mask")
        soft_units = head(features, frame_mask)
        logits = head.logits(soft_units)
        labels, label_mask = self._labels(batch)
        if label_mask is None and frame_mask is not None:
            label_mask = head.unit_mask(frame_mask)
        frames = min(logits.shape[1], labels.shape[1])
        if abs(logits.shape[1] - labels.shape[1]) > head.downsample:
            raise ValueError(f"{labels.shape[1]} unit labels for {logits.shape[1]} predicted units "
                             f"(features: {features.shape[1]} frames, model.downsample={head.downsample}): "
                             "the labels are at another frame rate; set model.downsample to the ratio")
        logits, labels = logits[:, :frames], labels[:, :frames]
        mask = label_mask[:, :frames] if label_mask is not None else torch.ones_like(labels, dtype=torch.bool)
        if labels[mask].numel() and (labels[mask].min() < 0 or labels[mask].max() >= head.num_units):
            raise ValueError(f"unit labels must be in [0, {head.num_units}) (model.num_units); "
                             f"got [{int(labels[mask].min())}, {int(labels[mask].max())}]")
        loss = F.cross_entropy(logits[mask].float(), labels[mask])
        accuracy = (logits[mask].argmax(-1) == labels[mask]).float().mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}


    @torch.no_grad()
    def encode_units(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(T, D_in)`` -> ``indices (T_u,)`` (the most likely discrete unit) and ``vectors (T_u, unit_dim)``
        (the soft units)."""
        head = self.models["model"]
        soft_units = head(features.unsqueeze(0))
        return {"indices": head.logits(soft_units)[0].argmax(-1), "vectors": soft_units[0]}


@register_family("softvc")
class SoftVCFamily(Family):
    """Units + target speaker -> normalised log-mel; teacher-forced masked L1; AdamW (4e-4, (0.8, 0.99), 1e-5)
    as the seed.

    Plan: stage 4 makes content features of every set, k-means units on them and trains the
    soft-unit head (section ``content``, into ``exp/<tag>/content``); stage 5 dumps the head's soft
    units; stage 6 trains the acoustic model on the units the config's ``data.input_feats`` names.
    With ``data.input_feats: content`` the acoustic model reads the content features directly and
    the plan has no k-means, head or unit dump.
    With ``data.cond_feats: [pitch]`` (and ``model.pitch_bins`` > 0), stage 4 also makes the pitch
    stream of every set (the ``pitch:`` section; voiceswap/features/pitch.py).
    """

    role = "conversion"
    default_config = "softvc_whisper_ppg"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        pitch = [Step(4, "pitch", "pitch", writes=(PITCH,))] if _uses_pitch(config) else []
        features = [Step(4, "content_features", "content", writes=("content",))]
        if _reads_content_directly(config):
            return pitch + features + [Step(6, "train")]
        return pitch + features + [Step(4, "kmeans", "content", reads=("content",), writes=("kmeans",)),
                                   Step(4, "train", "content"),
                                   Step(5, "dump_units", "content", reads=("content",),
                                        writes=("soft_units", "unit_indices")),
                                   Step(6, "train")]

    def requires(self, config: Mapping[str, Any]) -> Dict[str, int]:
        return {} if _reads_content_directly(config) else {"content": 4}

    def prepare_input(self, streams, requirements, config):
        """Audio's content features -> the soft units (or k-means ids) this model reads, as stages 4-5 make them."""
        from voiceswap.features.content import ContentExtractor

        if getattr(self, "_content", None) is None:
            self._content = ContentExtractor(config["content"]["features"])
        content = torch.from_numpy(self._content(streams))
        if _reads_content_directly(config):
            return content
        input_feats = config["data"]["input_feats"]
        head = requirements["content"]
        if input_feats == "soft_units":
            return head.family.encode_units(content)["vectors"]
        if input_feats == "kmeans":
            from voiceswap.features.kmeans import assign
            import numpy as np

            with np.load(head.path / "kmeans" / "model.npz") as saved:
                return torch.from_numpy(assign(content.numpy(), saved["centroids"]).astype(np.float32))[:, None]
        raise UnsupportedByFamily(f"softvc converting audio: data.input_feats {input_feats!r} is none of soft_units, "
                                  f"kmeans, {CONTENT}")

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        self.valid_free_running = bool(config.get("valid", {}).get("free_running", True))
        uses_pitch, pitch_bins = _uses_pitch(config), int(config["model"].get("pitch_bins") or 0)
        if uses_pitch != (pitch_bins > 0):
            raise ValueError(f"model.pitch_bins is {pitch_bins} but data.cond_feats is "
                             f"{config['data'].get('cond_feats')!r}: a pitch-conditioned Soft-VC model needs both "
                             "data.cond_feats: [pitch] and model.pitch_bins > 0 (e.g. 64); neither turns pitch off")
        return {"model": AcousticModel(num_speakers=num_speakers, **config["model"])}

    def _inputs(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        """Units, target, speakers, the unit mask and the per-utterance target lengths, checked for frame rates."""
        model = self.models["model"]
        factor = getattr(model, "module", model).encoder.factor
        units, target = batch["input"], batch["target"]
        unit_frames, target_frames = units.shape[1], target.shape[1]
        if abs(factor * unit_frames - target_frames) > factor:
            hint = ("set model.upsample=false for units at the mel frame rate" if factor > 1
                    else "set model.upsample=true for units at half the mel frame rate")
            raise ValueError(f"{unit_frames} unit frames for {target_frames} mel frames do not match the model's "
                             f"x{factor} upsampling: {hint}")
        unit_mask, target_mask = batch.get("input_mask"), batch.get("target_mask")
        mask = batch.get("mask")
        if mask is not None:
            if unit_mask is None and mask.shape[1] == unit_frames:
                unit_mask = mask
            if target_mask is None and mask.shape[1] == target_frames:
                target_mask = mask
        if target_mask is None and unit_mask is not None:
            target_mask = lengths_to_mask((unit_mask.sum(1) * factor).clamp(max=target_frames), target_frames)
        frame_lengths = target_mask.sum(1) if target_mask is not None else None
        pitch = self._pitch_bins(batch[f"cond_{PITCH}"]) if f"cond_{PITCH}" in batch else None
        return {"units": units, "target": target, "speakers": batch_speakers(batch), "unit_mask": unit_mask,
                "target_mask": target_mask, "frame_lengths": frame_lengths, "pitch": pitch}

    def _pitch_bins(self, stream: torch.Tensor) -> torch.Tensor:
        """Pitch stream ``(B, T, 3)`` (or ``(T, 3)``) -> the model's bins ``(B, T)`` (``(T,)``); padding is unvoiced."""
        if stream.shape[-1] != len(PITCH_COLUMNS):
            raise ValueError(f"the pitch stream has {stream.shape[-1]} columns, not {len(PITCH_COLUMNS)} "
                             f"({', '.join(PITCH_COLUMNS)}): re-run the pitch step of stage 4")
        model = self.models["model"]
        model = getattr(model, "module", model)
        return model.pitch_bin(stream[..., LOG_F0_REL], stream[..., VOICED] > 0.5)

    def _teacher_forced(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        prediction = self.models["model"](inputs["units"], inputs["target"], inputs["speakers"],
                                          inputs["unit_mask"], inputs["frame_lengths"], inputs["pitch"])
        return masked_l1(prediction, inputs["target"], inputs["target_mask"])

    def train_step(self, batch, step):
        loss = self._teacher_forced(self._inputs(batch))
        metrics = {"loss": loss.item()}
        _grad_norm(metrics, "grad_norm", self.optimizer_step(loss, "model"))
        return metrics

    @torch.no_grad()
    def valid_step(self, batch):
        inputs = self._inputs(batch)
        metrics = {"loss": self._teacher_forced(inputs).item()}
        if self.valid_free_running:  # what conversion does: the decoder fed its own frames
            model = self.models["model"]
            model = getattr(model, "module", model)
            generated = model.generate(inputs["units"], inputs["speakers"], inputs["unit_mask"],
                                       inputs["frame_lengths"], num_frames=inputs["target"].shape[1],
                                       pitch=inputs["pitch"])
            metrics["l1_free_running"] = masked_l1(generated, inputs["target"], inputs["target_mask"]).item()
        return metrics

    def speaker_vector(self, references: Sequence[torch.Tensor]) -> torch.Tensor:
        return model_speaker_vector(self.models["model"], references)

    @torch.no_grad()
    def convert(self, features: torch.Tensor, target_speaker: Target,
                conditions: Optional[Mapping[str, Any]] = None) -> torch.Tensor:
        """Units ``(T_u, D)`` (or ids ``(T_u,)``) -> normalised log-mel ``(2 * T_u, n_mels)`` (``T_u`` frames
        without upsampling) in the voice of speaker ``target_speaker``, free-running.

        A pitch-conditioned model reads ``conditions["pitch"]``: the source's pitch stream ``(T, 3)`` moved
        to the target's range (voiceswap.features.pitch.converted_stream); the output then has ``T`` frames.
        """
        model = self.models["model"]
        model = getattr(model, "module", model)
        device = next(model.parameters()).device
        units = features.to(device).unsqueeze(0)
        speakers = target_batch(target_speaker, device)
        if not model.pitch_bins:
            return model.generate(units, speakers)[0]
        stream = (conditions or {}).get(PITCH)
        if stream is None:
            raise ValueError("this Soft-VC model is conditioned on pitch: convert it with the source's pitch stream "
                             "(conditions['pitch'], see voiceswap.conversion.ConversionConditions)")
        pitch = self._pitch_bins(torch.as_tensor(stream, dtype=torch.float32, device=device)).unsqueeze(0)
        return model.generate(units, speakers, num_frames=pitch.shape[1], pitch=pitch)[0]
