"""Optimisers and schedulers from the config (voiceswap/train/optim.py) and the Trainer's rule that
a scheduler steps only when its optimiser stepped."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.train.config import ConfigError, apply_overrides, load_config
from voiceswap.train.optim import LinearDecay, build_optimizers, build_schedulers
from voiceswap.train.registry import Family, OptimizerStep, get_family
from voiceswap.train.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]


def toy_models(*names: str) -> dict:
    torch.manual_seed(0)
    return {name: nn.Linear(3, 2) for name in names}


def settings(optimizer: torch.optim.Optimizer) -> dict:
    group = optimizer.param_groups[0]
    return {key: group[key] for key in ("lr", "betas", "eps", "weight_decay", "amsgrad") if key in group}


# ---------------------------------------------------------------- optimisers


def test_types_and_settings_reach_torch():
    models = toy_models("model", "generator", "discriminator", "extra")
    optim = {
        "model": {"type": "adam", "lr": 4e-4, "betas": [0.9, 0.999], "amsgrad": True, "eps": 1e-6},
        "generator": {"type": "adamw", "lr": 2e-4, "betas": [0.8, 0.99], "weight_decay": 0.01},
        "discriminator": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
        "both": {"type": "adamw", "params": ["extra"], "lr": 1e-3},
    }
    optimizers = build_optimizers(models, optim)
    assert list(optimizers) == ["model", "generator", "discriminator", "both"]
    assert type(optimizers["model"]) is torch.optim.Adam
    assert settings(optimizers["model"]) == {"lr": 4e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0,
                                             "amsgrad": True}
    assert type(optimizers["generator"]) is torch.optim.AdamW
    assert settings(optimizers["generator"])["betas"] == (0.8, 0.99)
    assert settings(optimizers["generator"])["weight_decay"] == 0.01
    assert type(optimizers["discriminator"]) is torch.optim.SGD
    group = optimizers["discriminator"].param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.9, True)
    # Missing keys take torch's defaults (AdamW: weight decay 0.01, betas (0.9, 0.999)).
    assert settings(optimizers["both"]) == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
                                            "amsgrad": False}
    # Each optimiser updates exactly its model's parameters.
    for name, model in (("model", "model"), ("both", "extra")):
        params = optimizers[name].param_groups[0]["params"]
        assert [id(p) for p in params] == [id(p) for p in models[model].parameters()]


def test_a_list_of_models_makes_one_optimiser_and_a_model_in_two_is_an_error():
    models = toy_models("encoder", "decoder", "speaker")
    optimizers = build_optimizers(models, {"model": {"type": "adam", "lr": 1e-3, "params": ["encoder", "dec*"]}})
    assert list(optimizers) == ["model"]
    expected = [id(p) for name in ("encoder", "decoder") for p in models[name].parameters()]
    assert [id(p) for p in optimizers["model"].param_groups[0]["params"]] == expected
    with pytest.raises(ConfigError, match="'encoder' is in optimisers optim.a and optim.b"):
        build_optimizers(models, {"a": {"type": "adam", "lr": 1e-3, "params": "encoder"},
                                  "b": {"type": "adam", "lr": 1e-3, "params": ["encoder", "decoder"]}})


def test_a_glob_expands_to_one_optimiser_per_model_named_after_it():
    """A VAE-GAN's per-speaker generators and discriminators, without code."""
    models = toy_models("encoder", "generator_p225", "generator_p226", "discriminator_p225", "discriminator_p226")
    optim = {
        "encoder": {"type": "adam", "lr": 1e-4},
        "generators": {"type": "adam", "params": "generator_*", "lr": 2e-4, "betas": [0.5, 0.999],
                       "scheduler": {"type": "linear_decay", "start_step": 2, "end_step": 4}},
        "discriminators": {"type": "adamw", "params": "discriminator_*", "lr": 5e-5},
    }
    optimizers = build_optimizers(models, optim)
    assert list(optimizers) == ["encoder", "generator_p225", "generator_p226", "discriminator_p225",
                                "discriminator_p226"]
    for speaker in ("p225", "p226"):
        generator = optimizers[f"generator_{speaker}"]
        assert type(generator) is torch.optim.Adam and settings(generator)["betas"] == (0.5, 0.999)
        assert [id(p) for p in generator.param_groups[0]["params"]] == \
            [id(p) for p in models[f"generator_{speaker}"].parameters()]
        assert type(optimizers[f"discriminator_{speaker}"]) is torch.optim.AdamW
    assert optimizers["generator_p225"] is not optimizers["generator_p226"]
    schedulers = build_schedulers(optimizers, optim)
    assert set(schedulers) == {"generator_p225", "generator_p226"}
    assert all(s.optimizer is optimizers[name] for name, s in schedulers.items())

    # The Family defaults do the same from config["optim"], and OptimizerStep finds the names.
    class VaeGanLike(Family):
        def build(self, config, num_speakers): return models
        def train_step(self, batch, step): return {}
        def valid_step(self, batch): return {}

    family = VaeGanLike()
    assert list(family.optimizers(models, {"optim": optim})) == list(optimizers)
    assert set(family.schedulers(family.optimizers(models, {"optim": optim}), {"optim": optim})) == set(schedulers)

    with pytest.raises(ConfigError, match=r"optim.generators.params names 'gen_\*', which matches no model.*encoder"):
        build_optimizers(models, {"generators": {"type": "adam", "params": "gen_*", "lr": 1e-4}})
    clash = {"generator_p225": {"type": "adam", "params": "encoder", "lr": 1e-4},
             "generators": {"type": "adam", "params": "generator_*", "lr": 1e-4}}
    with pytest.raises(ConfigError, match="expands to an optimiser named 'generator_p225', but optim.generator_p225 "
                                          "is an entry too"):
        build_optimizers(models, clash)


