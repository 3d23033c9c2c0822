"""Train/valid DataLoaders of a family config over the recipe's normalised features.

A config's ``data`` section names the feature streams (``input_feats``, ``target_feats``), the crop
length, the per-process batch size and the loader workers. Streams are resolved by
:func:`voiceswap.data.streams.stream_scp` against a :class:`~voiceswap.data.streams.StreamLayout`
(normalised features of stage 3, or units and content features that the config's ``streams:``
section declares); ``stream_config`` is the config that declares them (the whole recipe config
when a section such as Soft-VC's ``content`` is trained). Streams may have different frame rates
(see :class:`~voiceswap.data.dataset.FeatsDataset`). bin/train.py and the benchmarks build their
loaders here, so both see the same data.

Optional ``data`` keys of feature loaders: ``speakers`` (a list of speaker names: train on these
speakers only, e.g. a one-to-one pair of a larger corpus; their ids are their byte order;
a name not in the train set is an error) and ``min_windows_per_speaker`` (warn, once, about every
speaker with fewer train utterances of at least ``crop_frames`` frames).

``data.cond_feats`` (optional): a list of further streams a model is conditioned on, e.g.
``[pitch]``; each is read as batch key ``cond_<name>`` and cropped at the same instant as the input
and target (its frame rate may differ: it then gets its own ``cond_<name>_lengths`` and
``cond_<name>_mask``, see :func:`~voiceswap.data.dataset.collate_padded`).

``data.reference_feats`` and ``data.reference_frames`` (any-to-any models, with
``model.speaker_conditioning: reference``; voiceswap/nets/speaker.py): every item also gets batch key
``reference``, a crop of another utterance of its speaker from that stream (``reference_mask`` when
its lengths differ from the input's).

``data.dataset: mel_audio_segments`` (vocoders) builds aligned (log-mel, waveform) segments
instead: stream ``data.feats`` (the features *before* normalisation, e.g. ``raw/logmel80``) with
``<data_dir>/<set>/wav.scp``; the config's ``features`` section must match the features'
``feats_config.yaml``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from torch.utils.data import DataLoader, DistributedSampler

from voiceswap.data.dataset import BucketBatchSampler, FeatsDataset, collate_padded, make_spk2id, warn_few_windows
from voiceswap.data.kaldi_dir import DataDirError, read_kaldi_map
from voiceswap.data.segments import MelAudioSegmentDataset, check_mel_config, collate_segments
from voiceswap.data.streams import StreamLayout, stream_scp

logger = logging.getLogger(__name__)


class DimensionMismatch(ValueError):
    """A model's configured in/out dims differ from the features it is given."""


def cond_feats(data: Mapping) -> List[str]:
    """The names of ``data.cond_feats`` (none: ``[]``), checked."""
    names = data.get("cond_feats") or []
    if isinstance(names, str) or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"data.cond_feats must be a list of stream names (e.g. [pitch]), got {names!r}")
    return list(names)


def _stream_scps(config: Mapping, stream_config: Mapping, subset: str, layout: StreamLayout) -> Dict[str, str]:
    data = config["data"]
    scps = {"input": str(stream_scp(stream_config, data["input_feats"], subset, layout)),
            "target": str(stream_scp(stream_config, data["target_feats"], subset, layout))}
    for name in cond_feats(data):  # conditioning streams (pitch): batch keys cond_<name>
        scps[f"cond_{name}"] = str(stream_scp(stream_config, name, subset, layout))
    return scps


def reference_feats(config: Mapping) -> Optional[str]:
    """The stream of ``data.reference_feats`` for a model with ``model.speaker_conditioning: reference``
    (None for a model with a speaker table); the two keys must agree."""
    name = config["data"].get("reference_feats")
    conditioning = (config.get("model") or {}).get("speaker_conditioning", "table")
    if conditioning == "reference" and not name:
        raise ValueError("model.speaker_conditioning is reference but data.reference_feats is not set: name the "
                         "features the reference encoder reads, e.g. --set data.reference_feats=logmel80")
    if name and conditioning != "reference":
        raise ValueError(f"data.reference_feats is {name!r} but model.speaker_conditioning is {conditioning!r}: "
                         "references are read only by a model with --set model.speaker_conditioning=reference")
    return name or None


def check_dims(config: Mapping, dataset: FeatsDataset) -> None:
    """A model whose in/out dims differ from the features fails now, not at the first matmul."""
    item = dataset[0]
    checks = [("input", "in_dim", "input_feats"), ("target", "out_dim", "target_feats")]
    if "reference" in item:
        checks.append(("reference", "reference_dim", "reference_feats"))
    for stream, key, feats_key in checks:
        expected = config["model"].get(key)
        actual = item[stream].shape[1]
        if expected is not None and expected != actual:
            feat = config["data"][feats_key]
            raise DimensionMismatch(f"model.{key} is {expected} but the {feat} features have dim {actual}: "
                                    f"use --set model.{key}={actual}")


@dataclass
class Loaders:
    train: DataLoader
    valid: DataLoader
    spk2id: Dict[str, int]


