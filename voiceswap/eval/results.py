"""Reports: one experiment's ``scores_<vocoder>/RESULTS.md`` and the corpus-wide ``RESULTS.md`` table.

Like ESPnet's ``show_asr_result.sh``, the corpus table carries the date, the python / torch /
torchaudio / voiceswap versions, the git hash and the exact command that made it, and one row per
experiment with the same columns.
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from voiceswap.eval.compare import comparison_markdown, ranked
from voiceswap.eval.layout import METRICS_GLOB
from voiceswap.eval.summary import ROW_METRICS

#: Columns of the corpus table: (row, metric key, heading)
TABLE_COLUMNS = (
    ("converted", "spk_sim_target", "SpkSim"),
    ("oracle", "spk_sim_target", "SpkSim oracle"),
    ("converted", "spk_acc", "SpkAcc"),
    ("converted", "class_score", "CS"),
    ("converted", "frechet_score", "FS"),
    ("converted", "mcd", "MCD"),
    ("converted", "mcd_logmel", "MCD-logmel"),
    ("oracle", "mcd", "MCD oracle"),
    ("converted", "f0_rmse", "F0 RMSE"),
    ("converted", "f0_corr", "F0 corr"),
    ("converted", "f0_corr_src", "F0 corr src"),
    ("converted", "wer", "WER"),
    ("source", "wer", "WER src"),
    ("oracle", "wer", "WER oracle"),
    ("converted", "cer", "CER"),
    ("source", "cer", "CER src"),
    ("converted", "wer_ps", "WER ps"),
    ("source", "wer_ps", "WER ps src"),
    ("converted", "cer_ps", "CER ps"),
    ("source", "cer_ps", "CER ps src"),
    ("converted", "mos_ovrl", "DNSMOS"),
    ("oracle", "mos_ovrl", "DNSMOS oracle"),
)
CODE_COLUMNS = (("perplexity", "PPL"), ("codes_used", "used"), ("phone_purity", "purity"),
                ("many_to_one_accuracy", "M2O"), ("nmi", "NMI"))
FORMATS = {key: fmt for key, _, fmt, _ in ROW_METRICS}
FORMATS.update({"perplexity": "{:.1f}", "codes_used": "{:d}", "phone_purity": "{:.3f}",
                "many_to_one_accuracy": "{:.3f}", "ari": "{:.3f}", "ami": "{:.3f}", "nmi": "{:.3f}",
                "codebook_size": "{:d}"})


def environment() -> Dict[str, str]:
    import torch
    import voiceswap
    from voiceswap.train.config import git_hash

    try:
        import torchaudio
        torchaudio_version = torchaudio.__version__
    except ImportError:  # pragma: no cover - pinned dependency
        torchaudio_version = "not installed"
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__, "torchaudio": torchaudio_version,
            "voiceswap": voiceswap.__version__, "git_hash": git_hash(), "host": platform.node()}


def fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and FORMATS.get(key, "").endswith("d}"):
        value = int(round(value))
    try:
        return FORMATS.get(key, "{:.3g}").format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def experiment_report(metrics: Mapping[str, Any]) -> str:
    """``scores_<vocoder>/RESULTS.md`` of one experiment: every metric for every row, unit metrics, notes, costs."""
    env = metrics["environment"]
    out = [f"# Scores of {metrics['experiment']}\n",
           f"- corpus: {metrics['corpus']}, eval set: {metrics['eval_set']}, family: {metrics['family']}, "
           f"checkpoint step: {metrics['step']}, vocoder: {metrics['vocoder']}",
           f"- {metrics['num_conversions']} conversion pairs, {metrics['num_reconstructions']} reconstructions "
           f"scored; parallel references: {'yes' if metrics['parallel'] else 'no'}",
           f"- date: {env['date']}; python {env['python']}, torch {env['torch']}, torchaudio {env['torchaudio']}, "
           f"voiceswap {env['voiceswap']}, git {env['git_hash']}",
           f"- command: `{metrics['command']}`"]
    judges = metrics.get("asr_judges")
    if judges:
        whisper = judges["whisper"]
        out.append(f"- WER/CER judge: Whisper `{whisper['model']}` (faster-whisper, int8, language "
                   f"{whisper['language']}, beam {whisper['beam_size']}, temperature {whisper['temperature']}, "
                   f"condition_on_previous_text {whisper['condition_on_previous_text']}); pocketsphinx beside it")
    out.append("")
    present = [m for m in ROW_METRICS if any(r.get(m[0]) is not None for r in metrics["rows"].values())]
    header = ["row"] + [heading + (" ↑" if up else " ↓") for _, heading, _, up in present] + ["pairs"]
    rows = [[name] + [fmt(key, values.get(key)) for key, _, _, _ in present] + [str(values["num_pairs"])]
            for name, values in metrics["rows"].items()]
    out.append("## Rows\n")
    oracle_vocoder = metrics.get("oracle_vocoder", metrics["vocoder"])  # not the decode's inference settings
    out.append("converted: the model's outputs; source: the unconverted source utterance scored against the "
               f"target (floor); oracle: the parallel reference through {oracle_vocoder} (ceiling); "
               "reconstruction: each source decoded with its own speaker.\n")
    out.append(markdown_table(header, rows))
    by_target = metrics.get("rows_by_target") or {}
    if by_target:
        out.append("\n## Seen and unseen targets\n")
        out.append("The rows again for the pairs to targets the model was trained on (seen) and to the others "
                   "(unseen: zero-shot, from reference utterances only). SpkAcc, CS and FS of unseen targets are "
                   "not defined: the judge's classifier knows only the train speakers.\n")
        out.append(markdown_table(["targets"] + header,
                                  [[group, name] + [fmt(key, values.get(key)) for key, _, _, _ in present]
                                   + [str(values["num_pairs"])]
                                   for group, group_rows in by_target.items() for name, values in group_rows.items()]))
    codes = metrics.get("codes")
    if codes:
        keys = ["perplexity", "codes_used", "codebook_size", "phone_purity", "many_to_one_accuracy",
                "ari", "ami", "nmi"]
        out.append(f"\n## Units vs phone alignments ({codes['set']} set, {codes['frame_shift'] * 1000:.0f} ms frames, "
                   f"mapping fit on {codes['mapping_set']})\n")
        out.append(markdown_table(["units"] + keys, [[name] + [fmt(k, codes[name].get(k)) for k in keys]
                                                     for name in ("model", "kmeans_mfcc") if name in codes]))
    if metrics.get("notes"):
        out.append("\n## Notes\n")
        out += [f"- {note}" for note in metrics["notes"]]
    if metrics.get("costs_s"):
        out.append("\n## Cost (CPU seconds, summed over jobs)\n")
        out.append(markdown_table(["measure", "seconds", "per unit"],
                                  [[k, f"{v['total']:.1f}", f"{v['per_unit']:.3f}" if v.get("per_unit") else "-"]
                                   for k, v in metrics["costs_s"].items()]))
    return "\n".join(out) + "\n"


def collect(exp_dir: str | Path, corpus: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every ``<exp_dir>/*/scores_<vocoder>/metrics.json`` (of ``corpus``, when given), sorted by
    experiment name, then vocoder."""
    found = []
    for path in sorted(Path(exp_dir).glob(METRICS_GLOB)):
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}); re-run stage 9 for that experiment") from None
        if corpus is None or metrics.get("corpus") == corpus:
            metrics["_path"] = str(path)
            found.append(metrics)
    return found


