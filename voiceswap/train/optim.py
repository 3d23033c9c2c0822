"""Optimisers and LR schedulers from a config's ``optim`` section: one builder for every family.

The ``optim`` section maps optimiser names to their settings. The names are the ones a family's
``train_step`` passes to ``self.optimizer_step(loss, name)`` (``model`` for a single-model
family; ``generator`` and ``discriminator`` for HiFi-GAN)::

    optim:
      generator:
        type: adamw              # adam | adamw | sgd
        params: generator        # model name(s) it updates; default: the entry's own name
        lr: 2.0e-4
        betas: [0.8, 0.99]
        weight_decay: 0.01
        scheduler: {type: exponential, gamma: 0.999, period: 1000}
      discriminator: {type: adamw, lr: 2.0e-4, betas: [0.8, 0.99], weight_decay: 0.01}

``params`` is a model name, a list of model names (one optimiser over all of them), or a glob
string such as ``generator_*``: a glob expands to **one optimiser per matching model**, named after
the model, all with the entry's settings. That is how a VAE-GAN with one generator and one
discriminator per speaker declares its optimisers without code::

    optim:
      generators:
        params: "generator_*"    # generator_A, generator_B, ...: one Adam each
        type: adam
        lr: 1.0e-4
        scheduler: {type: linear_decay, start_step: 50000, end_step: 100000}
      discriminators: {params: "discriminator_*", type: adam, lr: 1.0e-4}

(In a list, a glob simply adds every matching model to that one optimiser.) A model covered by
two entries is an error: its parameters would be updated twice per step.

Optimiser keys (missing ones take torch's defaults; note ``torch.optim.AdamW``'s weight decay
default is 0.01): ``adam``/``adamw``: ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``;
``sgd``: ``lr``, ``momentum``, ``dampening``, ``weight_decay``, ``nesterov``. ``lr`` is required.

Schedulers (``scheduler.type``; absent or ``none``: a constant LR). A scheduler counts the updates
of *its* optimiser: the Trainer steps it only after a step in which that optimiser stepped (not
for a skipped non-finite step, not during a HiFi-GAN discriminator's warm-up), so ``step_size``,
``start_step`` and ``end_step`` are in that optimiser's updates.

================  ============================================================================
``step``          ``step_size``, ``gamma``: multiply the LR by ``gamma`` every ``step_size`` updates
``exponential``   ``gamma``, optional ``period`` (default 1): multiply the LR by ``gamma`` every
                  ``period`` updates, smoothly (per-update factor ``gamma ** (1 / period)``; the
                  published HiFi-GAN decays 0.999 per epoch: ``gamma: 0.999, period: <epoch steps>``)
``linear_decay``  ``start_step``, ``end_step``, optional ``final_lr_ratio`` (default 0): the LR
                  stays constant for ``start_step`` updates, then falls linearly to
                  ``final_lr_ratio * lr`` at ``end_step`` and stays there
================  ============================================================================
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from voiceswap.train.config import ConfigError

logger = logging.getLogger(__name__)

Optimizers = Dict[str, torch.optim.Optimizer]
Schedulers = Dict[str, torch.optim.lr_scheduler.LRScheduler]

_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad")
_SGD_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

#: Optimiser type -> (torch class, the settings it accepts).
OPTIMIZER_TYPES: Dict[str, Tuple[type, Tuple[str, ...]]] = {
    "adam": (torch.optim.Adam, _ADAM_KEYS),
    "adamw": (torch.optim.AdamW, _ADAM_KEYS),
    "sgd": (torch.optim.SGD, _SGD_KEYS),
}
#: Keys of an optimiser entry that are not settings of the torch optimiser.
ENTRY_KEYS = ("type", "params", "scheduler")

#: Scheduler type -> (required keys, optional keys).
SCHEDULER_TYPES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "none": ((), ()),
    "step": (("step_size", "gamma"), ()),
    "exponential": (("gamma",), ("period",)),
    "linear_decay": (("start_step", "end_step"), ("final_lr_ratio",)),
}

_GLOB_CHARS = frozenset("*?[")

_EXAMPLE = "e.g. optim: {model: {type: adam, lr: 4.0e-4, betas: [0.9, 0.999]}}"


def _is_glob(pattern: str) -> bool:
    return any(char in _GLOB_CHARS for char in pattern)


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimiser to build: its name, the entry it came from, its models and its settings."""

    name: str
    entry: str
    models: Tuple[str, ...]
    settings: Mapping[str, Any]


