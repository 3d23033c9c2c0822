"""One type for a trained experiment: its config, speakers, checkpoint, sub-experiments and requirements.

An experiment dir (``exp/<tag>``, ``exp/<tag>/content``, ``exp/vocoder_<name>_<corpus>``) holds
``config.yaml`` (the resolved config), ``spk2id`` and ``checkpoints/``. Every stage after training
(unit dumps, conversion, scoring, vocoders) loads models through :meth:`Experiment.load`, which picks
the checkpoint as the recipe does everywhere (``best.pt``, else the newest valid ``step_N.pt``),
loads it with ``weights_only=True`` and builds the family with EMA weights when the run kept them.

A family may declare sub-experiments it ``requires`` at conversion time (Soft-VC converting audio
needs its unit head ``exp/<tag>/content``; a diffusion model its guidance classifier); they are
loaded and checked with the model, and a missing one names the stage that trains it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import yaml
from torch import nn

from voiceswap.data.dataset import read_spk2id
from voiceswap.train.checkpoint import (
    BEST_NAME,
    CheckpointError,
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint_for_inference,
)
from voiceswap.train.config import RESOLVED_CONFIG_NAME, ConfigError, apply_overrides
from voiceswap.train.registry import Family, get_family

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
SPK2ID = "spk2id"


class ExperimentError(FileNotFoundError):
    """An experiment that is missing or incomplete; the message names the dir and the stage that makes it."""


@dataclass
class LoadedExperiment:
    """A trained family ready for inference (eval mode) and what it was loaded from."""

    experiment: "Experiment"
    family: Family
    models: Dict[str, nn.Module]
    config: Dict[str, Any]
    spk2id: Dict[str, int]
    checkpoint: Path
    step: int
    requirements: Dict[str, "LoadedExperiment"] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.experiment.path


class Experiment:
    """A (maybe not yet trained) experiment dir; ``made_by`` names the stage that trains it, for errors."""

    def __init__(self, path: PathLike, made_by: str = "its training stage") -> None:
        self.path = Path(path)
        self.made_by = made_by

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r})"

    def sub(self, name: str, made_by: Optional[str] = None) -> "Experiment":
        """The sub-experiment ``<dir>/<name>`` (a config section trained on its own, e.g. ``content``)."""
        return Experiment(self.path / name, made_by or self.made_by)

    def _missing(self, what: str) -> ExperimentError:
        return ExperimentError(f"{self.path}: {what}; run {self.made_by} first (it trains this experiment)")

    @property
    def config(self) -> Dict[str, Any]:
        """The resolved config train.py wrote beside the checkpoints."""
        path = self.path / RESOLVED_CONFIG_NAME
        if not path.is_file():
            raise self._missing(f"no {RESOLVED_CONFIG_NAME}")
        with open(path) as f:
            return yaml.safe_load(f)

    @property
    def spk2id(self) -> Dict[str, int]:
        path = self.path / SPK2ID
        if not path.is_file():
            raise self._missing(f"no {SPK2ID} (written by train.py next to the checkpoints)")
        return read_spk2id(path)

    def checkpoint(self, which: str = "best") -> Path:
        """``best``: the best validation checkpoint, else the newest; ``latest``: the newest. Resolved path.

        Only names the file; :meth:`load` reads it (and says so clearly when it is corrupt).
        """
        if which not in ("best", "latest"):
            raise ValueError(f"which checkpoint: best or latest, not {which!r}")
        best = checkpoint_dir(self.path) / BEST_NAME
        if which == "best" and best.is_file():  # a symlink to step_N.pt, or a copy where links fail
            return best.resolve()
        found = list_checkpoints(self.path)
        if not found:
            raise self._missing("no checkpoint in checkpoints/ (training did not finish a save)")
        return found[-1][1].resolve()

    def load(self, which: str = "best", checkpoint: Optional[PathLike] = None,
             with_requirements: bool = False, inference_overrides: Sequence[str] = ()) -> LoadedExperiment:
        """The trained models in eval mode (EMA weights when kept); ``checkpoint`` overrides ``which``.

        With ``with_requirements`` the sub-experiments the family :meth:`~Family.requires` are loaded too.
        ``inference_overrides`` (``inference.key=value``) change the config's ``inference:`` section (how a
        family converts: sampling steps, guidance, ...) before the family is built; nothing else may change.
        """
        path = Path(checkpoint) if checkpoint else self.checkpoint(which)
        state = load_checkpoint_for_inference(path, f"re-train with {self.made_by}, or pick another checkpoint")
        config = state["config"]
        if inference_overrides:
            outside = [o for o in inference_overrides if not o.startswith("inference.")]
            if outside:
                raise ConfigError(f"inference overrides change only the inference: section, not {outside}; "
                                  "a model setting needs a new experiment (--train-overrides)")
            config = apply_overrides(config, inference_overrides)
        spk2id = self.spk2id
        family = get_family(config["family"])()
        try:
            models = family.build(config, num_speakers=len(spk2id))
            for name, model in models.items():
                ema = (state.get("ema") or {}).get(name)
                model.load_state_dict(ema["shadow"] if ema else state["models"][name])
                model.eval()
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{path}: its weights do not fit the {config['family']} model its config describes "
                                  f"({str(error).splitlines()[0]}); re-train with {self.made_by}") from None
        family.models = models
        logger.info("loaded %s (step %d%s)", path, state["step"], ", EMA weights" if state.get("ema") else "")
        loaded = LoadedExperiment(self, family, models, config, spk2id, path.resolve(), int(state["step"]))
        if with_requirements:
            for name, stage in family.requires(config).items():
                loaded.requirements[name] = self.sub(name, f"stage {stage}").load(which)
        return loaded


def load_vocoder(config: Mapping[str, Any], feature_config: Mapping[str, Any],
                 vocoder_dir: Optional[PathLike] = None) -> nn.Module:
    """The vocoder a config describes, for log-mel ``feature_config`` (a feats config as a mapping).

    A vocoder whose plan trains (HiFi-GAN, stage 7) is loaded from the experiment ``vocoder_dir``,
    with the config it was trained with; one with nothing to train (Griffin-Lim) is built from
    ``config`` alone. The module maps ``(B, n_mels, T)`` natural-log mel to ``(B, T * hop)`` audio.
    """
    family = get_family(config.get("family"))()
    if family.role != "vocoder":
        raise ExperimentError(f"family {config.get('family')!r} is a {family.role}, not a vocoder")
    if not any(step.kind == "train" for step in family.plan(config)):
        return family.vocoder(config, feature_config)
    if not vocoder_dir:
        raise ExperimentError(f"the {config['family']} vocoder is trained in stage 7: give its dir (--vocoder-dir)")
    loaded = Experiment(vocoder_dir, "stage 7 (the vocoder)").load()
    if loaded.config.get("family") != config.get("family"):
        raise ExperimentError(f"{vocoder_dir} holds a {loaded.config.get('family')!r} model, not a "
                              f"{config['family']} vocoder: give the right --vocoder-dir")
    return loaded.family.vocoder(loaded.config, feature_config)
