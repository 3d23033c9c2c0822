"""Noise schedules on continuous time and sampling schedules (seed 000, vq-voice-swap).

A noise schedule gives the cumulative signal fraction ``alpha_bar(t)`` for ``t`` in ``[0, 1]``:
``x_t = sqrt(alpha_bar(t)) x_0 + sqrt(1 - alpha_bar(t)) eps``. ``t = 0`` is the data
(``alpha_bar = 1``), ``t = 1`` is (almost) pure noise.

* ``exp`` (the seed's default): ``alpha_bar = exp(-k t^2)`` with ``k = -ln(1e-5)``, so
  ``alpha_bar(1) = 1e-5``.
* ``cos``: ``alpha_bar = cos^2(pi t / 2)``. The seed's reaches exactly 0 at ``t = 1``, where the
  reverse step divides by ``sqrt(alpha_bar)``; here it is floored at ``COS_FLOOR`` (1e-5, the
  ``exp`` schedule's end value), a deliberate deviation that keeps the first step finite.

A sampling schedule is a named function ``s -> t`` on ``[0, 1]`` (``identity``; ``square``: the
seed's ``t = s^2``, which spends more steps at low noise); ``timesteps(steps, name)`` gives the
``steps + 1`` times ``t_N = 1 > ... > t_0 = 0`` a sampler walks through.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch

#: alpha_bar(1) of the ``exp`` schedule (k = -ln(EXP_END)) and the floor of the ``cos`` schedule.
EXP_END = 1e-5
COS_FLOOR = 1e-5


def _real(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a float tensor: float64 stays float64 (the sampler's step sizes near t = 0 need it)."""
    t = torch.as_tensor(t)
    return t if t.dtype == torch.float64 else t.float()


class NoiseSchedule:
    """``alpha_bar(t)`` on continuous ``t`` in ``[0, 1]``; subclasses define :meth:`alpha_bar`."""

    name = "base"

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``; ``t (B,)`` broadcast over the other dims of ``x0``."""
        abar = self.alpha_bar(t).to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def eps_to_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        abar = self.alpha_bar(t).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()

    def x0_to_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = self.alpha_bar(t).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - abar.sqrt() * x0) / (1.0 - abar).sqrt()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExpSchedule(NoiseSchedule):
    """``alpha_bar = exp(-k t^2)``, ``k = -ln(end)`` (the seed: end 1e-5, k ~ 11.51)."""

    name = "exp"

    def __init__(self, end: float = EXP_END) -> None:
        if not 0.0 < end < 1.0:
            raise ValueError(f"the exp schedule's alpha_bar(1) must be in (0, 1), got {end}")
        self.k = -math.log(end)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.k * _real(t) ** 2)


class CosSchedule(NoiseSchedule):
    """``alpha_bar = max(cos^2(pi t / 2), floor)`` (see the module docstring for the floor)."""

    name = "cos"

    def __init__(self, floor: float = COS_FLOOR) -> None:
        if not 0.0 < floor < 1.0:
            raise ValueError(f"the cos schedule's floor must be in (0, 1), got {floor}")
        self.floor = floor

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(math.pi / 2.0 * _real(t)).pow(2).clamp_min(self.floor)


NOISE_SCHEDULES: Dict[str, Callable[[], NoiseSchedule]] = {"exp": ExpSchedule, "cos": CosSchedule}

SAMPLING_SCHEDULES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda s: s,
    "square": lambda s: s * s,  # the seed's README: t = s^2 with 50 steps
}


def noise_schedule(name: str) -> NoiseSchedule:
    """The noise schedule called ``name`` (``exp`` or ``cos``)."""
    if name not in NOISE_SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; schedules: {', '.join(NOISE_SCHEDULES)}")
    return NOISE_SCHEDULES[name]()


def timesteps(steps: int, schedule: str = "identity") -> torch.Tensor:
    """``steps + 1`` times from 1 down to 0: ``t_i = schedule(i / steps)`` for ``i = steps .. 0`` (float64)."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"the number of sampling steps must be an integer >= 1, got {steps!r}")
    if schedule not in SAMPLING_SCHEDULES:
        raise ValueError(f"unknown sampling schedule {schedule!r}; schedules: {', '.join(SAMPLING_SCHEDULES)}")
    s = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
    t = SAMPLING_SCHEDULES[schedule](s)
    t[0], t[-1] = 1.0, 0.0  # exact ends whatever rounding the schedule function does
    return t
