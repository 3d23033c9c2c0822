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
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")

#: What every checkpoint the Trainer writes holds (see ``Trainer.state_dict``).
CHECKPOINT_KEYS = ("models", "config", "step")
#: What to do about a checkpoint that cannot be used, unless the caller knows better.
DEFAULT_ADVICE = "re-train with the stage that makes it, or pick another checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used for inference; the one-line message names the file and what to do."""


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


def load_checkpoint_for_inference(path: str | os.PathLike, advice: Optional[str] = None) -> Dict[str, Any]:
    """Load one of our checkpoints on CPU (``weights_only=True``) for unit dumps, conversion, scoring.

    A missing, empty, truncated, corrupt or foreign file (one that is not a Trainer checkpoint with
    ``models``, ``config`` and ``step``) raises :class:`CheckpointError` with one line naming the
    path, what is wrong and what to do (``advice``, default: re-train or pick another checkpoint),
    instead of PyTorch's unpickling traceback, which even suggests the unsafe ``weights_only=False``.
    """
    path = Path(path)
    advice = advice or DEFAULT_ADVICE

    def fail(reason: str) -> CheckpointError:
        return CheckpointError(f"cannot load checkpoint {path}: it {reason}; {advice}")

    if not path.exists():
        if path.is_symlink():
            raise fail(f"links to {os.readlink(path)}, which does not exist")
        raise fail("does not exist")
    if path.is_dir():
        raise fail("is a directory, not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        raise fail(f"cannot be read ({error.strerror or error})") from None
    if not magic:
        raise fail("is empty (0 bytes)")
    written_by_torch = magic == b"PK\x03\x04"  # torch.save writes a zip archive
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if written_by_torch:
            raise fail("holds Python objects other than tensors and plain containers, so it is not one of our "
                       "checkpoints (not unpickled, for safety)") from None
        raise fail("is not a PyTorch checkpoint (corrupt, or another kind of file)") from None
    except Exception as error:  # noqa: BLE001 - zip, EOF and unpickler errors all mean "unreadable"
        if written_by_torch:
            raise fail(f"is truncated or corrupt ({type(error).__name__})") from None
        raise fail("is not a PyTorch checkpoint (corrupt, or another kind of file)") from None
    if not isinstance(state, dict):
        raise fail(f"holds a {type(state).__name__}, not a voiceswap checkpoint (a dict with "
                   f"{', '.join(CHECKPOINT_KEYS)})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        found = ", ".join(sorted(str(key) for key in state)[:6]) or "nothing"
        raise fail(f"is not a voiceswap checkpoint (no {', '.join(missing)}; it has {found})")
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
