"""The model-family registry and the ``Family`` interface the Trainer drives.

A family (vqvae, softvc, vaegan, diffusion, hifigan, ...) is a class registered under a name::

    @register_family("toy")
    class ToyFamily(Family):
        def build(self, config, num_speakers): return {"model": Net(...)}
        def train_step(self, batch, step):
            loss = ...
            self.optimizer_step(loss, "model")      # zero_grad, backward, clip, step
            return {"loss": loss.item()}
        def valid_step(self, batch): return {"loss": ...}

The Trainer owns the loop and knows nothing about any family. It calls :meth:`Family.bind` once,
which gives the family its (possibly DDP-wrapped) models, its optimisers and an
:class:`OptimizerStep` helper; a family with several optimisers (GAN: generator + discriminator)
calls ``self.optimizer_step(loss, name)`` once per optimiser, in the order it wants. The optimisers
and LR schedulers come from the config's ``optim`` section (:mod:`voiceswap.train.optim`), one entry
per name the family passes to ``optimizer_step``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type, TypeVar

import torch
from torch import nn

from voiceswap.train.optim import build_optimizers, build_schedulers
from voiceswap.train.plan import Step

Models = Dict[str, nn.Module]
Optimizers = Dict[str, torch.optim.Optimizer]
Schedulers = Dict[str, torch.optim.lr_scheduler.LRScheduler]


class OptimizerStep:
    """``zero_grad -> backward -> clip -> step`` for one named optimiser, with accumulation and AMP.

    Clipping (``train.grad_clip``, by global L2 norm) covers exactly the parameters that optimiser
    updates, so a generator's clipping never sees a discriminator's gradients.

    With ``accum_steps`` > 1 the Trainer sets :attr:`micro_step` before each micro-batch: gradients
    of ``loss / accum_steps`` add up over the micro-batches and the optimiser steps on the last one.
    With a ``GradScaler`` (fp16) the loss is scaled and the gradients unscaled before clipping. A
    step whose gradient norm is not finite is skipped (the optimiser does not step) and counted in
    :attr:`skipped_steps`; the GradScaler then lowers its scale.

    :attr:`stepped` collects the names of the optimisers that really updated (not skipped, not a
    non-final micro-batch); the Trainer takes it with :meth:`pop_stepped` after each optimisation
    step and steps only those optimisers' LR schedulers.
    """

    def __init__(self, optimizers: Optimizers, grad_clip: Optional[float], accum_steps: int = 1,
                 scaler: Optional["torch.amp.GradScaler"] = None) -> None:
        if accum_steps < 1:
            raise ValueError(f"train.grad_accum_steps must be >= 1, got {accum_steps}")
        self.optimizers = optimizers
        self.grad_clip = grad_clip
        self.accum_steps = accum_steps
        self.scaler = scaler
        self.micro_step = 0
        self.skipped_steps = 0
        self.stepped: set[str] = set()

    def pop_stepped(self) -> set[str]:
        """Names of the optimisers that updated since the last call (then forgets them)."""
        stepped, self.stepped = self.stepped, set()
        return stepped

    @property
    def is_update(self) -> bool:
        """Whether the current micro-batch is the last of its optimisation step."""
        return self.micro_step == self.accum_steps - 1

    def __call__(self, loss: torch.Tensor, optimizer: str, retain_graph: bool = False) -> Optional[float]:
        """Backward ``loss`` into ``optimizer``'s parameters and, on the last micro-batch, update them.

        Returns the gradient norm before clipping on an update, None on the other micro-batches.
        """
        if optimizer not in self.optimizers:
            raise LookupError(f"no optimiser named {optimizer!r}; the family made: {', '.join(self.optimizers)}")
        opt = self.optimizers[optimizer]
        if self.micro_step == 0:
            opt.zero_grad(set_to_none=True)
        scaled = loss / self.accum_steps if self.accum_steps > 1 else loss
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        # Backward outside autocast, as PyTorch recommends; its dtypes follow the forward pass.
        with torch.autocast(device_type=loss.device.type, enabled=False):
            scaled.backward(retain_graph=retain_graph)
        if not self.is_update:
            return None
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        else:  # still report the norm: it is the first thing to look at when a run diverges
            norm = (torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))
                    if params else torch.zeros(()))
        norm = float(norm)
        if not math.isfinite(norm):
            self.skipped_steps += 1
            if self.scaler is not None:
                self.scaler.step(opt)  # sees the inf and skips; update() then lowers the scale
            opt.zero_grad(set_to_none=True)
            return norm
        if self.scaler is not None:
            self.scaler.step(opt)
        else:
            opt.step()
        self.stepped.add(optimizer)
        return norm


class Family(abc.ABC):
    """What a model family implements so the generic Trainer can train it.

    Attributes set by :meth:`bind` (before the first step): ``models``, ``optims`` and
    ``optimizer_step``. ``ema_targets`` names the models that get EMA weights when
    ``train.ema_decay`` is set (None: all of them; a GAN family lists only its generator).
    """

    ema_targets: Optional[Sequence[str]] = None

    #: What the recipe does with the family: ``conversion`` (``run.sh --model``), ``vocoder``
    #: (``--vocoder``) or ``component`` (trained inside another family's plan, or the metric suite's judge).
    role: str = "component"

    #: The config (``conf/<name>.yaml``) that stands for a conversion family in ``run.sh --model all``.
    default_config: Optional[str] = None

    models: Models
    optims: Optimizers
    optimizer_step: OptimizerStep

    @abc.abstractmethod
    def build(self, config: Mapping[str, Any], num_speakers: int) -> Models:
        """Create the family's models, by name (a single-model family returns ``{"model": net}``)."""

    def optimizers(self, models: Models, config: Mapping[str, Any]) -> Optimizers:
        """One optimiser per independently updated part, by name: built from ``config["optim"]``."""
        return build_optimizers(models, config.get("optim"))

    def schedulers(self, optimizers: Optimizers, config: Mapping[str, Any]) -> Schedulers:
        """LR schedulers by optimiser name, from ``config["optim"]``; each steps after every training
        step in which its optimiser updated."""
        return build_schedulers(optimizers, config.get("optim"))

    def bind(self, models: Models, optimizers: Optimizers, optimizer_step: OptimizerStep) -> None:
        """Called by the Trainer: the models (maybe DDP-wrapped) and optimisers train_step must use."""
        self.models = models
        self.optims = optimizers
        self.optimizer_step = optimizer_step

    @abc.abstractmethod
    def train_step(self, batch: Any, step: int) -> Dict[str, float]:
        """One training step on ``batch``; ``step`` counts the steps already taken (0 first).

        Does its own forward pass and calls ``self.optimizer_step(loss, name)`` per optimiser.
        Returns scalar metrics to log (``loss`` and its parts).
        """

    @abc.abstractmethod
    def valid_step(self, batch: Any) -> Dict[str, float]:
        """Scalar metrics on one validation batch (run under ``torch.no_grad()`` in eval mode)."""

    # Inference, used by the recipe's unit-dump and conversion stages on trained models
    # (``voiceswap.train.experiment.Experiment.load`` sets ``self.models``). A family overrides what it
    # supports; the defaults say clearly that it does not.

    def convert(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        """One source utterance's input features ``(T, D_in)`` -> output features ``(T', D_out)``
        (normalised log-mel) in the voice of speaker id ``target_speaker`` (or, for an any-to-any model,
        the speaker vector of :meth:`speaker_vector`).

        A family whose config has ``data.cond_feats`` (Soft-VC's pitch) is also given
        ``conditions={stream name: (T_c, D_c) array}``, made for this source and target by
        voiceswap.conversion.ConversionConditions; the others are called without it.
        """
        raise UnsupportedByFamily(f"the {type(self).__name__} family does not convert voices")

    def speaker_vector(self, references: Sequence[torch.Tensor]) -> torch.Tensor:
        """Any-to-any conversion (``model.speaker_conditioning: reference``): the vector :meth:`convert` takes
        as ``target_speaker`` for a voice given by reference utterances (their ``data.reference_feats``
        features, each ``(T, D)``). A family with a speaker table only converts to its ids."""
        raise UnsupportedByFamily(f"the {type(self).__name__} family converts only to the speakers of its table, "
                                  "not to a voice given by reference recordings")

    def encode_units(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """One utterance's input features ``(T, D_in)`` -> its units, e.g. ``{"indices": (T_u,)
        long, "vectors": (T_u, D_u)}``."""
        raise UnsupportedByFamily(f"the {type(self).__name__} family has no units to dump")

    def unit_inventory(self) -> Optional[int]:
        """How many distinct ``indices`` :meth:`encode_units` can give (a codebook's size), None if unknown."""
        return None

    # The recipe contract (run.sh stages 4-8 ask the family, never the other way round).

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        """The steps of stages 4-7 this family needs, in order. Default: train the whole config in stage 4."""
        return [Step(4, "train")]

    def requires(self, config: Mapping[str, Any]) -> Dict[str, int]:
        """Sub-experiments (``exp/<tag>/<name>``) that conversion from audio needs, by name -> the stage
        that trains them (Soft-VC: its unit head ``content``, stage 4). Default: none."""
        return {}

    def prepare_input(self, streams: Mapping[str, Any], requirements: Mapping[str, Any],
                      config: Mapping[str, Any]) -> torch.Tensor:
        """Conversion from audio: the model's input from one utterance's feature streams.

        ``streams`` maps the feature names of stages 2-3 (normalised ``mfcc39``, ``logmel80``; before
        normalisation ``raw/mfcc39``, ...) to ``(T, D)`` float32 arrays, and ``audio`` to the mono
        samples; ``requirements`` holds the loaded :meth:`requires` experiments
        (voiceswap.train.experiment.LoadedExperiment). The default reads ``data.input_feats``
        directly, which is right for any family whose input is a feature of stages 2-3.
        """
        name = config["data"]["input_feats"]
        if name not in streams:
            raise UnsupportedByFamily(f"the {type(self).__name__} family reads stream {name!r}, which is not a "
                                      f"feature of stages 2-3 ({', '.join(sorted(streams))}); it needs its own "
                                      "prepare_input to convert audio")
        return torch.as_tensor(streams[name])

    def vocoder(self, config: Mapping[str, Any], feature_config: Mapping[str, Any]) -> nn.Module:
        """A vocoder family: a module ``(B, n_mels, T)`` natural-log mel -> ``(B, T * hop)`` audio for the
        features ``feature_config`` (trained models are loaded first, see voiceswap.train.experiment)."""
        raise UnsupportedByFamily(f"the {type(self).__name__} family is not a vocoder")


class SingleLossFamily(Family):
    """A family with one model (``"model"``) and one optimiser, whose step is one loss.

    It implements :meth:`losses`; training backpropagates the loss through ``optimizer_step``
    (logging the gradient norm on updates), validation reports the same metrics.
    """

    @abc.abstractmethod
    def losses(self, batch: Any) -> "tuple[torch.Tensor, Dict[str, float]]":
        """``(loss to minimise, scalar metrics)`` of one batch."""

    def train_step(self, batch: Any, step: int) -> Dict[str, float]:
        loss, metrics = self.losses(batch)
        grad_norm = self.optimizer_step(loss, "model")
        if grad_norm is not None:  # micro-batches of an accumulated step do not update
            metrics["grad_norm"] = grad_norm
        return metrics

    @torch.no_grad()
    def valid_step(self, batch: Any) -> Dict[str, float]:
        return self.losses(batch)[1]


class UnsupportedByFamily(RuntimeError):
    """An inference operation that a family does not offer (e.g. unit dumps of a vocoder)."""


class UnknownFamilyError(LookupError):
    """``get_family`` was given a name nothing registered."""


F = TypeVar("F", bound=Type[Family])
_FAMILIES: Dict[str, Type[Family]] = {}


def register_family(name: str) -> Callable[[F], F]:
    """Class decorator: make a :class:`Family` available as ``get_family(name)``."""

    def decorator(cls: F) -> F:
        if not (isinstance(cls, type) and issubclass(cls, Family)):
            raise TypeError(f"register_family({name!r}): {cls!r} is not a subclass of voiceswap.train.registry.Family")
        existing = _FAMILIES.get(name)
        # Re-registering the same class (a re-imported module) is fine; two classes under one name is not.
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"family name {name!r} is taken by {existing.__module__}.{existing.__qualname__}; "
                f"pick another name for {cls.__module__}.{cls.__qualname__}"
            )
        _FAMILIES[name] = cls
        return cls

    return decorator


def registered_families(role: Optional[str] = None) -> List[str]:
    """Names of all registered families (of ``role``, if given), sorted."""
    return sorted(name for name, cls in _FAMILIES.items() if role is None or cls.role == role)


def get_family(name: str) -> Type[Family]:
    """The family class registered as ``name``; the error lists the registered names."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; registered families: {', '.join(registered_families()) or '(none)'} "
            "(is the module that registers it imported?)"
        ) from None
