"""Progress reporting that reads well both on a terminal and in a job's log file."""

from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, Optional, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], total: Optional[int] = None, desc: str = "") -> Iterator[T]:
    """A tqdm bar on a terminal; in a log file (run.pl, slurm), one line every 10 %."""
    if sys.stderr.isatty():
        yield from tqdm(iterable, total=total, desc=desc, dynamic_ncols=True)
        return
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else 0
    next_report = 0.1
    for done, item in enumerate(iterable, 1):
        yield item
        if total and done / total >= next_report - 1e-9:
            logging.info("%s: %d/%d (%d%%)", desc, done, total, round(100 * done / total))
            next_report = (int(done / total * 10) + 1) / 10
