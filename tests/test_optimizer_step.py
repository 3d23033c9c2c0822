"""Gradient accumulation, non-finite step skipping and the CPU fallback of mixed precision."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

import toy_train
from voiceswap.train.registry import OptimizerStep


def tiny_setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, {"model": optimizer}


def test_non_finite_gradient_skips_the_step_and_counts_it():
    model, optimizers = tiny_setup()
    step = OptimizerStep(optimizers, grad_clip=1.0)
    before = copy.deepcopy(model.state_dict())
    loss = model(torch.tensor([[float("inf"), 1.0, 1.0]])).sum()
    norm = step(loss, "model")
    assert norm != norm or norm == float("inf")  # NaN or inf
    assert step.skipped_steps == 1
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, before[name])
    step(model(torch.ones(1, 3)).sum(), "model")  # a finite step still updates
    assert step.skipped_steps == 1
    assert not torch.equal(model.weight, before["weight"])


def test_accumulation_steps_only_on_the_last_micro_batch():
    model, optimizers = tiny_setup()
    step = OptimizerStep(optimizers, grad_clip=None, accum_steps=2)
    x = torch.randn(4, 3)
    before = model.weight.detach().clone()
    step.micro_step = 0
    assert step(model(x[:2]).pow(2).mean(), "model") is None
    assert torch.equal(model.weight, before)
    step.micro_step = 1
    assert step(model(x[2:]).pow(2).mean(), "model") is not None

    reference, reference_optimizers = tiny_setup()
    OptimizerStep(reference_optimizers, grad_clip=None)(reference(x).pow(2).mean(), "model")
    torch.testing.assert_close(model.weight, reference.weight)


def test_amp_on_cpu_falls_back_to_fp32_with_one_log_line(tmp_path, monkeypatch, caplog):
    config = copy.deepcopy(toy_train.CONFIG)
    config["train"]["amp"] = "bf16"
    monkeypatch.setattr(toy_train, "CONFIG", config)
    with caplog.at_level(logging.INFO):
        trainer = toy_train.build_trainer(str(tmp_path / "exp"), ["train.max_steps=3"])
    assert trainer.amp_dtype is None and trainer.scaler is None
    assert sum("train.amp=bf16 needs a GPU; training on cpu in fp32" in r.message for r in caplog.records) == 1
    trainer.train()


def test_unknown_amp_mode_is_an_error(tmp_path, monkeypatch):
    config = copy.deepcopy(toy_train.CONFIG)
    config["train"]["amp"] = "fp8"
    monkeypatch.setattr(toy_train, "CONFIG", config)
    with pytest.raises(Exception, match="train.amp is 'fp8'"):
        toy_train.build_trainer(str(tmp_path / "exp"))
