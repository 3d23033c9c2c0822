"""Stage 9's unit metrics: a model's discrete units against phone alignments, beside k-means on MFCC.

Reads what stage 5 dumped (``<units-dir>/<set>/indices.scp`` and ``<units-dir>/<set>/num_units``,
the size of the ``indices`` inventory) and the corpus's ``phones.ctm``, and scores the eval set's
units with ``voiceswap.eval.codes.unit_metrics`` (perplexity, usage, purity, many-to-one accuracy
with the mapping fit on the train set, ARI/AMI/NMI). The baseline clusters the normalised MFCC
frames, averaged to the unit rate, into as many clusters with the same k-means as Soft-VC's
discrete units (voiceswap/features/kmeans.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import kaldiio
import numpy as np

from voiceswap.data.kaldi_dir import read_kaldi_map
from voiceswap.eval import codes as C
from voiceswap.eval.plan import ScoreInputError
from voiceswap.features.spectral import FeatureConfig

logger = logging.getLogger(__name__)

#: Written by stage 5 (``dump_units.py``) beside ``indices.scp``: one integer, the inventory size.
NUM_UNITS_FILE = "num_units"


def inventory_size(set_dir: Path, codes: Sequence[np.ndarray]) -> int:
    """The size of the unit inventory: ``<set_dir>/num_units``, else (an old dump) max index + 1, with a warning.

    The file matters because units the eval set never uses still count in perplexity's and usage's
    denominators; max + 1 undercounts them.
    """
    path = Path(set_dir) / NUM_UNITS_FILE
    if path.is_file():
        text = path.read_text().strip()
        try:
            size = int(text)
        except ValueError:
            raise ScoreInputError(f"{path}: expected one integer (the unit inventory size), got {text!r}; "
                             "re-run stage 5") from None
        if size <= 0:
            raise ScoreInputError(f"{path}: inventory size must be positive, got {size}; re-run stage 5")
        largest = max((int(c.max()) for c in codes if len(c)), default=-1)
        if largest >= size:
            raise ScoreInputError(f"{path} says {size} units but the units hold index {largest}: the dump is "
                             "inconsistent; re-run stage 5")
        return size
    size = max((int(c.max()) for c in codes if len(c)), default=0) + 1
    logger.warning("%s is missing (units dumped before it was written): taking the inventory size as the "
                   "largest index + 1 = %d, which undercounts unused units; re-run stage 5 to record it", path, size)
    return size


def _flat(sequences: Sequence[Sequence]) -> List:
    return [x for s in sequences for x in s]


def _labelled(scp: Path, ctm: Path, utt2num_frames: Path, feature_config: FeatureConfig
              ) -> Tuple[List[List[str]], List[np.ndarray], List[str], float, float]:
    """Phone label of every unit frame: (phones, codes, utts, feature frames per unit, unit shift in s).

    Units may run slower than the features (20 ms codes over 10 ms frames: 2 frames per unit, an
    integer) or faster (WaveGlow-VQ's codes every 64 samples = 4 ms: 0.4 frames per unit, the
    utterance's duration over its units).
    """
    alignments = C.read_ctm(str(ctm))
    if not utt2num_frames.is_file():
        raise ScoreInputError(f"{utt2num_frames} is missing: run stage 2 first")
    frames = dict(read_kaldi_map(utt2num_frames))
    phones, codes, utts = [], [], []
    frame_shift = feature_config.hop_length / feature_config.sample_rate
    per_unit, shift = 1.0, frame_shift
    for utt, indices in kaldiio.load_scp_sequential(str(scp)):
        if utt not in alignments:
            continue
        indices = np.asarray(indices).reshape(-1).astype(np.int64)
        per_unit = int(frames[utt]) / len(indices)
        per_unit = float(max(1, round(per_unit))) if per_unit >= 1 else per_unit
        shift = per_unit * frame_shift
        phones.append(C.frame_labels(alignments[utt], len(indices), shift))
        codes.append(indices)
        utts.append(utt)
    return phones, codes, utts, per_unit, shift


def code_metrics(units_dir: Path, data_dir: Path, dump_dir: Path, eval_set: str, train_set: str, feats: str,
                 unit_feats: str, feature_config: FeatureConfig, notes: List[str]) -> Optional[Dict[str, Any]]:
    """Unit metrics of the model's units and of an MFCC k-means with as many clusters (eval set).

    ``units_dir`` holds ``<set>/indices.scp`` (stage 5); ``feats`` names the raw features whose
    ``utt2num_frames`` gives the unit rate; ``unit_feats`` the normalised features of the baseline.
    Returns None (with a line in ``notes``) when the model has no discrete units or the corpus no
    phone alignments.
    """
    units_dir, data_dir, dump_dir = Path(units_dir), Path(data_dir), Path(dump_dir)
    eval_scp, train_scp = units_dir / eval_set / "indices.scp", units_dir / train_set / "indices.scp"
    if not eval_scp.is_file():
        notes.append(f"no discrete units ({eval_scp}): unit metrics skipped")
        return None
    ctm = {s: data_dir / s / "phones.ctm" for s in (train_set, eval_set)}
    if not ctm[eval_set].is_file():
        notes.append(f"no phone alignments ({ctm[eval_set]}): unit metrics skipped")
        return None

    def labelled(subset: str, scp: Path):
        return _labelled(scp, ctm[subset], dump_dir / "raw" / feats / subset / "utt2num_frames", feature_config)

    ev_phones, ev_codes, ev_utts, per_unit, shift = labelled(eval_set, eval_scp)
    if not ev_codes:
        notes.append(f"no utterance of {eval_scp} has a phone alignment in {ctm[eval_set]}: unit metrics skipped")
        return None
    codebook_size = inventory_size(units_dir / eval_set, ev_codes)
    have_train = train_scp.is_file() and ctm[train_set].is_file()
    if have_train:
        tr_phones, tr_codes, tr_utts, _, _ = labelled(train_set, train_scp)
    else:
        tr_phones, tr_codes, tr_utts = ev_phones, ev_codes, ev_utts
        notes.append("no train-set units: the many-to-one mapping is fit on the eval set itself")
    result: Dict[str, Any] = {"set": eval_set, "mapping_set": train_set if have_train else eval_set,
                              "frame_shift": shift, "num_frames": len(_flat(ev_codes))}
    result["model"] = C.unit_metrics((_flat(tr_phones), _flat(tr_codes)), (_flat(ev_phones), _flat(ev_codes)),
                                     codebook_size)
    # Baseline: k-means on the normalised MFCC frames, averaged (or, for faster units, held) to the unit rate.
    feats_norm = dump_dir / "norm" / unit_feats
    mfcc = {s: kaldiio.load_scp(str(feats_norm / s / "feats.scp")) for s in (train_set, eval_set)
            if (feats_norm / s / "feats.scp").is_file()}
    if eval_set not in mfcc or (have_train and train_set not in mfcc):
        notes.append(f"no {unit_feats} features under {feats_norm}: k-means baseline skipped")
        return result

    def frames_of(subset: str, utts: List[str], lengths: List[int]) -> List[np.ndarray]:
        out = []
        for utt, n in zip(utts, lengths):
            x = np.asarray(mfcc[subset][utt], dtype=np.float32)
            if per_unit >= 1:
                x = C.downsample_frames(x, int(per_unit))[:n]
            else:  # each unit takes the feature frame it falls in
                x = x[np.minimum((np.arange(n) * per_unit).astype(np.int64), len(x) - 1)]
            out.append(np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)]) if len(x) < n else x)
        return out

    train_subset = train_set if have_train else eval_set
    tr_frames = frames_of(train_subset, tr_utts, [len(c) for c in tr_codes])
    ev_frames = frames_of(eval_set, ev_utts, [len(c) for c in ev_codes])
    tr_labels, (ev_labels,) = C.kmeans_baseline(np.concatenate(tr_frames), [np.concatenate(ev_frames)], codebook_size)
    result["kmeans_mfcc"] = C.unit_metrics((_flat(tr_phones), tr_labels.tolist()),
                                           (_flat(ev_phones), ev_labels.tolist()), codebook_size)
    return result
