"""One check for NaN and infinity, used wherever numbers enter or leave a stage.

A single non-finite value spreads: one NaN sample gives a NaN feature frame, NaN global statistics
and so NaN in every normalised matrix of every set. So each boundary (audio reading, ark writing,
statistics, normalisation, unit dumps, conversion outputs) refuses non-finite data with an error
that names what it was checking, instead of passing it on.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class NonFiniteError(ValueError):
    """An array holds NaN or infinity; the message names the array, how many and the first index."""


def check_finite(array: Any, what: str) -> None:
    """Raise :class:`NonFiniteError` if ``array`` holds a NaN or an infinity.

    ``array``: a NumPy array, a torch tensor or anything ``np.asarray`` takes. ``what`` names the
    data for the message, e.g. ``"utterance 'spk-u01' of dump/raw/feats.scp"``. Integer and boolean
    arrays are always finite.
    """
    if hasattr(array, "detach"):  # a torch tensor (maybe on a GPU, maybe bf16, which NumPy lacks)
        tensor = array.detach()
        if not tensor.is_floating_point() and not tensor.is_complex():
            return
        finite = tensor.isfinite()
        if bool(finite.all()):
            return
        bad = (~finite).cpu().numpy()
    else:
        values = np.asarray(array)
        if values.dtype.kind not in "fc":
            return
        finite = np.isfinite(values)
        if finite.all():
            return
        bad = ~finite
    count = int(bad.sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    index = first[0] if len(first) == 1 else first
    raise NonFiniteError(f"{what} has {count} non-finite value{'s' if count != 1 else ''} (NaN or inf), "
                         f"the first at index {index}")
