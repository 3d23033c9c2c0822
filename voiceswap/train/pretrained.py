"""Loading a trained experiment for inference (unit dumps, conversion): models, config, speakers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from torch import nn

from voiceswap.data.dataset import read_spk2id
from voiceswap.train.checkpoint import find_latest_valid_checkpoint, load_checkpoint
from voiceswap.train.registry import Family, get_family

logger = logging.getLogger(__name__)

SPK2ID = "spk2id"


@dataclass
class TrainedExperiment:
    family: Family
    models: Dict[str, nn.Module]
    config: dict
    spk2id: Dict[str, int]
    checkpoint: Path
    step: int


def load_trained(model_dir: str | Path, which: str = "best") -> TrainedExperiment:
    """Models of ``model_dir`` in eval mode, with EMA weights when the run kept them.

    ``which``: ``best`` (the best validation checkpoint, falling back to the newest) or ``latest``.
    Families must be registered (``import voiceswap.families``) before calling this.
    """
    model_dir = Path(model_dir)
    best = model_dir / "checkpoints" / "best.pt"
    if which == "best" and best.exists():
        path, state = best, load_checkpoint(best)
    else:
        found = find_latest_valid_checkpoint(model_dir)
        if found is None:
            raise FileNotFoundError(f"{model_dir}/checkpoints holds no valid checkpoint: train it first (stage 4)")
        path, state = found
    config = state["config"]
    spk2id_path = model_dir / SPK2ID
    if not spk2id_path.is_file():
        raise FileNotFoundError(f"{spk2id_path} is missing: it is written by train.py next to the checkpoints")
    spk2id = read_spk2id(spk2id_path)
    family = get_family(config["family"])()
    models = family.build(config, num_speakers=len(spk2id))
    for name, model in models.items():
        ema = state.get("ema", {}).get(name)
        model.load_state_dict(ema["shadow"] if ema else state["models"][name])
        model.eval()
    family.models = models
    logger.info("loaded %s (step %d%s)", path, state["step"], ", EMA weights" if state.get("ema") else "")
    return TrainedExperiment(family, models, config, spk2id, path.resolve(), int(state["step"]))


def load_vocoder(name: str, feature_config: Dict[str, object], vocoder_dir: Optional[str | Path] = None) -> nn.Module:
    """The recipe's vocoder ``name`` for features ``feature_config`` (a feats yaml as a dict).

    A trained vocoder (hifigan) comes from the best (else newest) checkpoint of ``vocoder_dir``,
    with EMA generator weights when training kept them; its config's ``features`` section must
    describe the same log-mel as ``feature_config``.
    """
    from voiceswap.nets.vocoders import TRAINED_VOCODERS, build_vocoder

    if name not in TRAINED_VOCODERS:
        return build_vocoder(name, feature_config)
    if not vocoder_dir:
        raise FileNotFoundError(f"the {name} vocoder is trained in stage 7: give its dir (--vocoder-dir)")
    vocoder_dir = Path(vocoder_dir)
    best = vocoder_dir / "checkpoints" / "best.pt"
    if best.exists():
        path, state = best, load_checkpoint(best)
    else:
        found = find_latest_valid_checkpoint(vocoder_dir)
        if found is None:
            raise FileNotFoundError(f"{vocoder_dir}/checkpoints holds no valid checkpoint: train the {name} vocoder "
                                    "first (stage 7)")
        path, state = found
    config = state["config"]
    if config.get("family") != name:
        raise ValueError(f"{path} is a {config.get('family')!r} model, not a {name} vocoder")
    trained = config["features"]
    differences = [f"{key} {trained[key]!r} vs {feature_config[key]!r}" for key in
                   ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "log_floor")
                   if key in trained and key in feature_config and float(trained[key]) != float(feature_config[key])]
    if differences:
        raise ValueError(f"the {name} vocoder of {vocoder_dir} was trained on other features than these "
                         f"({'; '.join(differences)}): train one on these features (stage 7, another --vocoder-dir)")
    ema = state.get("ema", {}).get("generator")
    weights = ema["shadow"] if ema else state["models"]["generator"]
    logger.info("vocoder %s from %s (step %d%s)", name, path, state["step"], ", EMA weights" if ema else "")
    return build_vocoder(name, feature_config, generator_config=config["model"]["generator"], state_dict=weights)
