"""Kaldi ark/scp matrices through kaldiio, written so that readers never see a partial file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, Tuple

import kaldiio
import numpy as np

from voiceswap.data.atomic import temp_path_for
from voiceswap.data.finite import NonFiniteError, check_finite


class ArkWriter:
    """Write matrices to ``<ark>`` and index them in ``<scp>``; both appear only on ``close()``.

    The scp stores the ark's path with byte offsets, so the ark is written under a temp name and
    the scp entries are rewritten to the final name before both are renamed into place. An
    exception inside a ``with`` block removes the temp files and leaves any old outputs alone.

    A matrix holding NaN or infinity is refused with a :class:`NonFiniteError` naming its key and
    the ark, and the writer aborts at once: a stage that meets one bad matrix writes no outputs
    (and so no ``.done`` stamp) even if its caller catches the error and goes on.
    """

    def __init__(self, ark_path: str | os.PathLike, scp_path: str | os.PathLike):
        self.ark_path = Path(ark_path)
        self.scp_path = Path(scp_path)
        self.ark_path.parent.mkdir(parents=True, exist_ok=True)
        self.scp_path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_ark = temp_path_for(self.ark_path)
        self._tmp_scp = temp_path_for(self.scp_path)
        self._writer = kaldiio.WriteHelper(f"ark,scp:{self._tmp_ark},{self._tmp_scp}")
        self.num_written = 0
        self._aborted = False
        self._closed = False

    def __setitem__(self, key: str, matrix: np.ndarray) -> None:
        if self._aborted or self._closed:
            raise RuntimeError(f"ArkWriter of {self.ark_path} is {'aborted' if self._aborted else 'closed'}: "
                               f"cannot write '{key}'")
        try:
            check_finite(matrix, f"matrix '{key}'")
        except NonFiniteError as error:
            self.abort()
            raise NonFiniteError(f"{error}: refusing to write it to {self.ark_path}, which was not written; "
                                 "fix the input of this step (or remove the utterance) and run it again") from None
        self._writer[key] = np.ascontiguousarray(matrix)
        self.num_written += 1

    def close(self) -> None:
        if self._aborted:
            raise RuntimeError(f"ArkWriter of {self.ark_path} was aborted: nothing to close")
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        tmp_prefix = f"{self._tmp_ark}:"
        final_prefix = f"{self.ark_path}:"
        final_scp_tmp = self._tmp_scp.with_name(self._tmp_scp.name + ".final")
        with open(self._tmp_scp) as src, open(final_scp_tmp, "w") as dst:
            for line in src:
                key, _, location = line.rstrip("\n").partition(" ")
                if not location.startswith(tmp_prefix):
                    raise RuntimeError(f"unexpected scp entry {line!r} in {self._tmp_scp}")
                dst.write(f"{key} {final_prefix}{location[len(tmp_prefix):]}\n")
        os.replace(self._tmp_ark, self.ark_path)
        os.replace(final_scp_tmp, self.scp_path)
        self._tmp_scp.unlink()

    def abort(self) -> None:
        """Drop everything written so far; old outputs (if any) stay as they were. Idempotent."""
        if self._aborted or self._closed:
            return
        self._aborted = True
        self._writer.close()
        for path in (self._tmp_ark, self._tmp_scp):
            if path.exists():
                path.unlink()

    def __enter__(self) -> "ArkWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_scp(scp_path: str | os.PathLike) -> Iterator[Tuple[str, np.ndarray]]:
    """Iterate ``(key, matrix)`` over a feats.scp in file order."""
    with kaldiio.ReadHelper(f"scp:{scp_path}") as reader:
        for key, matrix in reader:
            yield key, matrix


def load_scp(scp_path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Lazy dict-like random access to a feats.scp (kaldiio's loader)."""
    return kaldiio.load_scp(str(scp_path))
