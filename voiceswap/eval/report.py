"""The listening report (stage 11): ``<report>/index.html`` with the ranked table of the experiments at the
top, then one row per chosen eval pair with players for the source, the target reference and every
experiment's conversion, their spectrograms and their per-pair scores.

The folder is self-contained: the audio it plays and the plots it shows are copied into it and referenced
by relative paths, so it can be copied elsewhere or served as it is (no server is needed).
"""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import quote

import numpy as np
import soundfile as sf

from voiceswap.data.atomic import atomic_open, temp_path_for
from voiceswap.data.audio import load_audio
from voiceswap.data.kaldi_dir import read_kaldi_map
from voiceswap.eval import plots
from voiceswap.eval.compare import LEGEND, Entry, comparison_markdown, comparison_rows, notes
from voiceswap.eval.layout import convert_dir, plots_dir, scores_dir
from voiceswap.eval.plan import Item, read_conversions, spread
from voiceswap.eval.results import environment
from voiceswap.features.spectral import FeatureExtractor, load_feature_config

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Per-pair scores shown under each conversion: (pairs.jsonl key, label, format).
PAIR_SCORES = (("spk_sim_target", "SpkSim", "{:.3f}"), ("mcd", "MCD", "{:.2f} dB"),
               ("f0_corr_src", "F0 corr src", "{:.2f}"))


class ReportError(ValueError):
    """The inputs of the report are missing or do not fit together; the message says which and what to do."""


@dataclass
class Column:
    """One experiment's conversions in the report."""

    entry: Entry
    name: str  # folder name inside the report
    convert: Path
    pair_scores: Dict[str, Dict[str, Any]]  # item id -> its "converted" record of pairs.jsonl


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _href(path: Path, root: Path) -> str:
    return quote(path.relative_to(root).as_posix())


def _pair_records(scores: Path) -> Dict[str, Dict[str, Any]]:
    path = scores / "pairs.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["item"]: r for r in records if r.get("row") == "converted"}


def columns_of(entries: Sequence[Entry]) -> List[Column]:
    columns = []
    for number, entry in enumerate(entries, 1):
        exp, vocoder = Path(entry.metrics["exp_dir"]), entry.metrics["vocoder"]
        convert = convert_dir(exp, vocoder)
        if not (convert / "conversions").is_file():
            raise ReportError(f"{convert}/conversions is missing: run stage 8 for {exp}")
        columns.append(Column(entry, f"{number:02d}_{_safe(exp.name)}_{_safe(vocoder)}", convert,
                              _pair_records(scores_dir(exp, vocoder))))
    return columns


def choose_pairs(columns: Sequence[Column], num_pairs: int) -> List[Item]:
    """``num_pairs`` conversion pairs that every experiment converted, spread over the sorted list (so
    over source and target speakers)."""
    common: Optional[Dict[str, Item]] = None
    for column in columns:
        items = {i.id: i for i in read_conversions(column.convert / "conversions") if i.kind == "conversion"}
        common = items if common is None else {k: v for k, v in common.items() if k in items}
    ordered = [common[k] for k in sorted(common or {})]
    if not ordered:
        raise ReportError("the experiments have no conversion pair in common: did they convert the same "
                          "eval pairs (stage 8 with the same data dir)?")
    return [ordered[i] for i in spread(len(ordered), num_pairs)]


