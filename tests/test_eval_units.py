"""Stage 9's unit metrics (voiceswap/eval/units.py) on a hand-made dump, and k-means's one home."""

from __future__ import annotations

import logging
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from voiceswap.eval import codes as C
from voiceswap.eval.plan import ScoreInputError
from voiceswap.eval.units import code_metrics, inventory_size
from voiceswap.features.spectral import FeatureConfig

PHONES = ("aa", "s", "t")


def make_dump(root: Path, num_units_file: str | None, sets=("train", "eval"), units_per_phone: int = 1) -> dict:
    """Two sets of 20 ms units whose code is a function of the phone (codes 0..2 of an inventory of 8),
    10 ms MFCC frames that separate the phones, phone alignments and frame counts. ``units_per_phone``
    5: 4 ms units (WaveGlow-VQ's rate), faster than the features."""
    rng = np.random.default_rng(0)
    for subset in sets:
        units = root / "dump" / "units" / "tag" / subset
        units.mkdir(parents=True)
        (root / "data" / subset).mkdir(parents=True)
        (root / "dump" / "raw" / "logmel80" / subset).mkdir(parents=True)
        (root / "dump" / "norm" / "mfcc39" / subset).mkdir(parents=True)
        ctm, frames = [], []
        with kaldiio.WriteHelper(f"ark,scp:{units}/indices.ark,{units}/indices.scp") as codes_out, \
                kaldiio.WriteHelper(f"ark,scp:{root}/dump/norm/mfcc39/{subset}/feats.ark,"
                                    f"{root}/dump/norm/mfcc39/{subset}/feats.scp") as mfcc_out:
            for u in range(4):
                utt = f"spk-{subset}-{u}"
                labels = rng.integers(3, size=30)  # one phone per 20 ms unit
                codes_out(utt, np.repeat(labels, units_per_phone).astype(np.int32))
                mfcc = np.repeat(np.eye(3)[labels] * 10, 2, axis=0) + rng.normal(scale=0.1, size=(60, 3))
                mfcc_out(utt, mfcc.astype(np.float32))
                ctm += [f"{utt} 1 {i * 0.02:.2f} 0.02 {PHONES[p]}" for i, p in enumerate(labels)]
                frames.append(f"{utt} 60")
        (root / "data" / subset / "phones.ctm").write_text("\n".join(ctm) + "\n")
        (root / "dump" / "raw" / "logmel80" / subset / "utt2num_frames").write_text("\n".join(frames) + "\n")
        if num_units_file is not None:
            (units / "num_units").write_text(num_units_file)
    return {"units_dir": root / "dump" / "units" / "tag", "data_dir": root / "data", "dump_dir": root / "dump",
            "eval_set": "eval", "train_set": "train", "feats": "logmel80", "unit_feats": "mfcc39",
            "feature_config": FeatureConfig(type="logmel")}


def test_unit_metrics_read_the_inventory_size_from_the_dump(tmp_path):
    notes: list = []
    result = code_metrics(**make_dump(tmp_path, "8\n"), notes=notes)
    assert notes == []
    assert result["frame_shift"] == pytest.approx(0.02) and result["num_frames"] == 120
    model = result["model"]
    # 3 of the 8 codes are used, each for one phone: perplexity ~3, purity and NMI 1.
    assert model["codebook_size"] == 8 and model["codes_used"] == 3
    assert model["perplexity"] == pytest.approx(3.0, abs=0.1)
    assert model["phone_purity"] == 1.0 and model["many_to_one_accuracy"] == 1.0 and model["nmi"] == pytest.approx(1.0)
    # The MFCC baseline has as many clusters as the inventory (8) on frames that separate 3 phones.
    baseline = result["kmeans_mfcc"]
    assert baseline["codebook_size"] == 8 and baseline["phone_purity"] == pytest.approx(1.0)


def test_units_faster_than_the_features_are_labelled_at_their_own_rate(tmp_path):
    result = code_metrics(**make_dump(tmp_path, "8\n", units_per_phone=5), notes=[])
    assert result["frame_shift"] == pytest.approx(0.004) and result["num_frames"] == 600
    assert result["model"]["phone_purity"] == 1.0 and result["model"]["nmi"] == pytest.approx(1.0)
    # The baseline holds each 10 ms MFCC frame over its units: it separates the phones too.
    assert result["kmeans_mfcc"]["phone_purity"] > 0.9


def test_old_dump_without_num_units_falls_back_to_max_index_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = code_metrics(**make_dump(tmp_path, None), notes=[])
    assert result["model"]["codebook_size"] == 3
    assert "num_units is missing" in caplog.text and "re-run stage 5" in caplog.text


def test_inventory_size_errors_name_the_file(tmp_path):
    codes = [np.array([0, 5, 2])]
    (tmp_path / "num_units").write_text("many")
    with pytest.raises(ScoreInputError, match=r"num_units: expected one integer"):
        inventory_size(tmp_path, codes)
    (tmp_path / "num_units").write_text("4")
    with pytest.raises(ScoreInputError, match=r"says 4 units but the units hold index 5"):
        inventory_size(tmp_path, codes)
    (tmp_path / "num_units").write_text("64")
    assert inventory_size(tmp_path, codes) == 64


def test_no_units_or_no_alignments_is_a_note(tmp_path):
    args = make_dump(tmp_path, "8")
    notes: list = []
    assert code_metrics(**{**args, "units_dir": tmp_path / "nowhere"}, notes=notes) is None
    assert "no discrete units" in notes[0]
    (tmp_path / "data" / "eval" / "phones.ctm").unlink()
    assert code_metrics(**args, notes=notes) is None and "no phone alignments" in notes[1]


def test_kmeans_has_one_home():
    """Soft-VC's k-means units and the metric suite's baseline cluster with the same library code."""
    import voiceswap.bin.kmeans_units as entry
    from voiceswap.features import kmeans

    assert entry.fit_kmeans is kmeans.fit_kmeans and entry.assign is kmeans.assign
    rng = np.random.default_rng(1)
    frames = np.concatenate([rng.normal(loc=c, scale=0.1, size=(50, 2)) for c in (0, 5, 10)]).astype(np.float32)
    centroids, _ = kmeans.fit_kmeans(kmeans.sample_frames([frames], 0, seed=0), 3, seed=0)
    train_labels, (test_labels,) = C.kmeans_baseline(frames, [frames[::7]], 3, seed=0)
    np.testing.assert_array_equal(train_labels, kmeans.assign(frames, centroids))
    np.testing.assert_array_equal(test_labels, train_labels[::7])