def known_valid_speakers(utt2spk_path: str, spk2id: Mapping[str, int],
                         selected: Optional[Sequence[str]]) -> Optional[List[str]]:
    """The valid set's speakers a model with speaker table ``spk2id`` can reconstruct (None: all of them).

    A speaker-disjoint split's dev speakers are unseen in training: validation leaves them out (and says
    so) and uses the dev utterances of train speakers that stage 1 held out; with none, it is an error.
    """
    if selected is not None:
        return list(selected)
    speakers = set(read_kaldi_map(utt2spk_path).values())
    unseen = sorted(speakers - set(spk2id), key=str.encode)
    if not unseen:
        return None
    known = sorted(speakers & set(spk2id), key=str.encode)
    if not known:
        raise DataDirError(f"no speaker of {utt2spk_path} is a train speaker, so a model with a speaker table cannot "
                           "be validated on it; give the dev set held-out utterances of train speakers (the real "
                           "corpora's stage 1 does with its default --pair-targets seen)")
    logger.info("validation: %d speaker(s) of %s are unseen in training and left out (%s%s); %d are used",
                len(unseen), utt2spk_path, " ".join(unseen[:5]), " ..." if len(unseen) > 5 else "", len(known))
    return known


def build_loaders(config: Mapping, layout: StreamLayout, data_dir: str, train_set: str = "train",
                  valid_set: str = "dev", world_size: int = 1, rank: int = 0, pin_memory: bool = False,
                  stream_config: Optional[Mapping] = None) -> Loaders:
    """Loaders whose speaker ids come from the train set's utt2spk (sorted speaker names, or ``data.speakers``)."""
    data, seed = config["data"], config["train"]["seed"]
    stream_config = stream_config if stream_config is not None else config
    utt2spk_path = f"{data_dir}/{train_set}/utt2spk"
    selected = data.get("speakers")
    spk2id = make_spk2id(read_kaldi_map(utt2spk_path), selected, utt2spk_path)
    kind = data.get("dataset", "feats")
    if kind == "mel_audio_segments":
        return _segment_loaders(config, layout, data_dir, train_set, valid_set, spk2id, world_size, rank,
                                pin_memory, stream_config)
    if kind != "feats":
        raise ValueError(f"data.dataset is {kind!r}; use feats (feature streams) or mel_audio_segments (vocoders)")
    reference = reference_feats(config)

    def references(subset: str) -> Dict[str, Any]:
        if reference is None:
            return {}
        return {"reference_scp": stream_scp(stream_config, reference, subset, layout),
                "reference_frames": int(data.get("reference_frames") or 0)}

    train_data = FeatsDataset(_stream_scps(config, stream_config, train_set, layout), utt2spk_path, spk2id,
                              crop_frames=data["crop_frames"], seed=seed, speakers=selected, **references(train_set))
    # Validation reads whole utterances with the train set's frame ratios (a small set could round otherwise).
    valid_utt2spk = f"{data_dir}/{valid_set}/utt2spk"
    valid_data = FeatsDataset(_stream_scps(config, stream_config, valid_set, layout), valid_utt2spk,
                              spk2id, frame_ratios=dict(train_data.frame_ratios),
                              speakers=known_valid_speakers(valid_utt2spk, spk2id, selected), **references(valid_set))
    check_dims(config, train_data)
    if data.get("min_windows_per_speaker") and rank == 0:
        warn_few_windows(train_data, spk2id, int(data["min_windows_per_speaker"]))
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


def _segment_loaders(config: Mapping, layout: StreamLayout, data_dir: str, train_set: str, valid_set: str,
                     spk2id: Dict[str, int], world_size: int, rank: int, pin_memory: bool,
                     stream_config: Mapping) -> Loaders:
    """Aligned (log-mel, waveform) segment loaders of a vocoder config (``data.feats``, ``features``)."""
    data, features, seed = config["data"], config["features"], config["train"]["seed"]

    def dataset(subset: str, max_utts: Optional[int] = None) -> MelAudioSegmentDataset:
        scp = str(stream_scp(stream_config, data["feats"], subset, layout))
        stored = Path(scp).parent / "feats_config.yaml"
        if not stored.is_file():
            raise DataDirError(f"{stored} not found: a vocoder trains on the features of stage 2 "
                               f"(e.g. data.feats: raw/logmel80), which keep their feats_config.yaml")
        check_mel_config(features, stored, "the vocoder config's features section")
        return MelAudioSegmentDataset(scp, f"{data_dir}/{subset}/wav.scp", f"{data_dir}/{subset}/utt2spk", spk2id,
                                      segment_frames=int(data["segment_frames"]),
                                      hop_length=int(features["hop_length"]),
                                      sample_rate=int(features["sample_rate"]),
                                      log_floor=float(features["log_floor"]), seed=seed, max_utts=max_utts)

    train_data = dataset(train_set)
    valid_data = dataset(valid_set, data.get("valid_max_utts"))
    first = train_data[0]
    if first["mel"].shape[1] != features["n_mels"]:
        raise DimensionMismatch(f"features.n_mels is {features['n_mels']} but the {data['feats']} features have dim "
                                f"{first['mel'].shape[1]}: use --set features.n_mels={first['mel'].shape[1]}")
    batch_size = int(data["batch_size"])
    if len(train_data) < batch_size * world_size:
        raise ValueError(f"{len(train_data)} train utterances make no batch of {batch_size} x {world_size} processes: "
                         "use a smaller data.batch_size")
    # DistributedSampler (also for one process) reshuffles per epoch through set_epoch(), which the
    # Trainer calls: the order is a function of (seed, epoch), as resuming needs.
    train_sampler = DistributedSampler(train_data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                       drop_last=True)
    train = DataLoader(train_data, batch_size=batch_size, sampler=train_sampler, drop_last=True,
                       collate_fn=collate_segments, num_workers=data["num_workers"], pin_memory=pin_memory)
    valid_sampler = DistributedSampler(valid_data, num_replicas=world_size, rank=rank, shuffle=False)
    valid = DataLoader(valid_data, batch_size=batch_size, sampler=valid_sampler, collate_fn=collate_segments,
                       num_workers=0)
    return Loaders(train, valid, spk2id)