def _section(optim: Any) -> Mapping[str, Mapping[str, Any]]:
    """The ``optim`` section checked for shape: a mapping of names to mappings."""
    if not isinstance(optim, Mapping):
        raise ConfigError(f"config section 'optim' must map optimiser names to their settings ({_EXAMPLE}), "
                          f"got {optim!r}")
    for name, entry in optim.items():
        if not isinstance(entry, Mapping):
            # The most likely cause is a config written in the old flat shape (optim: {lr: ...}).
            raise ConfigError(f"optim.{name} is {entry!r}, not a mapping of settings: the optim section maps optimiser "
                              f"names (the names train_step passes to optimizer_step, e.g. model) to their settings, "
                              f"{_EXAMPLE}")
    return optim


def _params_patterns(name: str, entry: Mapping[str, Any]) -> Tuple[List[str], bool]:
    """The model-name patterns of an entry and whether it expands to one optimiser per model."""
    params = entry.get("params", name)
    if isinstance(params, str):
        return [params], _is_glob(params)
    if isinstance(params, (list, tuple)) and params and all(isinstance(p, str) for p in params):
        return list(params), False
    raise ConfigError(f"optim.{name}.params must be a model name, a list of model names or a glob such as "
                      f"'generator_*', got {params!r}")


def plan_optimizers(optim: Any, names: Sequence[str]) -> List[OptimizerSpec]:
    """Resolve the ``optim`` section against the available model ``names`` into one spec per optimiser.

    Glob entries expand to one optimiser per matching model, named after it; other entries give
    one optimiser named after the entry. Raises :class:`ConfigError` for a pattern that matches
    nothing, a model in two optimisers, or two optimisers with one name.
    """
    section = _section(optim)
    explicit = {entry for entry, settings in section.items() if not _params_patterns(entry, settings)[1]}
    specs: List[OptimizerSpec] = []
    owner: Dict[str, str] = {}  # model -> the entry whose optimiser updates it
    for entry, settings in section.items():
        patterns, expand = _params_patterns(entry, settings)
        matched: List[str] = []
        for pattern in patterns:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)] if _is_glob(pattern) else \
                [pattern] if pattern in names else []
            if not hits:
                where = f"optim.{entry}.params" if "params" in settings else \
                    f"optim.{entry} (no params: the entry's own name)"
                raise ConfigError(f"{where} names {pattern!r}, which matches no model; the models are: "
                                  f"{', '.join(names) or '(none)'}")
            matched += [n for n in hits if n not in matched]
        for model in matched:
            if model in owner:
                raise ConfigError(f"model {model!r} is in optimisers optim.{owner[model]} and optim.{entry}: each "
                                  "model must be updated by one optimiser; narrow one entry's params")
            owner[model] = entry
        if expand:
            for model in matched:
                if model in explicit:
                    raise ConfigError(f"optim.{entry}.params {patterns[0]!r} expands to an optimiser named {model!r}, "
                                      f"but optim.{model} is an entry too: rename that entry or narrow the glob")
                specs.append(OptimizerSpec(model, entry, (model,), settings))
        else:
            specs.append(OptimizerSpec(entry, entry, tuple(matched), settings))
    return specs