class ReportWriter:
    """Copies audio and writes spectrograms into the report folder; knows the data dir's utterances."""

    def __init__(self, out_dir: Path, data_dir: Path, eval_set: str, feats_config: Path) -> None:
        self.out = out_dir
        eval_dir = data_dir / eval_set
        self.wav_scp = read_kaldi_map(eval_dir / "wav.scp")
        self.utt2spk = read_kaldi_map(eval_dir / "utt2spk")
        self.text = read_kaldi_map(eval_dir / "text", allow_empty_value=True) if (eval_dir / "text").is_file() else {}
        self.eval_dir = eval_dir
        self.extract = FeatureExtractor(load_feature_config(feats_config))

    def reference_of(self, item: Item) -> Optional[str]:
        """The parallel reference, else the target speaker's first utterance of the eval set."""
        if item.reference_utt:
            return item.reference_utt
        return next((u for u, s in self.utt2spk.items() if s == item.target_spk), None)

    def real_audio(self, utt: str) -> Path:
        """``audio/real/<utt>.wav``, decoded from wav.scp (which may be a pipe) once."""
        if utt not in self.wav_scp:
            raise ReportError(f"utterance {utt} is not in {self.eval_dir}/wav.scp: re-run stage 1, or stage 8 "
                              "if the pairs changed")
        path = self.out / "audio" / "real" / f"{_safe(utt)}.wav"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            samples = load_audio(self.wav_scp[utt], SAMPLE_RATE, utt)
            self._write(path, samples)
        return path

    def converted_audio(self, column: Column, item: Item) -> Path:
        source = column.convert / "wav" / f"{item.id}.wav"
        if not source.is_file():
            raise ReportError(f"{source} is missing: re-run stage 8 for {column.convert.parent}")
        path = self.out / "audio" / column.name / f"{_safe(item.id)}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(path)
        shutil.copyfile(source, tmp)
        tmp.replace(path)
        return path

    @staticmethod
    def _write(path: Path, samples: np.ndarray) -> None:
        tmp = temp_path_for(path)
        sf.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        tmp.replace(path)

    def spectrogram(self, panels: Sequence[tuple], name: str, title: str) -> Path:
        mels = [(label, self.extract(sf.read(str(wav), dtype="float32")[0])) for label, wav in panels]
        return plots.spectrograms(mels, self.out / "spectrograms" / f"{_safe(name)}.png", title)


def _scores_html(record: Optional[Mapping[str, Any]]) -> str:
    if not record:
        return '<div class="scores">not scored</div>'
    parts = []
    words = record.get("whisper_words")
    if words:
        parts.append(f"WER {100.0 * record['whisper_word_edits'] / words:.0f}%")
    for key, label, spec in PAIR_SCORES:
        value = record.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            parts.append(f"{label} {spec.format(value)}")
    hyp = record.get("hyp_whisper")
    heard = f'<div class="heard">Whisper heard: “{html.escape(hyp)}”</div>' if hyp is not None else ""
    return f'<div class="scores">{html.escape(" · ".join(parts))}</div>{heard}'


def _audio_html(path: Path, root: Path, label: str) -> str:
    duration = sf.info(str(path)).duration
    return (f'<figure><figcaption>{html.escape(label)}</figcaption><audio controls preload="metadata" '
            f'src="{_href(path, root)}" data-duration="{duration:.3f}"></audio>')


