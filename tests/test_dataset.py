"""The feature dataset: crops aligned across streams, per-epoch randomness, padding masks, buckets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voiceswap.data.ark import ArkWriter
from voiceswap.data.dataset import BucketBatchSampler, FeatsDataset, collate_padded, make_spk2id


def write_streams(tmp_path, lengths):
    rng = np.random.default_rng(0)
    utt2spk = {f"spk{i % 2}-u{i:02d}": f"spk{i % 2}" for i in range(len(lengths))}
    scps = {}
    for name, dim in (("input", 3), ("target", 5)):
        with ArkWriter(tmp_path / f"{name}.ark", tmp_path / f"{name}.scp") as writer:
            for (utt, _), frames in zip(sorted(utt2spk.items()), lengths):
                # Column 0 holds the frame index, so a crop's offset can be read back.
                matrix = rng.standard_normal((frames, dim)).astype(np.float32)
                matrix[:, 0] = np.arange(frames)
                writer[utt] = matrix
        scps[name] = tmp_path / f"{name}.scp"
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    return scps, utt2spk


def test_crops_are_aligned_and_change_with_epoch(tmp_path):
    scps, utt2spk = write_streams(tmp_path, [100, 120, 90, 200])
    dataset = FeatsDataset(scps, tmp_path / "utt2spk", make_spk2id(utt2spk), crop_frames=32, seed=1)
    offsets = []
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        item = dataset[3]
        assert item["input"].shape == (32, 3) and item["target"].shape == (32, 5)
        torch.testing.assert_close(item["input"][:, 0], item["target"][:, 0])
        offsets.append(int(item["input"][0, 0]))
    assert offsets[0] != offsets[1]
    dataset.set_epoch(0)
    assert int(dataset[3]["input"][0, 0]) == offsets[0]  # a function of (seed, epoch), not of a global RNG


def test_collate_pads_and_masks(tmp_path):
    scps, utt2spk = write_streams(tmp_path, [10, 7])
    dataset = FeatsDataset(scps, tmp_path / "utt2spk", make_spk2id(utt2spk))
    batch = collate_padded([dataset[0], dataset[1]])
    assert batch["input"].shape == (2, 10, 3)
    assert batch["mask"].tolist()[1] == [True] * 7 + [False] * 3
    assert torch.all(batch["target"][1, 7:] == 0)
    assert batch["speakers"].tolist() == [0, 1]


def test_bucket_sampler_groups_lengths_and_reshuffles():
    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    sampler = BucketBatchSampler(lengths, batch_size=2, shuffle=True, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(8))
    for batch in batches:
        assert max(lengths[i] for i in batch) - min(lengths[i] for i in batch) <= 2
    orders = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        orders.add(tuple(map(tuple, sampler)))
    assert len(orders) > 1
    # Two processes with batch 1 see the batches of one process with batch 2, split in halves.
    single = BucketBatchSampler(lengths, 2, seed=3)
    halves = [BucketBatchSampler(lengths, 1, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for epoch in range(3):
        for sampler in (single, *halves):
            sampler.set_epoch(epoch)
        assert [a + b for a, b in zip(*halves)] == list(single)


def test_accumulation_micro_batches_split_the_large_batch():
    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    large = list(BucketBatchSampler(lengths, 4, seed=3))
    micro = list(BucketBatchSampler(lengths, 2, seed=3, accum_steps=2))
    assert [micro[i] + micro[i + 1] for i in range(0, len(micro), 2)] == large


def test_bucket_sampler_drops_incomplete_global_batch_in_training():
    sampler = BucketBatchSampler(list(range(7)), 2, drop_last=True, num_replicas=2, rank=1)
    assert len(sampler) == 1 and len(list(sampler)) == 1


def test_validation_leaves_out_unseen_dev_speakers_and_needs_one_it_knows(tmp_path, caplog):
    from voiceswap.data.kaldi_dir import DataDirError
    from voiceswap.data.loaders import known_valid_speakers

    utt2spk = tmp_path / "utt2spk"
    utt2spk.write_text("a-1 a\nb-1 b\nz-1 z\n")
    assert known_valid_speakers(str(utt2spk), {"a": 0, "b": 1, "z": 2}, None) is None  # all known: no filter
    with caplog.at_level("INFO"):
        assert known_valid_speakers(str(utt2spk), {"a": 0, "c": 1}, None) == ["a"]
    assert "2 speaker(s) of" in caplog.text and "left out (b z)" in caplog.text
    assert known_valid_speakers(str(utt2spk), {"x": 0}, ["x"]) == ["x"]  # data.speakers decides
    with pytest.raises(DataDirError, match="no speaker of .* is a train speaker"):
        known_valid_speakers(str(utt2spk), {"x": 0}, None)
