"""Datasets over Kaldi feature scps: random crops, speaker ids, padding masks, bucketing.

Randomness (crop offsets, batch order) is a function of ``(seed, epoch, ...)`` rather than of a
global RNG, so a run resumed at an epoch boundary sees exactly the batches an uninterrupted run
would, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Collection, Dict, Iterator, List, Mapping, Optional, Sequence

import kaldiio
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map

logger = logging.getLogger(__name__)


def read_spk2id(path: str | Path) -> Dict[str, int]:
    """``spk id`` lines, as saved beside a model so conversion uses the training ids."""
    return {spk: int(index) for spk, index in read_kaldi_map(path).items()}


def make_spk2id(utt2spk: Mapping[str, str], speakers: Optional[Sequence[str]] = None,
                where: str = "utt2spk") -> Dict[str, int]:
    """Speaker ids in byte order of the names: every speaker of ``utt2spk``, or only ``speakers``.

    A name in ``speakers`` that ``utt2spk`` (``where``) does not have is a :class:`DataDirError`
    listing the ones it has.
    """
    present = set(utt2spk.values())
    if speakers is None:
        return {spk: index for index, spk in enumerate(sorted(present, key=str.encode))}
    if isinstance(speakers, str) or not all(isinstance(spk, str) for spk in speakers) or not speakers:
        raise DataDirError(f"data.speakers must be a list of speaker names (e.g. [spk004, spk007]), got {speakers!r}")
    unknown = [spk for spk in speakers if spk not in present]
    if unknown:
        raise DataDirError(f"data.speakers names {', '.join(map(repr, unknown))}, not a speaker of {where}; "
                           f"its speakers are: {' '.join(sorted(present, key=str.encode))}")
    return {spk: index for index, spk in enumerate(sorted(set(speakers), key=str.encode))}


def warn_few_windows(dataset: "FeatsDataset", spk2id: Mapping[str, int], minimum: int) -> Dict[str, int]:
    """One warning naming every speaker with fewer than ``minimum`` utterances of a full crop; those counts.

    A crop longer than the utterance is the whole utterance, padded in the batch: a model that
    learns per speaker (VAE-GAN generators and discriminators) sees little of such a speaker.
    """
    if dataset.crop_frames is None:
        return {}
    ratio = dataset.frame_ratios[dataset.stream_names[0]]
    needed = dataset.crop_frames // dataset.max_ratio * ratio  # the crop in frames of the first stream
    counts = {spk: 0 for spk in spk2id}
    names = {index: spk for spk, index in spk2id.items()}
    for speaker, frames in zip(dataset.speakers, dataset.num_frames):
        counts[names[speaker]] += frames >= needed
    few = {spk: count for spk, count in counts.items() if count < minimum}
    if few:
        logger.warning("speaker(s) %s: fewer than %d training utterances of at least %d frames (data.crop_frames), so "
                       "their crops are short and padded and a per-speaker model sees little of them; add data, lower "
                       "data.crop_frames, or leave them out (data.speakers)",
                       ", ".join(f"{spk} ({count})" for spk, count in sorted(few.items())),
                       minimum, dataset.crop_frames)
    return few


class FeatsDataset(Dataset):
    """Utterances present in every given feats.scp, with their speaker id.

    ``streams`` maps a name (e.g. ``"input"``, ``"target"``) to a feats.scp. Streams may have
    different frame rates that are integer multiples of the slowest one (e.g. 50 Hz units and
    100 Hz mels): ``frame_ratios`` gives each stream's rate relative to the slowest (``{"input": 1,
    "target": 2}``); None infers it from the total frame counts of the set (equal counts: ratio 1
    everywhere, the common case of features that share hop and padding). The streams of one
    utterance must cover the same time to within one frame of the slowest stream, and crops are
    aligned in time: ``crop_frames`` counts frames of the fastest stream (keep it a multiple of the
    largest ratio); stream ``s`` gets ``crop_frames * ratio_s / max_ratio`` frames from the same
    instant. Items are dicts of ``utt``, ``speaker`` (int) and one ``(frames, dim)`` float tensor
    per stream (Kaldi vectors, e.g. unit ids, become ``(frames, 1)`` columns). ``speakers``: keep
    only the utterances of these speakers (None: all, and every one must be in ``spk2id``).

    ``reference_scp`` (any-to-any models, ``data.reference_feats``): each item also gets ``reference``,
    a crop of ``reference_frames`` frames (whole if shorter) of *another* utterance of its speaker from
    that feats.scp (the item's own only when the speaker has no other), drawn anew every epoch; the
    model learns its speaker from it and cannot copy the item's words.
    """

    def __init__(
        self,
        streams: Mapping[str, str | Path],
        utt2spk_path: str | Path,
        spk2id: Mapping[str, int],
        crop_frames: Optional[int] = None,
        seed: int = 0,
        frame_ratios: Optional[Mapping[str, int]] = None,
        speakers: Optional[Collection[str]] = None,
        reference_scp: Optional[str | Path] = None,
        reference_frames: int = 0,
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
        if speakers is not None:  # a selection of the set's speakers (data.speakers); the others are left out
            selected = set(speakers)
            self.utts = [u for u in self.utts if utt2spk[u] in selected]
        if not self.utts:
            raise DataDirError(f"no utterance is in every one of {list(self.scp_paths.values())} and {utt2spk_path}")
        unknown = sorted({utt2spk[u] for u in self.utts} - set(spk2id))
        if unknown:
            raise DataDirError(
                f"speaker(s) {unknown[:5]} of {utt2spk_path} are not in the model's speaker table; "
                "a model can only produce speakers it was trained on"
            )
        self.speakers = [spk2id[utt2spk[u]] for u in self.utts]
        self.stream_frames = {name: self._read_num_frames(name) for name in self.stream_names}
        self.num_frames = self.stream_frames[self.stream_names[0]]
        self.frame_ratios = dict(frame_ratios) if frame_ratios is not None else self._infer_ratios()
        missing = set(self.stream_names) - set(self.frame_ratios)
        if missing:
            raise ValueError(f"frame_ratios {self.frame_ratios} has no ratio for stream(s) {sorted(missing)}")
        self.max_ratio = max(self.frame_ratios.values())
        self.crop_frames = crop_frames
        self.seed = seed
        self.epoch = 0
        self._loaders: Optional[Dict[str, Mapping]] = None
        self.reference_scp = None if reference_scp is None else str(reference_scp)
        self.reference_frames = int(reference_frames)
        self._reference_utts: Dict[int, List[str]] = {}
        self._reference_loader: Optional[Mapping] = None
        if self.reference_scp is not None:
            if not Path(self.reference_scp).is_file():
                raise DataDirError(f"{self.reference_scp}: feats.scp of the reference stream (data.reference_feats) "
                                   "not found; run stages 2-3 first")
            if self.reference_frames < 1:
                raise ValueError(f"data.reference_frames must be a positive number of frames, got {reference_frames}")
            with_reference = set(read_kaldi_map(self.reference_scp))
            for utt, speaker in zip(self.utts, self.speakers):
                if utt in with_reference:
                    self._reference_utts.setdefault(speaker, []).append(utt)
            missing = sorted({utt2spk[u] for u, s in zip(self.utts, self.speakers) if s not in self._reference_utts})
            if missing:
                raise DataDirError(f"speaker(s) {missing[:5]} have no utterance in {self.reference_scp}, so no "
                                   "reference: re-run stages 2-3")
            alone = sorted(utt2spk[utts[0]] for utts in self._reference_utts.values() if len(utts) == 1)
            if alone:
                logger.warning("speaker(s) %s have one utterance in %s: it is its own reference (the words can leak "
                               "into the speaker vector)", " ".join(alone[:5]), self.reference_scp)

    def _read_num_frames(self, name: str) -> List[int]:
        scp = Path(self.scp_paths[name])
        utt2num_frames = scp.parent / "utt2num_frames"
        if utt2num_frames.is_file():
            table = read_kaldi_map(utt2num_frames)
            if all(u in table for u in self.utts):
                return [int(table[u]) for u in self.utts]
        loader = kaldiio.load_scp(str(scp))
        return [loader[u].shape[0] for u in self.utts]

    def _infer_ratios(self) -> Dict[str, int]:
        """Each stream's frame rate relative to the slowest, from the set's total frames (integers only)."""
        totals = {name: sum(frames) for name, frames in self.stream_frames.items()}
        slowest = min(totals.values())
        ratios = {}
        for name, total in totals.items():
            ratio = total / max(slowest, 1)
            rounded = max(1, round(ratio))
            # Rounding at utterance ends (at most a frame of the slowest stream each) keeps the ratio
            # within a few per cent of an integer; anything else is not a pair of aligned streams.
            if abs(ratio - rounded) > 0.1 * rounded:
                raise DataDirError(f"stream '{name}' ({self.scp_paths[name]}) has {ratio:.2f} times the frames of the "
                                   "slowest stream: frame rates must be integer multiples of each other")
            ratios[name] = rounded
        return ratios

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def _crop_offset(self, index: int, frames: int, crop: int) -> int:
        """Offset in frames of the slowest stream (rate 1); ``frames`` and ``crop`` count those too."""
        if self.crop_frames is None or frames <= crop:
            return 0
        key = f"{self.seed}:{self.epoch}:{self.utts[index]}".encode()
        return zlib.crc32(key) % (frames - crop + 1)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if self._loaders is None:  # opened lazily so every DataLoader worker has its own handles
            self._loaders = {name: kaldiio.load_scp(path) for name, path in self.scp_paths.items()}
        utt = self.utts[index]
        matrices = {name: self._loaders[name][utt] for name in self.stream_names}
        # Duration of every stream in frames of the slowest one; they must agree to within a frame.
        durations = {name: m.shape[0] / self.frame_ratios[name] for name, m in matrices.items()}
        if max(durations.values()) - min(durations.values()) >= 1:
            counts = sorted({m.shape[0] for m in matrices.values()})
            raise DataDirError(f"utterance '{utt}': streams have different frame counts {counts}"
                               + (f" for frame ratios {self.frame_ratios}" if self.max_ratio > 1 else ""))
        base_frames = min(m.shape[0] // self.frame_ratios[name] for name, m in matrices.items())
        crop = None if self.crop_frames is None else max(1, self.crop_frames // self.max_ratio)
        offset = self._crop_offset(index, base_frames, crop) if crop is not None else 0
        item: Dict[str, object] = {"utt": utt, "speaker": self.speakers[index]}
        for name, matrix in matrices.items():
            ratio = self.frame_ratios[name]
            end = None if crop is None else (offset + crop) * ratio
            cropped = np.array(matrix[offset * ratio : end], dtype=np.float32)  # a writable copy
            item[name] = torch.from_numpy(cropped.reshape(len(cropped), -1))  # vectors -> (frames, 1)
        if self.reference_scp is not None:
            item["reference"] = self._reference(index)
        return item

    def _reference(self, index: int) -> torch.Tensor:
        """A crop of another utterance of item ``index``'s speaker (``(frames, dim)``), the same for a given epoch."""
        if self._reference_loader is None:
            self._reference_loader = kaldiio.load_scp(self.reference_scp)
        utt = self.utts[index]
        candidates = [u for u in self._reference_utts[self.speakers[index]] if u != utt] or [utt]
        key = f"{self.seed}:{self.epoch}:{utt}:reference"
        chosen = candidates[zlib.crc32(key.encode()) % len(candidates)]
        matrix = self._reference_loader[chosen]
        frames = matrix.shape[0]
        offset = zlib.crc32(f"{key}:{chosen}".encode()) % max(1, frames - self.reference_frames + 1)
        cropped = np.array(matrix[offset : offset + self.reference_frames], dtype=np.float32)
        return torch.from_numpy(cropped.reshape(len(cropped), -1))


def collate_padded(items: Sequence[Dict[str, object]]) -> Dict[str, object]:
    """Pad every stream to its longest item; ``mask`` is True on real frames, ``(B, T)``.

    ``lengths`` and ``mask`` are those of the first stream. A stream whose lengths differ from the
    first's (another frame rate) is padded to its own longest item and gets its own
    ``<name>_lengths`` and ``<name>_mask``.
    """
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
        stream_lengths = torch.tensor([item[name].shape[0] for item in items])
        stream_max = int(stream_lengths.max())
        if not torch.equal(stream_lengths, lengths):
            batch[f"{name}_lengths"] = stream_lengths
            batch[f"{name}_mask"] = torch.arange(stream_max)[None, :] < stream_lengths[:, None]
        dim = items[0][name].shape[1]
        padded = torch.zeros(len(items), stream_max, dim)
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