def corpus_results(all_metrics: Sequence[Mapping[str, Any]], command: str) -> str:
    """The top-level RESULTS.md: one section per corpus, one row per experiment, same columns."""
    env = environment()
    out = ["<!-- Generated by utils/show_results.sh -->", "# RESULTS", "## Environments",
           f"- date: `{env['date']}`", f"- python version: `{sys.version.split()[0]}`",
           f"- voiceswap version: `{env['voiceswap']}`", f"- pytorch version: `{env['torch']}`",
           f"- torchaudio version: `{env['torchaudio']}`", f"- Git hash: `{env['git_hash']}`",
           f"- command: `{command}`", ""]
    if not all_metrics:
        out.append("No scored experiment found (run stage 9 first).\n")
        return "\n".join(out)
    for corpus in sorted({m["corpus"] for m in all_metrics}):
        mine = [m for m in all_metrics if m["corpus"] == corpus]
        out.append(f"## Corpus {corpus}\n")
        out.append("SpkSim: cosine of resemblyzer embeddings to the target speaker's centroid; SpkAcc, CS, FS: the "
                   "toolkit's speaker classifier (accuracy, class score, Frechet score vs train); MCD (dB): SPTK "
                   "mel-cepstra of the WORLD envelope on voiced frames after DTW against the parallel reference, as "
                   "ESPnet; MCD-logmel: from our log-mel, all frames; F0 (Hz) after DTW against the reference; F0 corr "
                   "src: with the source's F0, frame by frame (does the pitch follow the source?); WER/CER (%): "
                   "the Whisper "
                   "judge (faster-whisper, tiny.en by default), 'ps' = pocketsphinx beside it, 'src' = the real "
                   "source utterances; DNSMOS: P.835 OVRL; oracle = the reference through the same vocoder; "
                   "PPL ... NMI: the model's units against phone alignments (eval set); k-means = MFCC k-means "
                   "with as many clusters.\n")
        header = ["experiment", "vocoder", "step", "pairs"] + [h for _, _, h in TABLE_COLUMNS] + \
                 [h for _, h in CODE_COLUMNS] + ["NMI k-means"]
        rows = []
        for m in mine:
            row = [m["experiment"], m["vocoder"], str(m["step"]), str(m["num_conversions"])]
            row += [fmt(key, m["rows"].get(r, {}).get(key)) for r, key, _ in TABLE_COLUMNS]
            codes = m.get("codes") or {}
            row += [fmt(key, codes.get("model", {}).get(key)) for key, _ in CODE_COLUMNS]
            row.append(fmt("nmi", codes.get("kmeans_mfcc", {}).get("nmi")))
            rows.append(row)
        out.append(markdown_table(header, rows))
        out.append(f"### Comparison across families ({corpus})\n")
        out.append(comparison_markdown(ranked(mine)))
        out.append("Commands:\n")
        for m in mine:
            out.append(f"- {m['experiment']}: trained by `{m.get('train_command') or '?'}`; scored by "
                       f"`{m['command']}` ({m['environment']['date']}, git {m['environment']['git_hash'][:10]})")
        out.append("")
    return "\n".join(out)