def _table_html(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="ranked"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _plot_links(column: Column, root: Path) -> str:
    """Copy the experiment's stage-10 plots into the report and link them."""
    exp, vocoder = Path(column.entry.metrics["exp_dir"]), column.entry.metrics["vocoder"]
    source = plots_dir(exp, vocoder)
    pngs = sorted(source.glob("*.png"))
    if not pngs:
        return f"<li>{html.escape(exp.name)} ({html.escape(vocoder)}): no plots (run stage 10)</li>"
    target = root / "plots" / column.name
    target.mkdir(parents=True, exist_ok=True)
    links = []
    for png in pngs:
        shutil.copyfile(png, target / png.name)
        links.append(f'<a href="{_href(target / png.name, root)}">{html.escape(png.stem)}</a>')
    return f"<li>{html.escape(exp.name)} ({html.escape(vocoder)}): {' · '.join(links)}</li>"


STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table.ranked { border-collapse: collapse; font-size: 12px; }
table.ranked td, table.ranked th { border: 1px solid #ccc; padding: 2px 5px; text-align: right; }
table.ranked td:nth-child(2) { text-align: left; }
.pair { border-top: 2px solid #888; margin-top: 1.5em; padding-top: 0.5em; }
.players { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; width: 300px; } figcaption { font-weight: bold; font-size: 13px; overflow-wrap: anywhere; }
audio { width: 300px; } .scores { font-size: 12px; } .heard { font-size: 12px; color: #555; }
img.spec { max-width: 100%; }
"""


def write_report(entries: Sequence[Entry], data_dir: Path, eval_set: str, out_dir: Path, num_pairs: int,
                 feats_config: Path, command: str) -> Path:
    """Write ``out_dir/index.html`` (and comparison.md) for the ranked ``entries``; returns index.html."""
    if not entries:
        raise ReportError("no scored experiment to report: run stages 4-9 first")
    columns = columns_of(entries)
    items = choose_pairs(columns, num_pairs)
    for stale in ("audio", "spectrograms", "plots"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)  # pairs or experiments of an earlier report
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ReportWriter(out_dir, data_dir, eval_set, feats_config)
    header, rows = comparison_rows(entries)
    first = entries[0].metrics
    title = f"voiceswap listening report: {first['corpus']}, {first['eval_set']} set"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{html.escape(LEGEND)}</p>", _table_html(header, rows)]
    body += [f"<p><b>Note:</b> {html.escape(note)}</p>" for note in notes(entries)]
    env = environment()
    made = (f"{env['date']}; python {env['python']}, torch {env['torch']}, torchaudio {env['torchaudio']}, "
            f"voiceswap {env['voiceswap']}, git {env['git_hash']}")
    body.append(f"<p>{len(items)} of the pairs every experiment converted; made {html.escape(made)} by "
                f"<code>{html.escape(command)}</code>; each experiment's training and scoring commands are in its "
                "scores_&lt;vocoder&gt;/RESULTS.md</p>")
    for item in items:
        reference = writer.reference_of(item)
        source_wav = writer.real_audio(item.source_utt)
        panels = [(f"source {item.source_spk}", source_wav)]
        cells = [_audio_html(source_wav, out_dir, f"source ({item.source_spk})")
                 + f'<div class="heard">text: {html.escape(writer.text.get(item.source_utt, "?"))}</div></figure>']
        if reference is not None:
            reference_wav = writer.real_audio(reference)
            panels.append((f"reference {item.target_spk}", reference_wav))
            cells.append(_audio_html(reference_wav, out_dir, f"target reference ({item.target_spk})") + "</figure>")
        for column in columns:
            wav = writer.converted_audio(column, item)
            label = f"{column.entry.metrics['experiment']} ({column.entry.metrics['vocoder']})"
            # The spectrogram's panel titles are short: rank and family (the players carry the full names).
            panels.append((f"#{column.entry.ranks.get('overall', '?')} {column.entry.metrics['family']}", wav))
            cells.append(_audio_html(wav, out_dir, label) + _scores_html(column.pair_scores.get(item.id))
                         + "</figure>")
        spec = writer.spectrogram(panels, item.id, f"{item.source_spk} -> {item.target_spk}")
        body.append(f'<div class="pair" id="{html.escape(item.id)}"><h2>{html.escape(item.source_spk)} → '
                    f'{html.escape(item.target_spk)}: {html.escape(item.id)}</h2>'
                    f'<div class="players">{"".join(cells)}</div>'
                    f'<img class="spec" alt="log-mel spectrograms of {html.escape(item.id)}" '
                    f'src="{_href(spec, out_dir)}"></div>')
    body.append("<h2>Training curves and analysis plots</h2><ul>"
                + "".join(_plot_links(c, out_dir) for c in columns) + "</ul>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>voiceswap report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    index = out_dir / "index.html"
    with atomic_open(index) as f:
        f.write(page)
    with atomic_open(out_dir / "comparison.md") as f:
        f.write(f"# Comparison: {first['corpus']}, {first['eval_set']} set\n\n{comparison_markdown(entries)}\n"
                f"Made {made} by `{command}`\n")
    logger.info("report of %d experiments and %d pairs: %s", len(columns), len(items), index)
    return index
