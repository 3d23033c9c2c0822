"""Stage 9's summary: per-pair scores from the unit records, then per-row metrics and unit metrics."""

from __future__ import annotations

import math
from typing import Any, Collection, Dict, List, Mapping, Optional

import numpy as np

from voiceswap.eval.asr import JUDGES, error_counts
from voiceswap.eval.classifier_scores import class_score, feature_statistics, frechet_distance
from voiceswap.eval.f0 import f0_metrics
from voiceswap.eval.mcd import mcd_dtw, world_mcd
from voiceswap.eval.plan import ROWS, Plan
from voiceswap.eval.speaker import centroids, cosine

#: Row metrics in the order the tables show them; (key, heading, format, higher is better)
ROW_METRICS = (
    ("spk_sim_target", "SpkSim tgt", "{:.3f}", True),
    ("spk_sim_source", "SpkSim src", "{:.3f}", False),
    ("spk_acc", "SpkAcc", "{:.3f}", True),
    ("class_score", "CS", "{:.2f}", True),
    ("frechet_score", "FS", "{:.1f}", False),
    ("mcd", "MCD dB", "{:.2f}", False),
    ("mcd_logmel", "MCD-logmel dB", "{:.2f}", False),
    ("f0_rmse", "F0 RMSE Hz", "{:.1f}", False),
    ("f0_corr", "F0 corr", "{:.3f}", True),
    ("f0_corr_src", "F0 corr src", "{:.3f}", True),
    ("wer", "WER %", "{:.1f}", False),
    ("cer", "CER %", "{:.1f}", False),
    ("wer_delta", "dWER vs src", "{:+.1f}", False),
    ("wer_ps", "WER psphinx %", "{:.1f}", False),
    ("cer_ps", "CER psphinx %", "{:.1f}", False),
    ("wer_ps_delta", "dWER psphinx vs src", "{:+.1f}", False),
    ("mos_ovrl", "DNSMOS OVRL", "{:.2f}", True),
    ("mos_sig", "DNSMOS SIG", "{:.2f}", True),
    ("mos_bak", "DNSMOS BAK", "{:.2f}", True),
    ("mos_p808", "DNSMOS P808", "{:.2f}", True),
)


#: Row-metric key suffix of each ASR judge (``wer``: Whisper, the judge; ``wer_ps``: pocketsphinx).
ASR_SUFFIX = ("", "_ps")


def _mean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def pair_scores(plan: Plan, records: Mapping[str, Dict[str, Any]], utt2spk: Mapping[str, str],
                text: Mapping[str, str], speakers: List[str]) -> List[Dict[str, Any]]:
    """One dict per (row, pair) with every per-pair number; ``None`` where a measure was not taken."""
    embeddings = {unit.split(":", 1)[1]: rec["emb"] for unit, rec in records.items()
                  if unit.startswith("real:") and "emb" in rec}
    # No embeddings when stage 9 ran without the "emb" measure: then there are no similarities either.
    centre = centroids(embeddings, utt2spk, plan.centroid_utts) if embeddings else {}
    dtw_cache: Dict[tuple, Dict[str, float]] = {}
    scores = []
    for pair in plan.pairs:
        rec = records[pair.unit]
        row: Dict[str, Any] = {"row": pair.row, "item": pair.item, "unit": pair.unit,
                               "source_spk": pair.source_spk, "target_spk": pair.target_spk}
        if "emb" in rec:
            row["spk_sim_target"] = cosine(rec["emb"], centre[pair.target_spk]) if pair.target_spk in centre else None
            row["spk_sim_source"] = cosine(rec["emb"], centre[pair.source_spk]) if pair.source_spk in centre else None
        if "probs" in rec:
            predicted = speakers[int(np.argmax(rec["probs"]))]
            row["predicted_spk"] = predicted
            row["spk_correct"] = float(predicted == pair.target_spk)
        if pair.reference and "mcep_logmel" in rec:
            key = (pair.unit, pair.reference)
            if key not in dtw_cache:
                ref = records[pair.reference]
                mcd_logmel, path = mcd_dtw(rec["mcep_logmel"], ref["mcep_logmel"])
                dtw_cache[key] = {"mcd": world_mcd(rec["mcep_world"], ref["mcep_world"]), "mcd_logmel": mcd_logmel}
                if "f0" in rec and "f0" in ref:  # F0 is compared along the log-mel path: every frame, not only voiced
                    dtw_cache[key].update(f0_metrics(rec["f0"], ref["f0"], path))
            row.update(dtw_cache[key])
        source_f0 = records.get(f"real:{pair.text_utt}", {}).get("f0")
        if pair.row in ("converted", "reconstruction") and "f0" in rec and source_f0 is not None:
            # Does the pitch follow the source? An output has the source's frames (stage 8), so frame t
            # of one is frame t of the other: no DTW. Frames voiced in both, Pearson on Hz.
            frames = np.arange(min(len(rec["f0"]), len(source_f0)))
            row["f0_corr_src"] = f0_metrics(rec["f0"], source_f0, np.stack([frames, frames], axis=1))["f0_corr"]
        for judge in JUDGES:
            hyp = rec.get(f"hyp_{judge}")
            if hyp is not None:
                row[f"hyp_{judge}"] = hyp
                row.update({f"{judge}_{k}": v for k, v in error_counts(text[pair.text_utt], hyp).items()})
        if "mos" in rec:
            row.update(rec["mos"])
        scores.append(row)
    return scores