@pytest.mark.parametrize("optim, message", [
    ({"model": {"type": "adagrad", "lr": 1e-3}}, r"optim.model.type is 'adagrad'; valid optimiser types are: adam, "
                                                 r"adamw, sgd"),
    ({"model": {"lr": 1e-3}}, r"optim.model has no type; valid optimiser types are: adam, adamw, sgd"),
    ({"model": {"type": "adam", "lr": 1e-3, "beta": [0.9, 0.99]}},
     r"unknown key optim.model.beta for a adam optimiser; valid keys are: type, params, scheduler, lr, betas, eps, "
     r"weight_decay, amsgrad"),
    ({"model": {"type": "sgd", "lr": 1e-3, "betas": [0.9, 0.99]}}, r"unknown key optim.model.betas for a sgd"),
    ({"model": {"type": "adam"}}, r"optim.model.lr is missing"),
    ({"model": {"type": "adam", "lr": -1.0}}, r"optim.model.lr must be a number > 0"),
    ({"model": {"type": "adam", "lr": 1e-3, "betas": [0.9]}}, r"optim.model.betas must be two numbers"),
    ({"model": {"type": "adam", "lr": 1e-3, "amsgrad": "yes"}}, r"optim.model.amsgrad must be true or false"),
    ({"lr": 1e-3, "betas": [0.9, 0.99]}, r"optim.lr is 0.001, not a mapping of settings"),  # the old flat shape
    ({"generator": {"type": "adam", "lr": 1e-3}}, r"optim.generator \(no params: the entry's own name\) names "
                                                  r"'generator', which matches no model; the models are: model"),
    ({"model": {"type": "adam", "lr": 1e-3, "scheduler": {"type": "cosine"}}},
     r"optim.model.scheduler.type is 'cosine'; valid scheduler types are: none, step, exponential, linear_decay"),
    ({"model": {"type": "adam", "lr": 1e-3, "scheduler": {"type": "step", "step_size": 10, "gamma": 0.5,
                                                          "last_epoch": 3}}},
     r"unknown key optim.model.scheduler.last_epoch for a step scheduler; valid keys are: type, step_size, gamma"),
    ({"model": {"type": "adam", "lr": 1e-3, "scheduler": {"type": "step", "gamma": 0.5}}},
     r"optim.model.scheduler \(step\) needs step_size"),
    ({"model": {"type": "adam", "lr": 1e-3, "scheduler": {"type": "linear_decay", "start_step": 10, "end_step": 5}}},
     r"optim.model.scheduler.end_step must be an integer > 10"),
    ({"model": {"type": "adam", "lr": 1e-3, "scheduler": {"type": "linear_decay", "start_step": 1, "end_step": 5,
                                                          "final_lr_ratio": 2}}},
     r"final_lr_ratio must be a number in \[0, 1\]"),
])
def test_bad_types_and_keys_are_one_clear_config_error(optim, message):
    with pytest.raises(ConfigError, match=message):
        build_optimizers(toy_models("model"), optim)


def test_no_optim_section_is_an_error_only_for_trainable_models():
    with pytest.raises(ConfigError, match="no optim section.*model"):
        build_optimizers(toy_models("model"), None)
    frozen = toy_models("model")
    frozen["model"].requires_grad_(False)
    assert build_optimizers(frozen, None) == {} and build_schedulers({}, None) == {}


