"""Experiments of different families on the same eval pairs, ranked: RESULTS.md's comparison section and
the table at the top of the listening report (``run.sh --model all``, stage 11).

The ranking reads the headline metrics in the order a conversion is worth something: the words first
(Whisper WER, then CER, relative to the unconverted source), then the target speaker (resemblyzer
similarity), then quality (DNSMOS OVRL, then MCD). Each experiment gets a rank on each of the three and an
overall rank ordered by them in that order, so a model that keeps the words always ranks above one that
does not, whatever it does to the speaker.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import soundfile as sf

from voiceswap.eval.layout import convert_dir
from voiceswap.eval.summary import ROW_METRICS

#: The job dispatcher's (utils/run.pl, slurm.pl) last lines of a job log: "# Accounting: time=<seconds> ...".
_ACCOUNTING = re.compile(r"^# Accounting: time=(\d+)", re.MULTILINE)


def job_seconds(logs: Sequence[Path]) -> Optional[float]:
    """Wall seconds of the finished jobs whose logs are ``logs``, summed (None when no log has them)."""
    times = [int(seconds) for log in logs if log.is_file()
             for seconds in _ACCOUNTING.findall(log.read_text(errors="replace"))]
    return float(sum(times)) if times else None


def training_seconds(exp_dir: Path) -> Optional[float]:
    """Training wall time of every model stages 4-6 trained in the experiment (e.g. softvc's unit head and
    acoustic model), summed over resumed runs: the trainers' ``train_time.json`` files."""
    from voiceswap.train.trainer import TRAIN_TIME_FILE

    times = [json.loads(path.read_text())["seconds"] for path in sorted(Path(exp_dir).rglob(TRAIN_TIME_FILE))]
    return float(sum(times)) if times else None


def conversion_rtf(exp_dir: Path, vocoder: str) -> Optional[float]:
    """Stage 8's job seconds (model loading included, summed over jobs) per second of audio it wrote."""
    out = convert_dir(exp_dir, vocoder)
    seconds = job_seconds(sorted(out.glob("log/convert.*.log")))
    audio = sum(sf.info(str(wav)).duration for wav in out.glob("wav/*.wav"))
    if seconds is None or audio <= 0:
        return None
    return seconds / audio


@dataclass
class Entry:
    """One experiment x vocoder of the comparison, with its ranks once :func:`rank` has run."""

    metrics: Mapping[str, Any]
    train_s: Optional[float] = None
    rtf: Optional[float] = None
    ranks: Dict[str, int] = field(default_factory=dict)

    def value(self, row: str, key: str) -> Optional[float]:
        value = self.metrics["rows"].get(row, {}).get(key)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def relative(self, key: str, row: str = "converted") -> Optional[float]:
        """``row``'s ``key`` (WER, CER) over the source's: 1.0 = every word the source kept."""
        value, source = self.value(row, key), self.value("source", key)
        if value is None or source is None or source <= 0:
            return None
        return value / source


def _missing_last(value: Optional[float], higher_is_better: bool) -> Tuple[int, float]:
    if value is None:
        return (1, 0.0)
    return (0, -value if higher_is_better else value)


#: (rank name, key function of an Entry): lower keys rank first; a missing number ranks last.
HEADLINES: Tuple[Tuple[str, Callable[[Entry], tuple]], ...] = (
    ("words", lambda e: (_missing_last(e.relative("wer"), False), _missing_last(e.value("converted", "wer"), False),
                         _missing_last(e.relative("cer"), False))),
    ("speaker", lambda e: (_missing_last(e.value("converted", "spk_sim_target"), True),)),
    ("quality", lambda e: (_missing_last(e.value("converted", "mos_ovrl"), True),
                           _missing_last(e.value("converted", "mcd"), False))),
)


def _competition_ranks(keys: Sequence[tuple]) -> List[int]:
    """1-based ranks, equal keys sharing the best one ("1224")."""
    return [1 + sum(other < key for other in keys) for key in keys]


def rank(entries: Sequence[Entry]) -> List[Entry]:
    """Set each entry's ``ranks`` (words, speaker, quality, overall) and return them best first."""
    for name, key in HEADLINES:
        for entry, place in zip(entries, _competition_ranks([key(e) for e in entries])):
            entry.ranks[name] = place
    overall_keys = [tuple(e.ranks[name] for name, _ in HEADLINES) for e in entries]
    for entry, place in zip(entries, _competition_ranks(overall_keys)):
        entry.ranks["overall"] = place
    return sorted(entries, key=lambda e: (e.ranks["overall"], e.metrics["experiment"], e.metrics["vocoder"]))


