"""What stage 9 scores: the rows, their pairs, and the audio units each pair needs.

An *item* is one line of ``convert/conversions``; a *unit* is one piece of audio to measure once:
``out:<id>`` (a model output), ``real:<utt>`` (a real eval utterance) or ``oracle:<utt>`` (a real
utterance's log-mel through the experiment's vocoder). Every score job and the summary build the
same plan from the same files, so the jobs need no plan file to agree on.

Rows (the same metrics for each):
  converted       output of each conversion pair, against its target speaker / parallel reference
  source          the unconverted source utterance scored against the same target (the floor)
  oracle          the parallel reference (real target speech) through the vocoder (the ceiling)
  reconstruction  each source decoded with its own speaker (decoder + vocoder ceiling of the model)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set

import numpy as np

from voiceswap.data.pairs import speaker_references

ROWS = ("converted", "source", "oracle", "reconstruction")


class ScoreInputError(ValueError):
    """Inputs of stage 9 that cannot be scored; the message names the file and what to do."""


@dataclass(frozen=True)
class Item:
    id: str
    source_utt: str
    source_spk: str
    target_spk: str
    reference_utt: Optional[str]  # None when the corpus is not parallel
    kind: str  # conversion | reconstruction


@dataclass(frozen=True)
class Pair:
    """One scored line of one row: ``unit`` judged against ``target_spk``, ``reference`` and ``text_utt``."""

    row: str
    item: str
    unit: str
    source_spk: str
    target_spk: str
    reference: Optional[str]  # unit of the parallel reference (real speech), if any
    text_utt: str  # whose transcript the ASR output is scored against


@dataclass
class Plan:
    items: List[Item]
    pairs: List[Pair]
    centroid_utts: List[str]
    units: Dict[str, Set[str]] = field(default_factory=dict)  # unit -> measures it needs
    notes: List[str] = field(default_factory=list)

    @property
    def parallel(self) -> bool:
        return any(item.reference_utt for item in self.items)


def read_conversions(path: Path) -> List[Item]:
    if not path.is_file():
        raise ScoreInputError(f"{path} is missing: run stage 8 (conversion) first")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6 or fields[5] not in ("conversion", "reconstruction"):
            raise ScoreInputError(f"{path}:{number}: expected 'id source_utt source_spk target_spk reference_utt "
                                  f"conversion|reconstruction', got {line!r}; re-run stage 8")
        items.append(Item(fields[0], fields[1], fields[2], fields[3],
                          None if fields[4] == "-" else fields[4], fields[5]))
    if not items:
        raise ScoreInputError(f"{path} lists no outputs: re-run stage 8")
    return items


def spread(n: int, k: int) -> List[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when k <= 0 or k >= n)."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def build_plan(items: List[Item], utt2spk: Dict[str, str], max_pairs: int = 0, asr_max_pairs: int = 0,
               mos_max_pairs: int = 24, measures: Optional[Set[str]] = None) -> Plan:
    """Rows, pairs and units; ``*_max_pairs`` (0: all) subsample conversion pairs deterministically.

    The subsets are nested (MOS pairs within ASR pairs within all pairs) and spread over the sorted
    conversion list, which is sorted by source utterance and target, so each keeps every speaker.
    ``measures`` limits what is measured at all (default: everything).
    """
    measures = set(measures) if measures is not None else {"emb", "clf", "mcep", "f0", "asr", "mos"}
    conversions = [item for item in items if item.kind == "conversion"]
    reconstructions = [item for item in items if item.kind == "reconstruction"]
    chosen = [conversions[i] for i in spread(len(conversions), max_pairs)]
    asr_ids = {chosen[i].id for i in spread(len(chosen), asr_max_pairs)}
    mos_pool = [item for item in chosen if item.id in asr_ids]
    mos_ids = {mos_pool[i].id for i in spread(len(mos_pool), mos_max_pairs)}
    mos_sources = {item.source_utt for item in chosen if item.id in mos_ids}
    asr_sources = {item.source_utt for item in chosen if item.id in asr_ids}
    notes = []
    if len(chosen) < len(conversions):
        notes.append(f"--max-pairs {max_pairs}: {len(chosen)} of {len(conversions)} conversion pairs scored")
    if "asr" in measures and len(asr_ids) < len(chosen):
        notes.append(f"--asr-max-pairs {asr_max_pairs}: WER/CER on {len(asr_ids)} of {len(chosen)} pairs")
    if "mos" in measures and len(mos_ids) < len(chosen):
        notes.append(f"--mos-max-pairs {mos_max_pairs}: DNSMOS on {len(mos_ids)} of {len(chosen)} pairs per row")

    pairs: List[Pair] = []
    for item in chosen:
        ref = item.reference_utt
        ref_unit = f"real:{ref}" if ref else None
        pairs.append(Pair("converted", item.id, f"out:{item.id}",
                          item.source_spk, item.target_spk, ref_unit, item.source_utt))
        pairs.append(Pair("source", item.id, f"real:{item.source_utt}",
                          item.source_spk, item.target_spk, ref_unit, item.source_utt))
        if ref:
            pairs.append(Pair("oracle", item.id, f"oracle:{ref}", item.source_spk, item.target_spk, ref_unit, ref))
    sources_kept = {item.source_utt for item in chosen}
    for item in reconstructions:
        if item.source_utt in sources_kept or not chosen:
            pairs.append(Pair("reconstruction", item.id, f"out:{item.id}", item.source_spk, item.target_spk,
                              f"real:{item.source_utt}", item.source_utt))
    if not any(item.reference_utt for item in items):
        notes.append("references are '-' (not a parallel corpus): MCD, F0 and the oracle row are skipped")

    # Centroids: real eval speech of each speaker that is neither a source nor a reference of a pair,
    # so no output is scored against a centroid that contains its own source or reference sentence.
    # (Any-to-any models were conditioned on the same utterances in stage 8.)
    references, missing = speaker_references(
        [(item.source_utt, item.target_spk, item.reference_utt) for item in items],
        {**utt2spk, **{item.source_utt: item.source_spk for item in items}})
    if missing:
        # Too few eval utterances: fall back to all of that speaker's eval speech (say so).
        notes.append(f"speaker(s) {' '.join(sorted(missing))} have no eval utterance outside the pairs: "
                     "their centroids include the pair utterances")
    centroid_utts = sorted({utt for utts in references.values() for utt in utts}, key=str.encode)
    plan = Plan(items=items, pairs=pairs, centroid_utts=centroid_utts, notes=notes)

    def need(unit: str, *what: str) -> None:
        plan.units.setdefault(unit, set()).update(m for m in what if m in measures)

    for pair in pairs:
        need(pair.unit, "emb", "clf")
        if pair.reference:
            need(pair.unit, "mcep", "f0")
            need(pair.reference, "mcep", "f0")
        if pair.row in ("converted", "reconstruction"):  # F0 correlation with the source (f0_corr_src)
            need(pair.unit, "f0")
            need(f"real:{pair.text_utt}", "f0")
        if pair.item in asr_ids or (pair.row == "reconstruction" and pair.text_utt in asr_sources):
            need(pair.unit, "asr")
        if pair.item in mos_ids or (pair.row == "reconstruction" and pair.text_utt in mos_sources):
            need(pair.unit, "mos")
    for utt in plan.centroid_utts:
        need(f"real:{utt}", "emb")
    return plan


def job_units(plan: Plan, job: int, num_jobs: int) -> List[str]:
    """The units job ``job`` (1-based) of ``num_jobs`` measures: every num_jobs-th of the sorted list,
    with expensive units (ASR, MOS) dealt round first so the jobs finish together."""
    cost = {"mos": 10, "asr": 4, "f0": 1}
    ordered = sorted(plan.units, key=lambda u: (-sum(cost.get(m, 0) for m in plan.units[u]), u.encode()))
    return ordered[job - 1 :: num_jobs]
