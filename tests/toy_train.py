#!/usr/bin/env python3
"""A tiny training run for tests/test_trainer.py: an MLP regression through the generic Trainer.

Every source of randomness the Trainer must restore on resume is used on purpose: a shuffling
DataLoader (RandomSampler seeded from the global torch RNG), dropout, and Python's and NumPy's
global RNGs in the loss; validation adds torch noise. The same command resumes from the newest
checkpoint in --outdir if there is one, so a test can SIGKILL it and simply run it again.

    python tests/toy_train.py --outdir exp/toy [--step-sleep 0.05] [--set train.max_steps=60 ...]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from typing import Any, Dict

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from voiceswap.train.config import apply_overrides
from voiceswap.train.registry import Family, get_family, register_family
from voiceswap.train.trainer import Trainer

CONFIG: Dict[str, Any] = {
    "model": {"hidden": 16, "dropout": 0.3},
    "optim": {"model": {"type": "adam", "lr": 0.01, "scheduler": {"type": "step", "step_size": 15, "gamma": 0.5}}},
    "data": {"num_train": 50, "num_valid": 16, "batch_size": 8},
    "train": {
        "max_steps": 60, "seed": 3, "log_interval": 3, "valid_interval": 15, "save_interval": 10,
        "keep_last": 2, "grad_clip": 1.0, "ema_decay": 0.9, "best_metric": "loss", "best_mode": "min",
        "init_from": None,
    },
}


@register_family("toy_mlp")
class ToyMLPFamily(Family):
    """Regression of a fixed random linear map with a dropout MLP."""

    step_sleep = 0.0  # seconds per train step, so a test has time to kill the run mid-way

    def build(self, config, num_speakers):
        hidden, dropout = config["model"]["hidden"], config["model"]["dropout"]
        return {"model": nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))}

    def train_step(self, batch, step):
        inputs, targets = batch
        # Python's and NumPy's global RNGs take part so that their restored states matter too.
        weight = 1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand())
        loss = weight * nn.functional.mse_loss(self.models["model"](inputs), targets)
        grad_norm = self.optimizer_step(loss, "model")
        if self.step_sleep:
            time.sleep(self.step_sleep)
        return {"loss": loss.item(), "grad_norm": grad_norm}

    def valid_step(self, batch):
        inputs, targets = batch
        noisy = inputs + 0.01 * torch.randn_like(inputs)
        return {"loss": nn.functional.mse_loss(self.models["model"](noisy), targets).item()}


def build_trainer(outdir: str, overrides=(), step_sleep: float = 0.0) -> Trainer:
    """The toy experiment's Trainer (not yet resumed): same data and model init in every process."""
    config = apply_overrides(CONFIG, list(overrides))
    seed = config["train"]["seed"]
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    data = config["data"]
    true_map = torch.randn(4, 1)
    train_x = torch.randn(data["num_train"], 4)
    valid_x = torch.randn(data["num_valid"], 4)
    train_set = TensorDataset(train_x, train_x @ true_map + 0.1 * torch.randn(data["num_train"], 1))
    valid_set = TensorDataset(valid_x, valid_x @ true_map)
    train_loader = DataLoader(train_set, batch_size=data["batch_size"], shuffle=True)
    valid_loader = DataLoader(valid_set, batch_size=data["batch_size"])

    family = get_family("toy_mlp")()
    family.step_sleep = step_sleep
    models = family.build(config, num_speakers=1)
    optimizers = family.optimizers(models, config)
    return Trainer(family, models, optimizers, family.schedulers(optimizers, config),
                   train_loader, valid_loader, config, outdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--step-sleep", type=float, default=0.0, help="seconds to sleep per step")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same reduction order in every run
    trainer = build_trainer(args.outdir, args.overrides, args.step_sleep)
    trainer.resume()
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
