"""Datasets over Kaldi feature scps: random crops, speaker ids, padding masks, bucketing.

Randomness (crop offsets, batch order) is a function of ``(seed, epoch, ...)`` rather than of a
global RNG, so a run resumed at an epoch boundary sees exactly the batches an uninterrupted run
would, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import kaldiio
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map


def read_spk2id(path: str | Path) -> Dict[str, int]:
    """``spk id`` lines, as saved beside a model so conversion uses the training ids."""
    return {spk: int(index) for spk, index in read_kaldi_map(path).items()}


def make_spk2id(utt2spk: Mapping[str, str]) -> Dict[str, int]:
    return {spk: index for index, spk in enumerate(sorted(set(utt2spk.values()), key=str.encode))}


class FeatsDataset(Dataset):
    """Utterances present in every given feats.scp, with their speaker id.

    ``streams`` maps a name (e.g. ``"input"``, ``"target"``) to a feats.scp; the streams of one
    utterance must have the same number of frames (our features share hop and padding), and are
    cropped at the same offset. Items are dicts of ``utt``, ``speaker`` (int) and one
    ``(frames, dim)`` float tensor per stream.
    """

    def __init__(
        self,
        streams: Mapping[str, str | Path],
        utt2spk_path: str | Path,
        spk2id: Mapping[str, int],
        crop_frames: Optional[int] = None,
        seed: int = 0,
    ):
        self.stream_names = list(streams)
        self.scp_paths = {name: str(path) for name, path in streams.items()}
        for name, path in self.scp_paths.items():
            if not Path(path).is_file():
                raise DataDirError(f"{path}: feats.scp of stream '{name}' not found; run stages 2-3 first")
        utt2spk = read_kaldi_map(utt2spk_path)
        keys = [set(read_kaldi_map(path)) for path in self.scp_paths.values()]
        common = set.intersection(*keys)
        self.utts = sorted(common & set(utt2spk), key=str.encode)
        if not self.utts:
            raise DataDirError(f"no utterance is in every one of {list(self.scp_paths.values())} and {utt2spk_path}")
        unknown = sorted({utt2spk[u] for u in self.utts} - set(spk2id))
        if unknown:
            raise DataDirError(
                f"speaker(s) {unknown[:5]} of {utt2spk_path} are not in the model's speaker table; "
                "a model can only produce speakers it was trained on"
            )
        self.speakers = [spk2id[utt2spk[u]] for u in self.utts]
        self.num_frames = self._read_num_frames()
        self.crop_frames = crop_frames
        self.seed = seed
        self.epoch = 0
        self._loaders: Optional[Dict[str, Mapping]] = None

    def _read_num_frames(self) -> List[int]:
        first = Path(self.scp_paths[self.stream_names[0]])
        utt2num_frames = first.parent / "utt2num_frames"
        if utt2num_frames.is_file():
            table = read_kaldi_map(utt2num_frames)
            return [int(table[u]) for u in self.utts]
        loader = kaldiio.load_scp(str(first))
        return [loader[u].shape[0] for u in self.utts]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def _crop_offset(self, index: int, frames: int) -> int:
        if self.crop_frames is None or frames <= self.crop_frames:
            return 0
        key = f"{self.seed}:{self.epoch}:{self.utts[index]}".encode()
        return zlib.crc32(key) % (frames - self.crop_frames + 1)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if self._loaders is None:  # opened lazily so every DataLoader worker has its own handles
            self._loaders = {name: kaldiio.load_scp(path) for name, path in self.scp_paths.items()}
        utt = self.utts[index]
        matrices = {name: self._loaders[name][utt] for name in self.stream_names}
        frames = {m.shape[0] for m in matrices.values()}
        if len(frames) != 1:
            raise DataDirError(f"utterance '{utt}': streams have different frame counts {sorted(frames)}")
        offset = self._crop_offset(index, frames.pop())
        end = None if self.crop_frames is None else offset + self.crop_frames
        item: Dict[str, object] = {"utt": utt, "speaker": self.speakers[index]}
        for name, matrix in matrices.items():
            item[name] = torch.from_numpy(np.array(matrix[offset:end], dtype=np.float32))  # a writable copy
        return item


def collate_padded(items: Sequence[Dict[str, object]]) -> Dict[str, object]:
    """Pad every stream to the longest item; ``mask`` is True on real frames, ``(B, T)``."""
    stream_names = [k for k, v in items[0].items() if isinstance(v, torch.Tensor)]
    lengths = torch.tensor([items[i][stream_names[0]].shape[0] for i in range(len(items))])
    max_frames = int(lengths.max())
    batch: Dict[str, object] = {
        "utts": [item["utt"] for item in items],
        "speakers": torch.tensor([item["speaker"] for item in items], dtype=torch.long),
        "lengths": lengths,
        "mask": torch.arange(max_frames)[None, :] < lengths[:, None],
    }
    for name in stream_names:
        dim = items[0][name].shape[1]
        padded = torch.zeros(len(items), max_frames, dim)
        for i, item in enumerate(items):
            padded[i, : item[name].shape[0]] = item[name]
        batch[name] = padded
    return batch


class BucketBatchSampler(Sampler[List[int]]):
    """Batches of utterances of similar length (little padding), in a (seed, epoch) order.

    Indices are sorted by length and cut into global batches of
    ``batch_size x num_replicas x accum_steps``, whose order is shuffled each epoch
    (``shuffle=False`` for validation keeps it fixed). Process ``rank`` takes its slice of every
    global batch and yields it as ``accum_steps`` micro-batches of ``batch_size``. So N processes
    with batch B and A accumulation steps see exactly the data of one process with batch N x A x B,
    the rule behind "``data.batch_size`` is per process and micro-batch; the global batch is
    batch_size x world size x grad_accum_steps". In training (``drop_last``) an incomplete last
    global batch is dropped so every process runs the same number of steps, which
    DistributedDataParallel needs.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, num_replicas: int = 1, rank: int = 0, accum_steps: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        global_size = batch_size * num_replicas * accum_steps
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        self.batches = [order[i : i + global_size] for i in range(0, len(order), global_size)]
        if drop_last and self.batches and len(self.batches[-1]) < global_size:
            self.batches.pop()
        if not self.batches:
            raise ValueError(f"{len(lengths)} utterances make no batch of {batch_size} x {num_replicas} processes "
                             f"x {accum_steps} accumulation steps: use a smaller data.batch_size or fewer processes")
        self.batch_size = batch_size
        self.accum_steps = accum_steps
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[List[int]]:
        batches = list(self.batches)
        if self.shuffle:
            generator = np.random.default_rng([self.seed, self.epoch])
            batches = [batches[i] for i in generator.permutation(len(batches))]
        for batch in batches:
            yield from self._micro_batches(batch)

    def _micro_batches(self, global_batch: List[int]) -> List[List[int]]:
        share = self.batch_size * self.accum_steps
        mine = global_batch[self.rank * share : (self.rank + 1) * share]
        return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]

    def __len__(self) -> int:
        return sum(len(self._micro_batches(batch)) for batch in self.batches)