# ---------------------------------------------------------------- schedules


def lrs(optim: dict, steps: int) -> list:
    """The LR after each of ``steps`` updates (index 0: before any)."""
    optimizers = build_optimizers(toy_models("model"), optim)
    scheduler = build_schedulers(optimizers, optim)["model"]
    values = [optimizers["model"].param_groups[0]["lr"]]
    for _ in range(steps):
        optimizers["model"].step()
        scheduler.step()
        values.append(optimizers["model"].param_groups[0]["lr"])
    return values


def test_step_schedule():
    values = lrs({"model": {"type": "adam", "lr": 4e-4, "scheduler": {"type": "step", "step_size": 3, "gamma": 0.5}}},
                 7)
    assert values == pytest.approx([4e-4] * 3 + [2e-4] * 3 + [1e-4] * 2)


def test_exponential_schedule_equals_the_old_hifigan_per_step_gamma_exactly():
    optim = load_config(REPO_ROOT / "conf" / "vocoder" / "hifigan.yaml")["optim"]
    models = toy_models("generator", "discriminator")
    optimizers = build_optimizers(models, optim)
    schedulers = build_schedulers(optimizers, optim)
    # What HiFiGANFamily.schedulers computed before the builder: lr_decay ** (1 / lr_decay_steps).
    old_gamma = float(0.999) ** (1.0 / int(1000))
    reference = torch.optim.lr_scheduler.ExponentialLR(
        torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=2.0e-4), gamma=old_gamma)
    for name in ("generator", "discriminator"):
        assert type(schedulers[name]) is torch.optim.lr_scheduler.ExponentialLR
        assert schedulers[name].gamma == old_gamma  # bit for bit
    for _ in range(1000):
        for name in schedulers:
            optimizers[name].step()
            schedulers[name].step()
        reference.optimizer.step()
        reference.step()
        assert optimizers["generator"].param_groups[0]["lr"] == reference.optimizer.param_groups[0]["lr"]
    assert optimizers["generator"].param_groups[0]["lr"] == pytest.approx(2.0e-4 * 0.999, rel=1e-12)
    # period 1 (the default): gamma is the per-step factor itself.
    values = lrs({"model": {"type": "adam", "lr": 1.0, "scheduler": {"type": "exponential", "gamma": 0.5}}}, 3)
    assert values == [1.0, 0.5, 0.25, 0.125]


def test_linear_decay_schedule_at_start_middle_and_end():
    schedule = {"type": "linear_decay", "start_step": 4, "end_step": 8}
    values = lrs({"model": {"type": "adamw", "lr": 1e-3, "scheduler": schedule}}, 10)
    assert values[:5] == [1e-3] * 5  # constant up to start_step
    assert values[6] == pytest.approx(0.5e-3)  # halfway
    assert values[8:] == [0.0, 0.0, 0.0]  # final_lr_ratio 0 at and after end_step
    values = lrs({"model": {"type": "adamw", "lr": 1e-3, "scheduler": dict(schedule, final_lr_ratio=0.1)}}, 10)
    assert values[4] == 1e-3 and values[6] == pytest.approx(0.55e-3) and values[8:] == pytest.approx([1e-4] * 3)
    assert [LinearDecay(0, 2)(s) for s in range(4)] == [1.0, 0.5, 0.0, 0.0]
    none = {"model": {"type": "adam", "lr": 1e-3, "scheduler": {"type": "none"}}}
    assert build_schedulers(build_optimizers(toy_models("model"), none), none) == {}


def test_every_conf_config_builds_with_the_family_defaults():
    """Every config's optim: section makes one optimiser per name over the family's real models (tiny sizes)."""
    from test_family_contract import CONF, CONFIGS, overlay_overrides

    for name in CONFIGS:
        config = apply_overrides(load_config(CONF / f"{name}.yaml"), overlay_overrides(name, Path("unused.pt")))
        for section in [config] + [value for value in config.values() if isinstance(value, dict) and "family" in value]:
            if "optim" not in section:
                continue
            family = get_family(section["family"])()
            speakers = (section.get("data") or {}).get("speakers") or ["a", "b", "c"]  # a selection, or 3
            models = family.build(section, num_speakers=len(speakers))
            optimizers = family.optimizers(models, section)
            assert optimizers, name
            updated = [id(p) for opt in optimizers.values() for group in opt.param_groups for p in group["params"]]
            assert len(updated) == len(set(updated)), f"{name}: a parameter in two optimisers"
            family.schedulers(optimizers, section)


