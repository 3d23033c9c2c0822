"""Exponential moving average (Polyak averaging) of a model's weights.

After every optimiser step: ``ema = decay * ema + (1 - decay) * weight`` for each floating-point
parameter; buffers (e.g. BatchNorm running stats) are copied as they are. Validation and export use
the averaged weights through :meth:`ExponentialMovingAverage.swapped_in`.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


class ExponentialMovingAverage:
    """EMA copies of a model's parameters and buffers, keyed by their names."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}; set train.ema_decay to e.g. 0.999 or null")
        self.decay = decay
        self.num_updates = 0
        self.num_skipped = 0  # updates refused because the model's weights were not finite
        model = unwrap(model)
        self.shadow: Dict[str, torch.Tensor] = {
            name: tensor.detach().clone() for name, tensor in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> bool:
        """Move the averages one step towards the model's current weights; False if it did not.

        Weights holding NaN or infinity (a diverged step, a NaN batch through a VQ codebook's own
        EMA) leave every average as it was: one such update would make the averages NaN for good,
        and they are what validation and export use. Skipped updates are counted in
        :attr:`num_skipped`.
        """
        state = unwrap(model).state_dict()
        floating = [tensor.detach() for tensor in state.values() if tensor.is_floating_point()]
        if floating and not bool(torch.stack([tensor.isfinite().all() for tensor in floating]).all()):
            self.num_skipped += 1
            return False
        for name, tensor in state.items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.mul_(self.decay).add_(tensor.detach(), alpha=1.0 - self.decay)
            else:  # integer buffers (e.g. num_batches_tracked) cannot be averaged
                shadow.copy_(tensor)
        self.num_updates += 1
        return True

    def state_dict(self) -> Dict[str, object]:
        """The averages, the decay and the number of updates."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned."""
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)}: it was saved for a different model")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights with the averages (e.g. before exporting it)."""
        unwrap(model).load_state_dict(self.shadow)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Use the averaged weights inside the block; the trained weights come back afterwards."""
        model_state = unwrap(model).state_dict()
        backup = {name: tensor.detach().clone() for name, tensor in model_state.items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                unwrap(model).load_state_dict(backup)
