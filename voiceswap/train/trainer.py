"""The generic training loop every model family reuses (in the spirit of ParallelWaveGAN's Trainer).

The Trainer knows nothing about any family: it asks the :class:`~voiceswap.train.registry.Family`
for one ``train_step`` per batch and ``valid_step`` per validation batch, and owns everything
around them: the step loop, LR schedulers, EMA, validation and the best checkpoint, logging
(``train.log``, ``metrics.jsonl``, TensorBoard, tqdm), checkpoints and resuming.

Config keys (section ``train``; missing ones take :data:`TRAIN_DEFAULTS`):

=================  =====================================================================
``max_steps``      stop after this many optimisation steps (one ``train_step`` = one step)
``seed``           base seed of the data order and of validation randomness
``log_interval``   log the mean of the train metrics every N steps
``valid_interval`` run validation every N steps (needs a valid loader)
``save_interval``  write ``checkpoints/step_<N>.pt`` every N steps (and always at the end)
``keep_last``      keep the newest K step checkpoints (0: all); best.pt's target is never deleted
``grad_clip``      clip each optimiser's gradients to this global L2 norm (null: no clipping)
``ema_decay``      keep an EMA of the weights with this decay, used for validation (null: off)
``best_metric``    validation metric that picks ``checkpoints/best.pt`` (e.g. ``loss``)
``best_mode``      ``min`` or ``max``: whether a lower or a higher ``best_metric`` is better;
                   ``last``: the newest validated step is best (GAN vocoders, whose mel loss is lowest
                   before the adversarial losses start to shape the audio)
``amp``            ``none``, ``bf16`` or ``fp16`` autocast on GPU (fp16 with a GradScaler); on CPU
                   the run falls back to fp32 and says so once
``grad_accum_steps`` micro-batches per optimisation step (the effective batch is
                   ``data.batch_size x world size x grad_accum_steps``)
``max_nonfinite_steps`` stop with a :class:`TrainerError` (naming the step and the batch's
                   utterances) when the losses are NaN or infinite for this many consecutive steps
=================  =====================================================================

Steps whose gradient norm is not finite (fp16 overflow, a bad batch) are skipped, counted and
logged as ``skipped_steps``. A NaN never passes for progress: a non-finite validation metric is
never the best (``best.pt`` never points at it), EMA weights are not updated from non-finite
weights, and a run whose losses stay non-finite stops instead of finishing "successfully".

Resume determinism (on CPU a killed-and-resumed run logs exactly the losses of an uninterrupted
one). We checkpoint mid-epoch and make the data order a function of ``(train.seed, epoch)``:

* At the start of every epoch the sampler's ``set_epoch(epoch)`` is called if it has one
  (DistributedSampler and friends), the loader's and sampler's ``torch.Generator`` (if any) are
  re-seeded from ``(seed, epoch)``, and the loader's iterator is created -- and its first batch
  fetched, which is when a ``RandomSampler`` draws its shuffle seed -- with the Python, NumPy and
  torch global RNGs temporarily seeded from ``(seed, epoch)`` and restored afterwards. So the
  shuffle (and the worker seeds) depend only on ``(seed, epoch)``, never on how much randomness
  the model used before.
* A checkpoint stores the step, the epoch, how many batches of that epoch were consumed, every
  RNG state and the partial log averages. Resuming re-opens that epoch the same way, draws and
  discards the consumed batches (also under the temporary RNG, costing data loading but no
  compute), then restores the global RNG states, so dropout, noise and later batches continue
  exactly where the killed run was.
* Validation runs under a temporary RNG seeded from ``train.seed``: it never perturbs training,
  and every validation sees the same noise, so its numbers are comparable across steps.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

import voiceswap
from voiceswap.data.atomic import atomic_open
from voiceswap.train.checkpoint import (
    capture_rng_state,
    find_latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint_for_inference,
    mark_best,
    restore_rng_state,
    save_checkpoint,
)
from voiceswap.train.config import ConfigError, check_config_compatible, write_resolved_config
from voiceswap.train.ema import ExponentialMovingAverage, unwrap
from voiceswap.train.registry import Family, OptimizerStep

logger = logging.getLogger(__name__)

#: Defaults of the ``train`` section keys the Trainer reads.
TRAIN_DEFAULTS: Dict[str, Any] = {
    "max_steps": 100000,
    "seed": 0,
    "log_interval": 100,
    "valid_interval": 1000,
    "save_interval": 1000,
    "keep_last": 5,
    "grad_clip": None,
    "ema_decay": None,
    "best_metric": "loss",
    "best_mode": "min",
    "amp": "none",
    "grad_accum_steps": 1,
    "max_nonfinite_steps": 20,
    # A checkpoint whose model weights a new run starts from (ESPnet's --init_param): fine-tuning, or
    # continuing a finished run under a new schedule. Optimisers, schedulers and step start afresh.
    "init_from": None,
}
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}

METRICS_FILE = "metrics.jsonl"
#: ``{"step": N, "seconds": S}``: wall seconds of training up to the last checkpoint, summed over resumed
#: runs (the comparison of families reads it: logs of a resumed job only time the last run).
TRAIN_TIME_FILE = "train_time.json"
LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"

_END = object()
_warned_no_tensorboard = False


class TrainerError(RuntimeError):
    """Training cannot go on as asked; the message says why and what to do."""


def with_train_defaults(config: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of ``config`` whose ``train`` section has every Trainer key, checked."""
    config = copy.deepcopy(dict(config))
    train = config.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"config section 'train' must be a mapping, got {train!r}")
    for key, value in TRAIN_DEFAULTS.items():
        train.setdefault(key, value)
    for key in ("max_steps", "log_interval", "valid_interval", "save_interval"):
        if not isinstance(train[key], int) or isinstance(train[key], bool) or train[key] <= 0:
            raise ConfigError(f"train.{key} must be a positive integer, got {train[key]!r}")
    if not isinstance(train["seed"], int) or isinstance(train["seed"], bool):
        raise ConfigError(f"train.seed must be an integer, got {train['seed']!r}")
    if not isinstance(train["keep_last"], int) or train["keep_last"] < 0:
        raise ConfigError(f"train.keep_last must be an integer >= 0 (0 keeps all), got {train['keep_last']!r}")
    if train["grad_clip"] is not None and not (isinstance(train["grad_clip"], (int, float)) and train["grad_clip"] > 0):
        raise ConfigError(f"train.grad_clip must be a positive number or null, got {train['grad_clip']!r}")
    decay = train["ema_decay"]
    if decay is not None and not (isinstance(decay, (int, float)) and 0 <= decay < 1):
        raise ConfigError(f"train.ema_decay must be in [0, 1) (e.g. 0.999) or null, got {decay!r}")
    limit = train["max_nonfinite_steps"]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ConfigError(f"train.max_nonfinite_steps must be a positive integer (e.g. 20), got {limit!r}")
    init_from = train["init_from"]
    if init_from is not None and not (isinstance(init_from, str) and init_from):
        raise ConfigError(f"train.init_from must be a checkpoint path or null, got {init_from!r}")
    if train["best_mode"] not in ("min", "max", "last"):
        raise ConfigError(f"train.best_mode must be 'min', 'max' or 'last', got {train['best_mode']!r}")
    return config


