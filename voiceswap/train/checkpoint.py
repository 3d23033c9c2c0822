"""Checkpoints: atomic writes, pruning to the last K, the best one, and finding the newest valid one.

Layout: ``<outdir>/checkpoints/step_<N>.pt`` and ``<outdir>/checkpoints/best.pt`` (a relative
symlink to the best ``step_<N>.pt``, or a copy where symlinks are not available).

Everything in a checkpoint must load with ``torch.load(..., weights_only=True)``: tensors, dicts,
lists, tuples, numbers, strings and None. That is why RNG states are stored as tensors and lists
(:func:`capture_rng_state`) and the config as a plain dict.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(outdir: str | os.PathLike) -> Path:
    """``<outdir>/checkpoints``."""
    return Path(outdir) / CHECKPOINT_DIR


def checkpoint_path(outdir: str | os.PathLike, step: int) -> Path:
    """``<outdir>/checkpoints/step_<step>.pt``."""
    return checkpoint_dir(outdir) / f"step_{step}.pt"


def list_checkpoints(outdir: str | os.PathLike) -> List[Tuple[int, Path]]:
    """``(step, path)`` of every ``step_<N>.pt``, oldest first (temp files are not listed)."""
    directory = checkpoint_dir(outdir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _STEP_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def best_checkpoint_target(outdir: str | os.PathLike) -> Optional[Path]:
    """The ``step_<N>.pt`` that ``best.pt`` links to, or None (no best yet, or best.pt is a copy)."""
    best = checkpoint_dir(outdir) / BEST_NAME
    if best.is_symlink():
        return best.parent / os.readlink(best)
    return None


def save_checkpoint(outdir: str | os.PathLike, step: int, state: Dict[str, Any], keep_last: Optional[int]) -> Path:
    """Write ``state`` to ``<outdir>/checkpoints/step_<step>.pt`` atomically, then prune.

    The state goes to a temp file in the same directory, is flushed to disk and renamed over the
    final name, so a crash (or SIGKILL) mid-save never leaves a partial ``step_<N>.pt``. Afterwards
    only the newest ``keep_last`` step checkpoints are kept (``None`` or ``0``: keep all), never
    counting or deleting the one ``best.pt`` points to.
    """
    directory = checkpoint_dir(outdir)
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(outdir, step)
    tmp = directory / f".{final.name}.tmp{os.getpid()}"
    # Temp files of an earlier process that was killed mid-save are garbage: remove them.
    for stale in directory.glob(".step_*.pt.tmp*"):
        if stale != tmp:
            stale.unlink(missing_ok=True)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if keep_last:
        prune_checkpoints(outdir, keep_last)
    return final


def prune_checkpoints(outdir: str | os.PathLike, keep_last: int) -> List[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints, sparing best.pt's target."""
    protected = best_checkpoint_target(outdir)
    candidates = [path for _, path in list_checkpoints(outdir) if path != protected]
    removed = candidates[:-keep_last] if keep_last > 0 else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def mark_best(outdir: str | os.PathLike, step: int) -> Path:
    """Point ``best.pt`` at ``step_<step>.pt`` (atomically; a copy if symlinks fail)."""
    target = checkpoint_path(outdir, step)
    if not target.is_file():
        raise FileNotFoundError(f"cannot mark {target} as best: it does not exist; save the checkpoint first")
    best = target.parent / BEST_NAME
    tmp = target.parent / f".{BEST_NAME}.tmp{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target.name, tmp)
    except OSError:  # e.g. file systems without symlinks: fall back to a real copy
        shutil.copyfile(target, tmp)
    os.replace(tmp, best)
    return best


def load_checkpoint(path: str | os.PathLike) -> Dict[str, Any]:
    """Load a checkpoint on CPU with ``weights_only=True`` (no arbitrary code from pickles)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path} is not a voiceswap checkpoint (no 'step' entry)")
    return state


def find_latest_valid_checkpoint(outdir: str | os.PathLike) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest checkpoint that loads, as ``(path, state)``; None if there is none.

    A truncated or corrupt checkpoint is skipped with a warning naming it, and the previous one is
    tried, so a crash during a save (or a full disk) costs at most one save interval.
    """
    for step, path in reversed(list_checkpoints(outdir)):
        try:
            return path, load_checkpoint(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file means "try the previous one"
            logger.warning("skipping unreadable checkpoint %s (%s: %s); trying the previous one",
                           path, type(error).__name__, error)
    return None


def capture_rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states, as weights_only-loadable values."""
    version, internal, gauss_next = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            logger.warning("checkpoint has CUDA RNG states for %d devices, this machine has %d: not restored",
                           len(state["cuda"]), torch.cuda.device_count())