def row_metrics(plan: Plan, scores: List[Dict[str, Any]], records: Mapping[str, Dict[str, Any]],
                train_features: Optional[np.ndarray]) -> Dict[str, Dict[str, Any]]:
    """Mean (or corpus-level, for WER/CER) of each metric per row; distribution scores over the row's units."""
    train_stats = feature_statistics(train_features) if train_features is not None else None
    rows: Dict[str, Dict[str, Any]] = {}
    for name in ROWS:
        mine = [s for s in scores if s["row"] == name]
        if not mine:
            continue
        out: Dict[str, Any] = {"num_pairs": len(mine)}
        for key in ("spk_sim_target", "spk_sim_source", "mcd", "mcd_logmel", "f0_rmse", "f0_corr", "f0_corr_src",
                    "mos_ovrl", "mos_sig", "mos_bak", "mos_p808"):
            out[key] = _mean([s.get(key) for s in mine])
        # Pairs with no voiced frame in the output or the reference have no WORLD MCD: count them.
        out["num_mcd_unvoiced"] = sum("mcd" in s and not math.isfinite(s["mcd"]) for s in mine)
        # Pairs with fewer than 2 frames voiced in both output and reference have no F0 RMSE: count them too.
        out["num_f0_unvoiced"] = sum("f0_rmse" in s and not math.isfinite(s["f0_rmse"]) for s in mine)
        out["spk_acc"] = _mean([s.get("spk_correct") for s in mine])
        for judge, suffix in zip(JUDGES, ASR_SUFFIX):
            asr = [s for s in mine if f"{judge}_words" in s]
            words, chars = sum(s[f"{judge}_words"] for s in asr), sum(s[f"{judge}_chars"] for s in asr)
            out[f"wer{suffix}"] = 100.0 * sum(s[f"{judge}_word_edits"] for s in asr) / max(words, 1) if asr else None
            out[f"cer{suffix}"] = 100.0 * sum(s[f"{judge}_char_edits"] for s in asr) / max(chars, 1) if asr else None
        out["num_asr_pairs"] = sum(f"{JUDGES[0]}_words" in s for s in mine)
        out["num_mos_pairs"] = sum("mos_ovrl" in s for s in mine)
        probs = [records[s["unit"]]["probs"] for s in mine if "probs" in records[s["unit"]]]
        out["class_score"] = class_score(np.stack(probs)) if probs else None
        features = [records[s["unit"]]["clf_emb"] for s in mine if "clf_emb" in records[s["unit"]]]
        out["frechet_score"] = None
        if train_stats is not None and len(features) >= 2:
            out["frechet_score"] = frechet_distance(*feature_statistics(np.stack(features)), *train_stats)
        rows[name] = out
    # Intelligibility is judged relative to the real source speech through the same recogniser.
    source = rows.get("source", {})
    for name, out in rows.items():
        for key in ("wer", "cer", "wer_ps", "cer_ps"):
            out[f"{key}_delta"] = ((out[key] - source[key])
                                   if out.get(key) is not None and source.get(key) is not None else None)
    return rows


def similarity_matrix(scores: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean similarity to the target centroid for each (source speaker, target speaker) of the outputs."""
    cells: Dict[tuple, List[float]] = {}
    for s in scores:
        if s["row"] in ("converted", "reconstruction") and s.get("spk_sim_target") is not None:
            cells.setdefault((s["source_spk"], s["target_spk"]), []).append(s["spk_sim_target"])
    speakers = sorted({k for pair in cells for k in pair}, key=str.encode)
    matrix = [[_mean(cells.get((a, b), [])) for b in speakers] for a in speakers]
    return {"speakers": speakers, "matrix": matrix}


def rows_by_target(plan: Plan, scores: List[Dict[str, Any]], records: Mapping[str, Dict[str, Any]],
                   train_features: Optional[np.ndarray],
                   train_speakers: Collection[str]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Every row's metrics again for the pairs to seen targets (the model's train speakers) and to unseen ones
    (zero-shot conversion of an any-to-any model); ``{}`` when every target is seen.

    Each pair's source and oracle rows go with its converted row. Speaker accuracy, class score and
    Frechet score of unseen targets are None: the judge's classifier knows only the train speakers
    (even their real speech scores as a stranger: on the many-speaker synth corpus the oracle row's
    class score drops from 20.8 to 2.3 and its Frechet score rises from 2.6 to 234).
    """
    seen = set(train_speakers)
    if not any(s["row"] == "converted" and s["target_spk"] not in seen for s in scores):
        return {}
    groups = {"seen": [s for s in scores if s["target_spk"] in seen],
              "unseen": [s for s in scores if s["target_spk"] not in seen]}
    out = {}
    for name, group in groups.items():
        if not any(s["row"] == "converted" for s in group):
            continue
        out[name] = row_metrics(plan, group, records, train_features)
        if name == "unseen":
            for row in out[name].values():
                row.update(spk_acc=None, class_score=None, frechet_score=None)
    return out
