"""Train/valid DataLoaders of a family config over the recipe's normalised features.

A config's ``data`` section names the feature streams (``input_feats``, ``target_feats``: dirs
under ``<feats_dir>/<feat>/<set>/feats.scp``), the crop length, the per-process batch size and the
loader workers. bin/train.py and the benchmarks build their loaders here, so both see the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping

from torch.utils.data import DataLoader

from voiceswap.data.dataset import BucketBatchSampler, FeatsDataset, collate_padded, make_spk2id
from voiceswap.data.kaldi_dir import read_kaldi_map


class DimensionMismatch(ValueError):
    """A model's configured in/out dims differ from the features it is given."""


def stream_scps(config: Mapping, feats_dir: str, subset: str) -> Dict[str, str]:
    data = config["data"]
    return {"input": f"{feats_dir}/{data['input_feats']}/{subset}/feats.scp",
            "target": f"{feats_dir}/{data['target_feats']}/{subset}/feats.scp"}


def check_dims(config: Mapping, dataset: FeatsDataset) -> None:
    """A model whose in/out dims differ from the features fails now, not at the first matmul."""
    item = dataset[0]
    for stream, key in (("input", "in_dim"), ("target", "out_dim")):
        expected = config["model"].get(key)
        actual = item[stream].shape[1]
        if expected is not None and expected != actual:
            feat = config["data"][f"{stream}_feats"]
            raise DimensionMismatch(f"model.{key} is {expected} but the {feat} features have dim {actual}: "
                                    f"use --set model.{key}={actual}")


@dataclass
class Loaders:
    train: DataLoader
    valid: DataLoader
    spk2id: Dict[str, int]


def build_loaders(config: Mapping, feats_dir: str, data_dir: str, train_set: str = "train",
                  valid_set: str = "dev", world_size: int = 1, rank: int = 0, pin_memory: bool = False) -> Loaders:
    """Loaders whose speaker ids come from the train set's utt2spk (sorted speaker names)."""
    data, seed = config["data"], config["train"]["seed"]
    utt2spk_path = f"{data_dir}/{train_set}/utt2spk"
    spk2id = make_spk2id(read_kaldi_map(utt2spk_path))
    train_data = FeatsDataset(stream_scps(config, feats_dir, train_set), utt2spk_path, spk2id,
                              crop_frames=data["crop_frames"], seed=seed)
    valid_data = FeatsDataset(stream_scps(config, feats_dir, valid_set), f"{data_dir}/{valid_set}/utt2spk", spk2id)
    check_dims(config, train_data)
    ranks = dict(num_replicas=world_size, rank=rank)
    train_sampler = BucketBatchSampler(train_data.num_frames, data["batch_size"], shuffle=True, seed=seed,
                                       drop_last=world_size > 1, accum_steps=config["train"].get("grad_accum_steps", 1),
                                       **ranks)
    train = DataLoader(train_data, batch_sampler=train_sampler, collate_fn=collate_padded,
                       num_workers=data["num_workers"], pin_memory=pin_memory)
    valid = DataLoader(valid_data, batch_sampler=BucketBatchSampler(valid_data.num_frames, data["batch_size"],
                                                                    shuffle=False, **ranks),
                       collate_fn=collate_padded, num_workers=0)
    return Loaders(train, valid, spk2id)