# ---------------------------------------------------------------- the Trainer: schedulers follow their optimiser


def test_optimizer_step_records_only_real_updates():
    model = nn.Linear(2, 1)
    optimizers = {"model": torch.optim.SGD(model.parameters(), lr=0.1)}
    step = OptimizerStep(optimizers, grad_clip=None, accum_steps=2)
    loss = lambda: model(torch.ones(1, 2)).sum()  # noqa: E731
    step.micro_step = 0
    step(loss(), "model")
    assert step.pop_stepped() == set()  # a non-final micro-batch does not update
    step.micro_step = 1
    step(loss(), "model")
    assert step.pop_stepped() == {"model"} and step.pop_stepped() == set()
    step = OptimizerStep(optimizers, grad_clip=None)
    step(float("inf") * loss(), "model")
    assert step.skipped_steps == 1 and step.pop_stepped() == set()  # a skipped step is no update


TINY_GENERATOR = dict(upsample_rates=[10, 4, 2, 2], upsample_kernel_sizes=[20, 8, 4, 4], upsample_initial_channel=16,
                      resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])


def test_discriminator_lr_does_not_decay_during_the_hifigan_warm_up(tmp_path):
    torch.manual_seed(0)
    config = load_config(REPO_ROOT / "conf" / "vocoder" / "hifigan.yaml")
    config["model"]["generator"] = dict(TINY_GENERATOR)
    config["loss"]["adversarial_start_step"] = 3
    config["train"].update(max_steps=4, log_interval=1, valid_interval=100, save_interval=100, ema_decay=None)
    family = get_family("hifigan")()
    models = family.build(config, num_speakers=1)
    optimizers = family.optimizers(models, config)
    schedulers = family.schedulers(optimizers, config)
    gamma = 0.999 ** (1 / 1000)
    lr = config["optim"]["generator"]["lr"]
    batches = [{"mel": torch.randn(2, 8, 80) - 4.0, "audio": 0.1 * torch.randn(2, 8 * 160)}]
    seen = []

    class Recorder:
        """Watches the LRs after every Trainer step (a scheduler of no optimiser steps every step)."""

        def step(self):
            seen.append({name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()})

        def state_dict(self):
            return {}

    schedulers = dict(schedulers, recorder=Recorder())
    trainer = Trainer(family, models, optimizers, schedulers, batches, None, config, tmp_path / "exp")
    trainer.train()
    # Three generator-only steps: the generator's LR decays, the discriminator's does not.
    for step in range(3):
        assert seen[step]["generator"] == pytest.approx(lr * gamma ** (step + 1), rel=1e-12)
        assert seen[step]["discriminator"] == lr
    assert schedulers["discriminator"].last_epoch == 1  # its one GAN-step update
    assert seen[3]["discriminator"] == pytest.approx(lr * gamma, rel=1e-12)
    assert schedulers["generator"].last_epoch == 4


def test_accumulated_and_skipped_steps_step_the_scheduler_once_or_not_at_all(tmp_path):
    """With accumulation the scheduler steps once per optimisation step; after a skipped step, not at all."""

    class Toy(Family):
        def build(self, config, num_speakers): return {"model": nn.Linear(2, 1)}

        def train_step(self, batch, step):
            loss = self.models["model"](batch).pow(2).mean() * (float("nan") if step == 1 else 1.0)
            self.optimizer_step(loss, "model")
            return {}

        def valid_step(self, batch): return {}

    torch.manual_seed(0)
    config = {"optim": {"model": {"type": "sgd", "lr": 1.0, "scheduler": {"type": "exponential", "gamma": 0.5}}},
              "train": {"max_steps": 3, "grad_accum_steps": 2, "save_interval": 100, "log_interval": 100}}
    family = Toy()
    models = family.build(config, 1)
    optimizers = family.optimizers(models, config)
    schedulers = family.schedulers(optimizers, config)
    trainer = Trainer(family, models, optimizers, schedulers, [torch.ones(1, 2)] * 2, None, copy.deepcopy(config),
                      tmp_path / "exp")
    trainer.train()
    assert trainer.optimizer_step.skipped_steps == 1
    # 3 optimisation steps x 2 micro-batches; step 1 (the NaN) was skipped: two updates, two decays.
    assert schedulers["model"].last_epoch == 2
    assert optimizers["model"].param_groups[0]["lr"] == 0.25