def _batch_utts(batch: Any) -> List[str]:
    """The utterance ids a collated batch carries (its ``utts`` list), or none."""
    utts = batch.get("utts") if isinstance(batch, Mapping) else None
    return [str(utt) for utt in utts] if isinstance(utts, (list, tuple)) else []


def _name_utts(utts: List[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{utt}'" for utt in utts[:limit])
    return shown + (f" and {len(utts) - limit} more" if len(utts) > limit else "")


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A seed in [0, 2**32) that is a stable function of ``(seed, purpose, index)`` (unlike ``hash``)."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed the Python, NumPy and torch global RNGs inside the block; restore them afterwards."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _unique(objects: Iterable[Any]) -> List[Any]:
    seen, unique = set(), []
    for obj in objects:
        if obj is not None and id(obj) not in seen:
            seen.add(id(obj))
            unique.append(obj)
    return unique


def _samplers_of(loader: Iterable) -> List[Any]:
    batch_sampler = getattr(loader, "batch_sampler", None)
    return _unique([getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)])


def _generators_of(loader: Iterable) -> List[torch.Generator]:
    candidates = [getattr(loader, "generator", None)] + [getattr(s, "generator", None) for s in _samplers_of(loader)]
    return [g for g in _unique(candidates) if isinstance(g, torch.Generator)]


class Trainer:
    """Owns the training loop of one experiment directory; see the module docstring.

    ``models``: a module or ``{name: module}`` (maybe DDP-wrapped); ``optimizers`` and
    ``schedulers``: ``{name: ...}`` as the family made them. Only ``rank`` 0 writes files and
    logs progress.
    """

    def __init__(
        self,
        family: Family,
        models: Union[nn.Module, Mapping[str, nn.Module]],
        optimizers: Mapping[str, torch.optim.Optimizer],
        schedulers: Optional[Mapping[str, Any]],
        train_loader: Iterable,
        valid_loader: Optional[Iterable],
        config: Mapping[str, Any],
        outdir: Union[str, os.PathLike],
        rank: int = 0,
        world_size: int = 1,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        self.family = family
        self.models: Dict[str, nn.Module] = {"model": models} if isinstance(models, nn.Module) else dict(models)
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers or {})
        for name, scheduler in self.schedulers.items():
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                raise TrainerError(f"scheduler {name!r} is ReduceLROnPlateau; the Trainer steps schedulers once per "
                                   "training step without a metric: use a per-step schedule")
        self.train_loader = train_loader
        self.valid_loader = valid_loader
        self.config = with_train_defaults(config)
        self.conf = self.config["train"]
        self.outdir = Path(outdir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        amp = self.conf["amp"]
        if amp not in AMP_DTYPES:
            raise TrainerError(f"train.amp is {amp!r}; use one of {', '.join(AMP_DTYPES)}")
        if amp != "none" and self.device.type != "cuda":
            if self.is_main:
                logger.info("train.amp=%s needs a GPU; training on %s in fp32", amp, self.device.type)
            amp = "none"
        self.amp_dtype = AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

        self.step = 0  # optimisation steps taken
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already consumed
        self.best_metric: Optional[float] = None
        self.best_step: Optional[int] = None
        self.resumed_from: Optional[Path] = None
        self.train_seconds = 0.0  # training wall time of the runs before this one (from the checkpoint)
        self._clock: Optional[float] = None  # time.monotonic() when this run started training
        self._log_sums: Dict[str, List[float]] = {}  # metric -> [sum, count] since the last log
        self._last_saved_step: Optional[int] = None
        # Consecutive optimisation steps with non-finite losses, and the first of them (step, utts).
        self._nonfinite_streak = 0
        self._nonfinite_first: Optional[tuple] = None
        self._step_nonfinite = False
        self._ema_frozen: set = set()  # models whose EMA skipped its last update (non-finite weights)
        self._last_valid_step: Optional[int] = None
        self._resumed_step: Optional[int] = None
        self._tb_writer = None
        self._log_handler: Optional[logging.Handler] = None

        self.ema: Dict[str, ExponentialMovingAverage] = {}
        if self.conf["ema_decay"] is not None:
            targets = family.ema_targets if family.ema_targets is not None else list(self.models)
            unknown = [name for name in targets if name not in self.models]
            if unknown:
                raise TrainerError(f"family {type(family).__name__}.ema_targets names {unknown}, but its models are "
                                   f"{list(self.models)}")
            self.ema = {name: ExponentialMovingAverage(self.models[name], self.conf["ema_decay"]) for name in targets}
        self.optimizer_step = OptimizerStep(self.optimizers, self.conf["grad_clip"],
                                            accum_steps=int(self.conf["grad_accum_steps"]), scaler=self.scaler)
        family.bind(self.models, self.optimizers, self.optimizer_step)

        if self.is_main:
            # Refuse to mix experiments before writing anything into the directory.
            check_config_compatible(self.config, self.outdir)
            self.outdir.mkdir(parents=True, exist_ok=True)
            write_resolved_config(self.config, self.outdir)
            # Everything this process logs (families included) also goes to outdir/train.log.
            self._log_handler = logging.FileHandler(self.outdir / LOG_FILE, mode="a")
            self._log_handler.setLevel(logging.INFO)
            self._log_handler.setFormatter(
                logging.Formatter("%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"))
            logging.getLogger().addHandler(self._log_handler)
            package_logger = logging.getLogger("voiceswap.train")
            if package_logger.getEffectiveLevel() > logging.INFO:
                package_logger.setLevel(logging.INFO)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed run needs; loadable with ``torch.load(weights_only=True)``."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "models": {name: unwrap(model).state_dict() for name, model in self.models.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in self.schedulers.items()},
            "ema": {name: ema.state_dict() for name, ema in self.ema.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "skipped_steps": self.optimizer_step.skipped_steps,
            "train_seconds": self.elapsed_train_seconds(),
            "rng": capture_rng_state(),
            "log_sums": {name: list(pair) for name, pair in self._log_sums.items()},
            "config": self.config,
            "voiceswap_version": voiceswap.__version__,
        }

    def elapsed_train_seconds(self) -> float:
        """Training wall time up to now, summed over this run and the runs it resumed."""
        return self.train_seconds + (time.monotonic() - self._clock if self._clock is not None else 0.0)

    def load_state_dict(self, state: Mapping[str, Any], source: str = "checkpoint") -> None:
        """Restore what :meth:`state_dict` returned (RNG states included)."""
        for part, ours in (("models", self.models), ("optimizers", self.optimizers),
                           ("schedulers", self.schedulers), ("ema", self.ema)):
            if set(state[part]) != set(ours):
                raise TrainerError(f"{source} has {part} {sorted(state[part])}, this run has {sorted(ours)}: "
                                   "it belongs to a different setup; use another --outdir")
        for name, model in self.models.items():
            unwrap(model).load_state_dict(state["models"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        for name, ema in self.ema.items():
            ema.load_state_dict(state["ema"][name])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        self._log_sums = {name: [float(s), int(c)] for name, (s, c) in state["log_sums"].items()}
        self.optimizer_step.skipped_steps = int(state.get("skipped_steps", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])

    def initialize_from(self, path: str | os.PathLike) -> None:
        """Load the model weights of another experiment's checkpoint into this fresh run (step 0).

        Every model of this run must be in it with the same shapes; EMA shadows start from the
        loaded weights. Nothing else is taken: optimisers, schedulers, step and RNG are this run's.
        """
        state = load_checkpoint_for_inference(path, advice="fix train.init_from (a checkpoint of a trained "
                                                            "experiment, e.g. exp/<tag>/checkpoints/step_N.pt)")
        missing = sorted(set(self.models) - set(state["models"]))
        if missing:
            raise TrainerError(f"train.init_from {path} has models {sorted(state['models'])}; this run also needs "
                               f"{missing}: initialise from an experiment of the same family and config")
        for name, model in self.models.items():
            try:
                unwrap(model).load_state_dict(state["models"][name])
            except RuntimeError as error:
                first = str(error).strip().splitlines()
                raise TrainerError(f"train.init_from {path}: model {name!r} does not fit this run's "
                                   f"({first[1].strip() if len(first) > 1 else first[0]}): the model configs "
                                   "differ") from None
        self.ema = {name: ExponentialMovingAverage(self.models[name], self.conf["ema_decay"]) for name in self.ema}
        if self.is_main:
            logger.info("initialised the models %s from %s (its step %s); training from step 0",
                        ", ".join(sorted(self.models)), path, state.get("step"))

    def resume(self) -> bool:
        """Restore the newest valid checkpoint in ``outdir``; False (and a log line) if there is none."""
        found = find_latest_valid_checkpoint(self.outdir)
        if found is None:
            if self.is_main:
                logger.info("no checkpoint in %s: training from step 0", self.outdir / "checkpoints")
            return False
        path, state = found
        check_config_compatible(self.config, self.outdir, previous=state["config"], source=str(path))
        self.load_state_dict(state, source=str(path))
        self.resumed_from = path
        self._last_saved_step = self._resumed_step = self.step
        if self.is_main:
            logger.info("resumed from %s at step %d (epoch %d, %d batches into it)",
                        path, self.step, self.epoch, self.batch_in_epoch)
            self._truncate_metrics_after(self.step)
        return True

    # ------------------------------------------------------------------ loop

    def train(self) -> None:
        """Train until ``train.max_steps``; validate, log and save on their intervals, save at the end."""
        max_steps = self.conf["max_steps"]
        try:
            existing = list_checkpoints(self.outdir)
            if self.resumed_from is None and existing:
                raise TrainerError(
                    f"{self.outdir} already has checkpoints (newest {existing[-1][1].name}) but this run did not "
                    "resume from any (all unreadable, or resume() not called): resume it (--resume) or use another "
                    "--outdir"
                )
            if self.is_main and self.resumed_from is None and (self.outdir / METRICS_FILE).exists():
                # A run killed before its first checkpoint left rows (and TensorBoard events) of the
                # steps this one redoes: drop them, as resume() does after the step it resumes from.
                self._resumed_step = self.step
                self._truncate_metrics_after(self.step)
            if self.step >= max_steps:
                logger.info("step %d >= train.max_steps %d: nothing to train", self.step, max_steps)
                self._save()
                return
            if self.is_main:
                logger.info("training from step %d to %d in %s", self.step, max_steps, self.outdir)
                self._log_batch_rule()
            self._clock = time.monotonic()
            self._set_train_mode(True)
            show_bar = self.is_main and sys.stderr.isatty()
            with self._progress_bar(show_bar) as bar:
                batches = self._open_epoch(skip=self.batch_in_epoch)
                while self.step < max_steps:
                    step_utts: List[str] = []  # utterances of this step's batches, to name in errors
                    self._step_nonfinite = False
                    for micro_step in range(self.optimizer_step.accum_steps):
                        batch = next(batches, _END)
                        while batch is _END:
                            self.epoch += 1
                            self.batch_in_epoch = 0
                            batches = self._open_epoch(skip=0)
                            batch = next(batches, _END)
                        self.batch_in_epoch += 1
                        step_utts.extend(_batch_utts(batch))
                        self.optimizer_step.micro_step = micro_step
                        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                            metrics = self.family.train_step(self._to_device(batch), self.step)
                        self._accumulate(metrics)
                    if self.scaler is not None:
                        self.scaler.update()
                    self.step += 1
                    self._step_schedulers()
                    for name, ema in self.ema.items():
                        if ema.update(self.models[name]):
                            self._ema_frozen.discard(name)
                        elif name not in self._ema_frozen:  # once per stretch of non-finite weights
                            self._ema_frozen.add(name)
                            if self.is_main:
                                logger.warning("step %d: %s has non-finite weights; its EMA weights are not updated "
                                               "until they are finite again", self.step, name)
                    self._check_nonfinite_streak(step_utts)
                    self._check_log_interval()
                    self._check_eval_interval()
                    self._check_save_interval()
                    if bar is not None:
                        bar.update(1)
            # The last step is always validated, so a run shorter than valid_interval still has
            # a best.pt for the stages that read it.
            self._check_eval_interval(force=True)
            self._save()
            if self.is_main:
                logger.info("finished at step %d; best %s %s at step %s", self.step, self.conf["best_metric"],
                            self.best_metric, self.best_step)
            # The other ranks wait while the main one saves: a rank that tore its process group down
            # while rank 0 was still writing aborted now and then ("terminate called without an
            # active exception", exit -6 under torchrun with gloo: measured about 1 run in 7).
            if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()
        finally:
            self.close()

    def _step_schedulers(self) -> None:
        """Step the LR schedulers of the optimisers that updated in this step, and only those.

        A schedule counts its optimiser's updates: a HiFi-GAN discriminator's LR must not decay
        during the generator-only warm-up, nor any LR on a step skipped for a non-finite gradient.
        """
        stepped = {id(self.optimizers[name]) for name in self.optimizer_step.pop_stepped()}
        for scheduler in self.schedulers.values():
            optimizer = getattr(scheduler, "optimizer", None)  # every torch LRScheduler has one
            if optimizer is None or id(optimizer) in stepped:
                scheduler.step()

    def close(self) -> None:
        """Close the TensorBoard writer and detach the train.log handler (train() does this itself)."""
        if self._tb_writer is not None:
            self._tb_writer.close()
            self._tb_writer = None
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    @contextlib.contextmanager
    def _progress_bar(self, show: bool) -> Iterator[Any]:
        if not show:  # a log file: the log_interval lines are the progress report
            yield None
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(), tqdm(total=self.conf["max_steps"], initial=self.step, desc="train",
                                           dynamic_ncols=True) as bar:
            yield bar

    def _open_epoch(self, skip: int) -> Iterator[Any]:
        """An iterator over this epoch's batches, after the first ``skip``; see the module docstring."""
        # Samplers reshuffle and datasets re-draw their random crops per epoch.
        for sampler in _samplers_of(self.train_loader) + _unique([getattr(self.train_loader, "dataset", None)]):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
        seed = derive_seed(self.conf["seed"], "data", self.epoch)
        for generator in _generators_of(self.train_loader):
            generator.manual_seed(seed)
        with isolated_rng(seed):
            iterator = iter(self.train_loader)
            pending = next(iterator, _END)
            for _ in range(skip):
                if pending is _END:
                    break
                pending = next(iterator, _END)
        if pending is _END:
            if skip == 0:
                raise TrainerError(f"the training loader yielded no batches in epoch {self.epoch}: is the train set "
                                   "empty or smaller than one batch with drop_last?")
            return iter(())
        return itertools.chain([pending], iterator)

    def _set_train_mode(self, mode: bool) -> None:
        for model in self.models.values():
            model.train(mode)

    def _to_device(self, batch: Any) -> Any:
        """Tensors of a batch (nested in dicts, lists, tuples) moved to the training device."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, Mapping):
            return {key: self._to_device(value) for key, value in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to_device(value) for value in batch)
        return batch

    def _log_batch_rule(self) -> None:
        accum = self.optimizer_step.accum_steps
        logger.info("world size %d x grad_accum_steps %d: each optimisation step sees %d batches of the "
                    "per-process data.batch_size (the global batch); amp %s on %s", self.world_size, accum,
                    self.world_size * accum, next(k for k, v in AMP_DTYPES.items() if v == self.amp_dtype),
                    self.device)

    def _accumulate(self, metrics: Mapping[str, Any]) -> None:
        for name, value in metrics.items():
            if value is None:  # e.g. the grad norm of a micro-batch that did not update
                continue
            value = float(value)
            if not math.isfinite(value):
                # self.step + 1: the step being taken, as metrics.jsonl and checkpoints number it.
                logger.warning("step %d: %s is %s", self.step + 1, name, value)
                # A non-finite gradient norm alone is a skipped step (fp16 overflow while the
                # GradScaler finds its scale); a non-finite loss means the model or data is broken.
                if not name.endswith("grad_norm"):
                    self._step_nonfinite = True
            pair = self._log_sums.setdefault(name, [0.0, 0])
            pair[0] += value
            pair[1] += 1

    def _check_nonfinite_streak(self, step_utts: List[str]) -> None:
        """Count consecutive steps with non-finite losses; stop at ``train.max_nonfinite_steps``."""
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every process must stop at the same step, or the others wait for it forever.
            flag = torch.tensor([float(self._step_nonfinite)])
            if torch.distributed.get_backend() == "nccl":
                flag = flag.cuda()
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self._step_nonfinite = bool(flag.item())
        if not self._step_nonfinite:
            self._nonfinite_streak, self._nonfinite_first = 0, None
            return
        self._nonfinite_streak += 1
        if self._nonfinite_streak == 1:
            self._nonfinite_first = (self.step, step_utts)
            if self.is_main and step_utts:
                logger.warning("step %d: non-finite loss on the batch of %s", self.step, _name_utts(step_utts))
        limit = self.conf["max_nonfinite_steps"]
        if self._nonfinite_streak >= limit:
            first_step, first_utts = self._nonfinite_first
            batch = f" (its batch: {_name_utts(first_utts)})" if first_utts else ""
            raise TrainerError(
                f"the losses were NaN or infinite for {limit} consecutive steps, from step {first_step}{batch} "
                f"to step {self.step}: check those utterances' features for NaN, or lower the learning rate; "
                f"train.max_nonfinite_steps={limit} sets how many such steps stop the run")

    def _learning_rates(self) -> Dict[str, float]:
        if len(self.optimizers) == 1:
            (opt,) = self.optimizers.values()
            return {"lr": float(opt.param_groups[0]["lr"])}
        return {f"lr/{name}": float(opt.param_groups[0]["lr"]) for name, opt in self.optimizers.items()}

    # ------------------------------------------------------------------ interval hooks

    def _check_log_interval(self) -> None:
        if self.step % self.conf["log_interval"]:
            return
        means = {name: total / count for name, (total, count) in self._log_sums.items()}
        means.update(self._learning_rates())
        if self.optimizer_step.skipped_steps:
            means["skipped_steps"] = float(self.optimizer_step.skipped_steps)
        self._log_sums = {}
        self._report("train", means)

    def _check_eval_interval(self, force: bool = False) -> None:
        if self.valid_loader is None or (self.step % self.conf["valid_interval"] and not force):
            return
        if self._last_valid_step == self.step:
            return
        self._last_valid_step = self.step
        means = self.validate()
        self._report("valid", means)
        name = self.conf["best_metric"]
        if name not in means:
            raise TrainerError(f"train.best_metric is {name!r} but valid_step returns {sorted(means)}: "
                               "set train.best_metric to one of them")
        value = means[name]
        mode = self.conf["best_mode"]
        if not math.isfinite(value):
            if self.is_main:
                logger.warning("valid %s is %s at step %d: not a best checkpoint (best.pt stays at step %s)",
                               name, value, self.step, self.best_step)
            return
        if self.best_metric is not None and not math.isfinite(self.best_metric):
            # A checkpoint of a run older than this guard may hold a NaN best, which no value beats.
            self.best_metric = None
        better = (mode == "last" or self.best_metric is None
                  or (value < self.best_metric if mode == "min" else value > self.best_metric))
        if better:
            self.best_metric, self.best_step = value, self.step
            self._save()
            if self.is_main:
                mark_best(self.outdir, self.step)
                logger.info("new best valid %s %.6g at step %d", name, value, self.step)

    def _check_save_interval(self) -> None:
        if self.step % self.conf["save_interval"] == 0:
            self._save()

    # ------------------------------------------------------------------ validation, saving, reporting

    def validate(self) -> Dict[str, float]:
        """Mean of ``valid_step`` over the valid loader, in eval mode with EMA weights (if any)."""
        sums: Dict[str, float] = {}
        counts: Dict[str, int] = {}
        self._set_train_mode(False)
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(isolated_rng(derive_seed(self.conf["seed"], "valid")))
                stack.enter_context(torch.no_grad())
                for name, ema in self.ema.items():
                    stack.enter_context(ema.swapped_in(self.models[name]))
                stack.enter_context(torch.autocast(self.device.type, dtype=self.amp_dtype,
                                                   enabled=self.amp_dtype is not None))
                for batch in self.valid_loader:
                    for key, value in self.family.valid_step(self._to_device(batch)).items():
                        sums[key] = sums.get(key, 0.0) + float(value)
                        counts[key] = counts.get(key, 0) + 1
        finally:
            self._set_train_mode(True)
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            keys = sorted(sums)
            totals = torch.tensor([[sums[k], counts[k]] for k in keys], dtype=torch.float64)
            if torch.distributed.get_backend() == "nccl":
                totals = totals.cuda()
            torch.distributed.all_reduce(totals)
            sums = {k: float(totals[i, 0]) for i, k in enumerate(keys)}
            counts = {k: int(totals[i, 1]) for i, k in enumerate(keys)}
        if not counts:
            raise TrainerError("the valid loader yielded no batches: check the dev set, or pass no valid loader")
        return {key: sums[key] / counts[key] for key in sums}

    def _save(self) -> None:
        """Checkpoint the current step (once per step, however many hooks ask)."""
        if self._last_saved_step == self.step:
            return
        self._last_saved_step = self.step
        state = self.state_dict()
        if self.is_main:
            path = save_checkpoint(self.outdir, self.step, state, self.conf["keep_last"])
            logger.info("saved %s", path)
            with atomic_open(self.outdir / TRAIN_TIME_FILE) as f:
                json.dump({"step": self.step, "seconds": round(state["train_seconds"], 3)}, f)

    def _report(self, split: str, values: Mapping[str, float]) -> None:
        if not self.is_main:
            return
        shown = " ".join(f"{name}={value:.5g}" for name, value in values.items())
        logger.info("%s step %d/%d (epoch %d): %s", split, self.step, self.conf["max_steps"], self.epoch, shown)
        # Full precision, one JSON object per line: for plots, and to compare runs exactly.
        with open(self.outdir / METRICS_FILE, "a") as f:
            f.write(json.dumps({"step": self.step, "epoch": self.epoch, "split": split, **values}) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(f"{split}/{name}", value, self.step)

    def _tensorboard(self) -> Any:
        global _warned_no_tensorboard
        if self._tb_writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if not _warned_no_tensorboard:
                    logger.warning("tensorboard is not installed: no TensorBoard scalars (train.log and %s have them)",
                                   METRICS_FILE)
                    _warned_no_tensorboard = True
                return None
            # purge_step drops events a killed run wrote after the checkpoint we resumed from.
            purge = self._resumed_step + 1 if self._resumed_step is not None else None
            self._tb_writer = SummaryWriter(str(self.outdir / TENSORBOARD_DIR), purge_step=purge)
        return self._tb_writer

    def _truncate_metrics_after(self, step: int) -> None:
        """Drop metrics.jsonl records a killed run wrote after ``step`` (and a half-written last line)."""
        path = self.outdir / METRICS_FILE
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) <= step:
                kept.append(line + "\n")
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