def _check_number(where: str, value: Any, low: float, high: Optional[float] = None, low_inclusive: bool = False,
                  integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok_type and not isinstance(value, bool) and (value >= low if low_inclusive else value > low) \
        and (high is None or value < high)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise ConfigError(f"{where} must be {kind} {bound}, got {value!r}")


def _optimizer_kwargs(spec: OptimizerSpec) -> Tuple[type, Dict[str, Any]]:
    """The torch class and keyword arguments of one spec, every key and value checked."""
    settings, prefix = spec.settings, f"optim.{spec.entry}"
    kind = settings.get("type")
    if kind not in OPTIMIZER_TYPES:
        what = " has no type" if kind is None else f".type is {kind!r}"
        raise ConfigError(f"{prefix}{what}; valid optimiser types are: {', '.join(OPTIMIZER_TYPES)}")
    cls, allowed = OPTIMIZER_TYPES[kind]
    for key in settings:
        if key not in allowed and key not in ENTRY_KEYS:
            raise ConfigError(f"unknown key {prefix}.{key} for a {kind} optimiser; valid keys are: "
                              f"{', '.join(ENTRY_KEYS + allowed)}")
    if "lr" not in settings:
        raise ConfigError(f"{prefix}.lr is missing: every optimiser needs a learning rate")
    kwargs: Dict[str, Any] = {}
    for key in allowed:
        if key not in settings:
            continue  # torch's default
        value, where = settings[key], f"{prefix}.{key}"
        if key == "betas":
            if not (isinstance(value, (list, tuple)) and len(value) == 2):
                raise ConfigError(f"{where} must be two numbers [beta1, beta2], e.g. [0.9, 0.999], got {value!r}")
            for beta in value:
                _check_number(where, beta, 0.0, 1.0, low_inclusive=True)
            value = tuple(float(beta) for beta in value)
        elif key in ("amsgrad", "nesterov"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif key in ("lr", "eps"):
            _check_number(where, value, 0.0)
        else:  # weight_decay, momentum, dampening
            _check_number(where, value, 0.0, low_inclusive=True)
        kwargs[key] = value
    return cls, kwargs


def _parameters(models: Mapping[str, nn.Module], names: Sequence[str]):
    # One model: its own parameters() order, so runs match the hand-written builders bit for bit.
    if len(names) == 1:
        return models[names[0]].parameters()
    return itertools.chain.from_iterable(models[name].parameters() for name in names)


def build_optimizers(models: Mapping[str, nn.Module], optim: Any) -> Optimizers:
    """One torch optimiser per resolved ``optim`` entry, over the (unwrapped) models it names.

    ``optim`` None (no section) is fine only for models without trainable parameters (nothing to
    train); a trainable model that no optimiser updates is logged, since it will stay untrained.
    """
    if optim is None:
        trainable = [name for name, model in models.items() if any(p.requires_grad for p in model.parameters())]
        if trainable:
            raise ConfigError(f"the config has no optim section, but models {', '.join(trainable)} have trainable "
                              f"parameters: add one optimiser per name train_step uses, {_EXAMPLE}")
        return {}
    specs = plan_optimizers(optim, list(models))
    optimizers: Optimizers = {}
    for spec in specs:
        cls, kwargs = _optimizer_kwargs(spec)
        scheduler_spec(spec)  # a bad scheduler fails now, with the optimiser, not later in schedulers()
        optimizers[spec.name] = cls(_parameters(models, spec.models), **kwargs)
    covered = {model for spec in specs for model in spec.models}
    for name, model in models.items():
        if name not in covered and any(p.requires_grad for p in model.parameters()):
            logger.warning("model %r has trainable parameters but no optim entry updates it: it will not train "
                           "(add it to an optim entry's params if it should)", name)
    return optimizers


def scheduler_spec(spec: OptimizerSpec) -> Optional[Dict[str, Any]]:
    """The checked ``scheduler`` settings of one optimiser spec (``type`` included); None for no scheduler."""
    prefix = f"optim.{spec.entry}.scheduler"
    settings = spec.settings.get("scheduler")
    if settings is None:
        return None
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{prefix} must be a mapping such as {{type: step, step_size: 1000, gamma: 0.5}}, "
                          f"got {settings!r}")
    kind = settings.get("type")
    if kind not in SCHEDULER_TYPES:
        what = " has no type" if kind is None else f".type is {kind!r}"
        raise ConfigError(f"{prefix}{what}; valid scheduler types are: {', '.join(SCHEDULER_TYPES)}")
    required, optional = SCHEDULER_TYPES[kind]
    for key in settings:
        if key != "type" and key not in required + optional:
            raise ConfigError(f"unknown key {prefix}.{key} for a {kind} scheduler; valid keys are: "
                              f"{', '.join(('type',) + required + optional)}")
    missing = [key for key in required if key not in settings]
    if missing:
        raise ConfigError(f"{prefix} ({kind}) needs {', '.join(missing)}")
    if kind == "none":
        return None
    checked = dict(settings)
    if kind == "step":
        _check_number(f"{prefix}.step_size", settings["step_size"], 1, low_inclusive=True, integer=True)
        _check_number(f"{prefix}.gamma", settings["gamma"], 0.0)
    elif kind == "exponential":
        _check_number(f"{prefix}.gamma", settings["gamma"], 0.0)
        checked.setdefault("period", 1)
        _check_number(f"{prefix}.period", checked["period"], 1, low_inclusive=True, integer=True)
    elif kind == "linear_decay":
        _check_number(f"{prefix}.start_step", settings["start_step"], 0, low_inclusive=True, integer=True)
        _check_number(f"{prefix}.end_step", settings["end_step"], settings["start_step"], integer=True)
        checked.setdefault("final_lr_ratio", 0.0)
        ratio = checked["final_lr_ratio"]
        if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0.0 <= ratio <= 1.0):
            raise ConfigError(f"{prefix}.final_lr_ratio must be a number in [0, 1], got {ratio!r}")
    return checked


