"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one experiment.

Seed 001 averages checkpoints as well as keeping Polyak (EMA) weights; ESPnet averages the best N.
Every floating-point tensor of ``models`` is averaged over the checkpoints (in float64, then cast
back), and so are the EMA averages when every checkpoint has them (inference loads the EMA weights
when a checkpoint holds any, so they must be averaged too, not dropped or taken from one file).
Integer tensors (counters, code usage) are taken from the newest checkpoint, as is the config.

The result is an inference checkpoint: ``models``, ``ema``, ``config`` and ``step`` (the newest),
plus ``averaged_steps``; it has no optimiser or RNG state, so it is not a point to resume training
from, and its name (``avg_<first>-<last>.pt``) is not a ``step_<N>.pt`` that ``--resume`` would pick.
Load it with ``convert.py --checkpoint`` or ``Experiment.load(checkpoint=...)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

import torch

from voiceswap.train.checkpoint import CheckpointError, checkpoint_dir, list_checkpoints, load_checkpoint_for_inference

PathLike = Union[str, "os.PathLike[str]"]


class AveragingError(ValueError):
    """Checkpoints that cannot be averaged; the one-line message says which and why."""


def _average_state(states: Sequence[Mapping[str, torch.Tensor]], where: str) -> Dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors with the same keys and shapes; others from the last state."""
    keys = list(states[-1])
    for index, state in enumerate(states):
        if set(state) != set(keys):
            different = sorted(set(state) ^ set(keys))[:3]
            raise AveragingError(f"{where}: checkpoint {index + 1} has other tensors than the newest ({different}): "
                                 "average checkpoints of one model only")
    averaged: Dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [state[key] for state in states]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise AveragingError(f"{where}.{key}: the checkpoints hold shapes {sorted(shapes)}: "
                                 "they are different models")
        last = tensors[-1]
        if last.is_floating_point():
            averaged[key] = (torch.stack([t.double() for t in tensors]).mean(dim=0)).to(last.dtype)
        else:  # counters and indices cannot be averaged: the newest is the truth
            averaged[key] = last.clone()
    return averaged


def average_states(states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The averaged inference checkpoint of loaded Trainer checkpoints ``states`` (oldest first)."""
    if not states:
        raise AveragingError("no checkpoints to average")
    newest = states[-1]
    families = {str((state.get("config") or {}).get("family")) for state in states}
    if len(families) > 1:
        raise AveragingError(f"the checkpoints are of different families ({', '.join(sorted(families))})")
    names = set(newest["models"])
    for state in states:
        if set(state["models"]) != names:
            raise AveragingError(f"the checkpoints hold models {sorted(state['models'])} and {sorted(names)}")
    models = {name: _average_state([state["models"][name] for state in states], f"models.{name}")
              for name in newest["models"]}
    ema: Dict[str, Any] = {}
    ema_names = [frozenset(state.get("ema") or {}) for state in states]
    if len(set(ema_names)) > 1:
        raise AveragingError("some checkpoints have EMA weights and some do not (train.ema_decay changed?): "
                             "average checkpoints of one run")
    for name in newest.get("ema") or {}:
        shadow = _average_state([state["ema"][name]["shadow"] for state in states], f"ema.{name}")
        ema[name] = {**newest["ema"][name], "shadow": shadow}
    return {"models": models, "ema": ema, "config": newest["config"], "step": int(newest["step"]),
            "averaged_steps": [int(state["step"]) for state in states]}


def last_checkpoints(exp_dir: PathLike, last: int) -> List[Path]:
    """The newest ``last`` ``step_<N>.pt`` of ``<exp_dir>/checkpoints``, oldest first."""
    if last < 1:
        raise AveragingError(f"--last must be >= 1, got {last}")
    found = [path for _, path in list_checkpoints(exp_dir)]
    if len(found) < last:
        raise AveragingError(f"{checkpoint_dir(exp_dir)} has {len(found)} step checkpoint(s), fewer than the {last} to "
                             "average: lower --last or keep more (train.keep_last)")
    return found[-last:]


def average_checkpoints(paths: Sequence[PathLike]) -> Dict[str, Any]:
    """The average of the checkpoints ``paths`` (oldest first), as :func:`average_states` makes it."""
    states = []
    for path in paths:
        try:
            states.append(load_checkpoint_for_inference(path, "leave it out of the average"))
        except CheckpointError as error:
            raise AveragingError(str(error)) from None
    return average_states(states)


def save_averaged(averaged: Mapping[str, Any], out: PathLike) -> Path:
    """Write an averaged checkpoint to ``out`` atomically (temp file + rename); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        torch.save(dict(averaged), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def averaged_name(steps: Sequence[int]) -> str:
    """``avg_<first>-<last>.pt``: never matched by the ``step_<N>.pt`` pattern that resuming looks for."""
    return f"avg_{steps[0]}-{steps[-1]}.pt"
