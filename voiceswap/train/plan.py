"""A family's recipe plan: which steps of stages 4-7 it uses, on which config section, writing which streams.

``run.sh`` never names a family. Stage N asks ``plan.py jobs --stage N`` for the jobs of the chosen
family's plan (voiceswap/train/jobs.py expands each :class:`Step` into jobs) and runs them; a stage
with no step logs one line and exits 0. The vocabulary of steps is small and family-blind:

=================  ==========================================================================
kind               does
=================  ==========================================================================
content_features   content features of every set (``extract_content.py``; ``content.features``)
kmeans             k-means on the train set's content features, then the ids of every set
train              ``train.py`` on the section (``""``: the whole config) -> ``exp/<tag>[/<section>]``
dump_units         the section's trained model's units of every set (``dump_units.py``)
pitch              F0 of every set on the target features' frames, train set first, with
                   per-speaker log-F0 statistics (``extract_pitch.py``; the ``pitch:`` section)
=================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

#: Step kinds and what they do (the help text of ``plan.py``).
STEP_KINDS: Dict[str, str] = {
    "content_features": "content features of every set (extract_content.py)",
    "kmeans": "k-means on the train set's content features; the ids of every set (kmeans_units.py)",
    "train": "train a config section (train.py)",
    "dump_units": "units of every set from a trained section (dump_units.py)",
    "pitch": "F0 stream of every set and per-speaker log-F0 statistics of the train set (extract_pitch.py)",
}

#: Stages whose steps a family declares: content/unit model, unit dump, conversion model, vocoder.
PLAN_STAGES = (4, 5, 6, 7)


@dataclass(frozen=True)
class Step:
    """One step of a plan.

    ``section``: the config section it works on (``""``: the whole config; ``"content"``: Soft-VC's
    unit head, trained into ``exp/<tag>/content``). ``reads`` / ``writes``: the streams it reads and
    makes (names of the config's ``streams:`` section), so that a missing input names the stage
    that makes it.
    """

    stage: int
    kind: str
    section: str = ""
    reads: Tuple[str, ...] = field(default_factory=tuple)
    writes: Tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {self.kind!r}; kinds: {', '.join(STEP_KINDS)}")
        if self.stage not in PLAN_STAGES:
            raise ValueError(f"a plan step belongs to one of stages {PLAN_STAGES}, not {self.stage}")