class LinearDecay:
    """LR factor for ``LambdaLR``: 1 up to ``start_step``, linear to ``final_lr_ratio`` at ``end_step``, then flat.

    A class rather than a closure so ``LambdaLR.state_dict`` stores its numbers (plain floats and
    ints, loadable with ``weights_only``) and a resumed run checks the same schedule.
    """

    def __init__(self, start_step: int, end_step: int, final_lr_ratio: float = 0.0) -> None:
        self.start_step, self.end_step, self.final_lr_ratio = int(start_step), int(end_step), float(final_lr_ratio)

    def __call__(self, step: int) -> float:
        if step <= self.start_step:
            return 1.0
        if step >= self.end_step:
            return self.final_lr_ratio
        progress = (step - self.start_step) / (self.end_step - self.start_step)
        return 1.0 + (self.final_lr_ratio - 1.0) * progress


_SCHEDULER_BUILDERS: Dict[str, Callable[[torch.optim.Optimizer, Mapping[str, Any]], Any]] = {
    "step": lambda opt, s: torch.optim.lr_scheduler.StepLR(opt, step_size=int(s["step_size"]), gamma=float(s["gamma"])),
    # float(gamma) ** (1.0 / int(period)): the exact per-step gamma the HiFi-GAN family used before.
    "exponential": lambda opt, s: torch.optim.lr_scheduler.ExponentialLR(
        opt, gamma=float(s["gamma"]) ** (1.0 / int(s["period"]))),
    "linear_decay": lambda opt, s: torch.optim.lr_scheduler.LambdaLR(
        opt, LinearDecay(s["start_step"], s["end_step"], s["final_lr_ratio"])),
}


def build_schedulers(optimizers: Mapping[str, torch.optim.Optimizer], optim: Any) -> Schedulers:
    """One LR scheduler per optimiser whose ``optim`` entry has one, keyed by the optimiser's name.

    ``optimizers`` are those :func:`build_optimizers` made from the same section (glob entries are
    resolved against their names, which are the models' names).
    """
    if optim is None:
        return {}
    section = _section(optim)
    explicit = [entry for entry, settings in section.items() if not _params_patterns(entry, settings)[1]]
    schedulers: Schedulers = {}
    for entry, settings in section.items():
        patterns, expand = _params_patterns(entry, settings)
        # A glob entry's optimisers are named after its models; build_optimizers refused any clash
        # with an explicit entry's name, so matching the optimiser names finds exactly them.
        names = [n for n in optimizers if n not in explicit and fnmatch.fnmatchcase(n, patterns[0])] if expand \
            else [entry]
        for name in names:
            if name not in optimizers:
                raise ConfigError(f"optim.{entry} has no optimiser among {', '.join(optimizers) or '(none)'}: "
                                  "build the schedulers from the optimisers of the same optim section")
            spec = OptimizerSpec(name, entry, (), settings)
            checked = scheduler_spec(spec)
            if checked is not None:
                schedulers[name] = _SCHEDULER_BUILDERS[checked["type"]](optimizers[name], checked)
    return schedulers
