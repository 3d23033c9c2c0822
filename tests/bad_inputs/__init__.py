"""Generators of the bad inputs a careless user (or a crashed job) gives the recipe.

Each function writes one kind of bad file under a directory the test owns and returns its path,
so a reliability test reads as "make this bad thing, run the step, check the message". Every
file is tiny: the whole reliability suite runs in seconds.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import kaldiio
import numpy as np
import soundfile as sf
import torch


def float_wav_with(path: Path, value: float = float("nan"), index: int = 1234, seconds: float = 0.5,
                   rate: int = 16000) -> Path:
    """A 32-bit float WAV (a tone) whose sample ``index`` is ``value`` (NaN by default, or inf).

    Float WAVs store IEEE floats, so unlike 16-bit PCM they can hold NaN and infinity, and
    soundfile reads them back as they are.
    """
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    samples[index] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, subtype="FLOAT")
    return path


def feats_with_nan(directory: Path, num_utts: int = 4, bad_utt: Optional[str] = "utt-02", bad_row: int = 3,
                   frames: int = 20, dim: int = 5, seed: int = 0) -> Tuple[Path, Dict[str, np.ndarray]]:
    """``feats.ark`` + ``feats.scp`` (written with kaldiio, bypassing our guarded writer) of
    ``num_utts`` random matrices named ``utt-00 ...``; row ``bad_row`` of ``bad_utt`` is NaN.

    Also writes an ``utt2spk`` (two speakers) beside them. Returns the scp and the matrices.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    matrices = {f"utt-{i:02d}": rng.standard_normal((frames, dim)).astype(np.float32) for i in range(num_utts)}
    if bad_utt is not None:
        matrices[bad_utt][bad_row] = np.nan
    scp = directory / "feats.scp"
    with kaldiio.WriteHelper(f"ark,scp:{directory / 'feats.ark'},{scp}") as writer:
        for utt, matrix in matrices.items():
            writer[utt] = matrix
    (directory / "utt2spk").write_text("".join(f"{utt} spk{i % 2}\n" for i, utt in enumerate(matrices)))
    return scp, matrices


def nan_stats(path: Path, dim: int = 5) -> Path:
    """A global stats ``.npz`` as compute_stats.py wrote it before its guards: a NaN mean and std."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nan = np.full(dim, np.nan)
    with open(path, "wb") as f:
        np.savez(f, count=100, sum=nan, sum_square=nan, mean=nan, std=nan)
    return path


def good_checkpoint(path: Path, step: int = 10) -> Path:
    """A minimal checkpoint with what the Trainer writes for inference: models, config, step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "models": {"model": {"weight": torch.ones(2, 2)}},
                "config": {"family": "toy"}, "ema": {}}, path)
    return path


def truncated_checkpoint(path: Path, fraction: float = 0.5) -> Path:
    """A real checkpoint cut to ``fraction`` of its bytes, as a full disk or a copy cut short leaves it."""
    good_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def empty_checkpoint(path: Path) -> Path:
    """A 0-byte file where a checkpoint should be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def garbage_checkpoint(path: Path, size: int = 2048) -> Path:
    """Random bytes under a checkpoint's name (a corrupt download, a wrong file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


class Foreign:
    """Any class: a pickle of it cannot be loaded with ``weights_only=True``."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def foreign_pickle(path: Path) -> Path:
    """A plain Python pickle of an arbitrary object (not written by torch.save)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(Foreign(), f)
    return path


def foreign_torch_object(path: Path) -> Path:
    """A torch.save of an arbitrary object: a zip archive whose pickle needs a class to load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(Foreign(), path)
    return path


def foreign_state_dict(path: Path) -> Path:
    """A bare ``state_dict`` as other toolkits save it: loads with weights_only, but is not ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"weight": torch.zeros(3)}, "epoch": 4}, path)
    return path


def dangling_best(directory: Path, target: str = "step_1000.pt") -> Path:
    """A ``best.pt`` symlink to a step checkpoint that has been deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    best = directory / "best.pt"
    os.symlink(target, best)
    return best


#: Every unusable checkpoint: name -> generator(path) -> path.
BAD_CHECKPOINTS = {
    "missing": lambda path: path,
    "empty": empty_checkpoint,
    "truncated": truncated_checkpoint,
    "garbage": garbage_checkpoint,
    "foreign_pickle": foreign_pickle,
    "foreign_torch_object": foreign_torch_object,
    "foreign_state_dict": foreign_state_dict,
    "dangling_symlink": lambda path: dangling_best(path.parent),
}


def wav_scp(path: Path, entries: Iterable[Tuple[str, Path]]) -> Path:
    """A ``wav.scp`` of ``(utt, wav path)`` lines, sorted as Kaldi wants."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{utt} {wav}\n" for utt, wav in sorted(entries)))
    return path
