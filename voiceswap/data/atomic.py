"""Writing files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterable, Iterator, Tuple


def temp_path_for(path: str | os.PathLike) -> Path:
    """A sibling temp name, unique per process, on the same file system so rename is atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file for writing; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_kaldi_map(path: str | os.PathLike, items: Iterable[Tuple[str, str]]) -> None:
    """Write ``key value`` lines, sorted by key in C byte order as Kaldi requires."""
    with atomic_open(path) as f:
        for key, value in sorted(items, key=lambda kv: kv[0].encode()):
            f.write(f"{key} {value}\n")