def entries_of(all_metrics: Sequence[Mapping[str, Any]]) -> List[Entry]:
    """One entry per metrics.json (stage 9 of one experiment x vocoder), with training time and RTF."""
    entries = []
    for metrics in all_metrics:
        exp = metrics.get("exp_dir")  # absent from metrics.json files older than the field
        if exp is None or not Path(exp).is_dir():
            entries.append(Entry(metrics))
            continue
        entries.append(Entry(metrics, training_seconds(Path(exp)), conversion_rtf(Path(exp), metrics["vocoder"])))
    return entries


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else spec.format(value)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def present_metrics(entries: Sequence[Entry]) -> List[Tuple[str, str, str, bool]]:
    """The suite's row metrics (summary.ROW_METRICS) that some entry's converted row has."""
    return [m for m in ROW_METRICS if any(e.value("converted", m[0]) is not None for e in entries)]


def comparison_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the ranked table: the ranked experiments, then the floor and ceiling rows.

    The floor (the unconverted source scored against the target) and the ceiling (the parallel
    reference through the vocoder) come from the first entry of each vocoder: every entry scored the
    same pairs, which :func:`notes` checks.
    """
    metrics = present_metrics(entries)
    header = (["rank", "experiment", "family", "vocoder", "step", "WER/src ↓", "CER/src ↓",
               "rank words", "rank speaker", "rank quality"]
              + [heading + (" ↑" if up else " ↓") for _, heading, _, up in metrics]
              + ["train time", "RTF"])
    rows = []
    for e in entries:
        m = e.metrics
        rows.append([str(e.ranks.get("overall", "-")), m["experiment"], m["family"], m["vocoder"], str(m["step"]),
                     _fmt(e.relative("wer"), "{:.2f}x"), _fmt(e.relative("cer"), "{:.2f}x"),
                     *(str(e.ranks.get(name, "-")) for name, _ in HEADLINES),
                     *(_fmt(e.value("converted", key), spec) for key, _, spec, _ in metrics),
                     _duration(e.train_s), _fmt(e.rtf, "{:.3f}")])
    first_of_vocoder: Dict[str, Entry] = {}
    for e in entries:  # decodes of one vocoder (other inference settings) share its oracle audio: one row
        first_of_vocoder.setdefault(e.metrics.get("oracle_vocoder", e.metrics["vocoder"]), e)
    # The source row does not depend on the vocoder: one floor row; one ceiling row per vocoder.
    bounds = [("source", "source (floor)", next(iter(first_of_vocoder.values())), "-")] if entries else []
    bounds += [("oracle", f"oracle (ceiling, {v})", e, v) for v, e in first_of_vocoder.items()]
    for row, label, e, vocoder in bounds:
        if row not in e.metrics["rows"]:
            continue
        rows.append(["-", label, "-", vocoder, "-", _fmt(e.relative("wer", row), "{:.2f}x"),
                     _fmt(e.relative("cer", row), "{:.2f}x"), "-", "-", "-",
                     *(_fmt(e.value(row, key), spec) for key, _, spec, _ in metrics), "-", "-"])
    return header, rows


def notes(entries: Sequence[Entry]) -> List[str]:
    """What a reader must know to trust the comparison: do the rows share their pairs and corpus?"""
    out = []
    pairs = {e.metrics["num_conversions"] for e in entries}
    if len(pairs) > 1:
        out.append("the experiments scored different numbers of conversion pairs "
                   f"({', '.join(str(p) for p in sorted(pairs))}): re-run stage 9 with the same --score-max-pairs "
                   "before comparing them")
    eval_sets = {(e.metrics["corpus"], e.metrics["eval_set"]) for e in entries}
    if len(eval_sets) > 1:
        out.append(f"the experiments come from different corpora or eval sets: {sorted(eval_sets)}")
    return out


LEGEND = ("Ranked on the headline metrics, in this order: the words (Whisper WER, then CER, relative to the "
          "unconverted source: 1.00x keeps every word the source kept), then the target speaker (SpkSim), then "
          "quality (DNSMOS OVRL, then MCD); 'rank words/speaker/quality' are the ranks on each alone. Floor: the "
          "source utterance scored against the target; ceiling: the parallel reference through the vocoder. Train "
          "time: wall time of training in stages 4-6, summed over resumed runs and the experiment's models ('-': "
          "trained before voiceswap recorded it); RTF: stage 8's job seconds (model loading included, summed over "
          "jobs) per second of converted audio.")


def ranked(all_metrics: Sequence[Mapping[str, Any]]) -> List[Entry]:
    """The metrics.json of several experiments, ranked best first."""
    return rank(entries_of(all_metrics))


def comparison_markdown(entries: Sequence[Entry]) -> str:
    """The ranked table with its legend and notes, as markdown (RESULTS.md, exp/report/comparison.md)."""
    from voiceswap.eval.results import markdown_table

    header, rows = comparison_rows(entries)
    out = [LEGEND, "", markdown_table(header, rows)]
    out += [f"- Note: {note}" for note in notes(entries)]
    return "\n".join(out) + "\n"
