"""Where stages 8-10 of one experiment write, per vocoder (ESPnet's ``decode_<inference_tag>`` dirs).

One trained model is converted, scored and plotted once per vocoder, side by side, so that
``exp/<tag>/scores_griffinlim`` and ``exp/<tag>/scores_hifigan`` both land in the results table:

* stage 8: ``exp/<tag>/convert_<vocoder>/`` (wav/, mel.scp, conversions)
* stage 9: ``exp/<tag>/scores_<vocoder>/`` (metrics.json, RESULTS.md, pairs.jsonl, oracle_wav/)
* stage 10: ``exp/<tag>/plots_<vocoder>/``
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

PathLike = Union[str, Path]


def convert_dir(exp_dir: PathLike, vocoder: str) -> Path:
    return Path(exp_dir) / f"convert_{vocoder}"


def scores_dir(exp_dir: PathLike, vocoder: str) -> Path:
    return Path(exp_dir) / f"scores_{vocoder}"


def plots_dir(exp_dir: PathLike, vocoder: str) -> Path:
    return Path(exp_dir) / f"plots_{vocoder}"


#: ``glob`` pattern, relative to the exp dir, of every scored experiment's metrics.
METRICS_GLOB = "*/scores_*/metrics.json"
