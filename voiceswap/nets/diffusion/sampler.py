"""Ancestral sampling of an eps-prediction diffusion model, with classifier and classifier-free guidance.

The seed's reverse step from ``t`` to ``s < t`` (continuous time; ``abar`` the noise schedule's
``alpha_bar``)::

    alpha = abar_t / abar_s,  beta = 1 - alpha
    mean  = alpha^-1/2 (x_t - beta (1 - abar_t)^-1/2 eps_hat)
    var   = beta (1 - abar_s) / (1 - abar_t)      (the posterior's; ``sigma_large``: beta)
    x_s   = mean + sqrt(var) z                     (no noise on the last step, s = 0)

``constrain`` (the seed's) maps ``eps_hat`` to the x0 it implies, optionally makes it zero-mean over
time and clips it to ``[-clip, clip]``, and maps it back to eps. The seed clips to [-1, 1] for
waveforms; normalised log-mel has unit variance per bin, so the recipe's mel configs clip wider.

Classifier guidance (Dhariwal & Nichol; the seed's ``mean += sigma^2 * scale * grad_x log p(y | x,
s)`` evaluated at the predicted mean) is given as ``grad_fn(x, s) -> grad_x log p``. Classifier-free
guidance ``eps = eps_c + scale (eps_c - eps_uncond)`` lives in the ``eps_fn`` the caller passes
(:func:`cfg_eps`). Every step is checked: a non-finite value raises :class:`NonFiniteSample` naming
the step, rather than being clamped into plausible-looking audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from voiceswap.nets.diffusion.schedules import NoiseSchedule, timesteps

#: ``eps_fn(x_t (B, ...), t (B,)) -> eps_hat``; ``grad_fn(x (B, ...), t (B,)) -> grad_x log p(y | x, t)``.
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GradFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteSample(RuntimeError):
    """A sampling step produced NaN or infinity (a diverged model, or a guidance scale far too large)."""


@dataclass(frozen=True)
class Constraint:
    """The seed's ``constrain``: predicted x0 made zero-mean over the last axis and/or clipped."""

    zero_mean: bool = False
    clip: Optional[float] = None

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        if self.zero_mean:
            x0 = x0 - x0.mean(dim=-1, keepdim=True)
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
        return x0

    @property
    def active(self) -> bool:
        return self.zero_mean or self.clip is not None


def step_coefficients(schedule: NoiseSchedule, t: float, s: float,
                      sigma_large: bool = False) -> Tuple[float, float, float]:
    """``(alpha, beta, variance)`` of the reverse step ``t -> s`` (float64 scalars)."""
    abar_t = float(schedule.alpha_bar(torch.tensor(t, dtype=torch.float64)))
    abar_s = float(schedule.alpha_bar(torch.tensor(s, dtype=torch.float64)))
    alpha = abar_t / abar_s
    beta = 1.0 - alpha
    variance = beta if sigma_large else beta * (1.0 - abar_s) / (1.0 - abar_t)
    return alpha, beta, variance


def reverse_mean(schedule: NoiseSchedule, x_t: torch.Tensor, t: float, s: float, eps: torch.Tensor) -> torch.Tensor:
    """The seed's mean of ``x_s`` given ``x_t`` and the predicted noise ``eps``."""
    alpha, beta, _ = step_coefficients(schedule, t, s)
    abar_t = float(schedule.alpha_bar(torch.tensor(t, dtype=torch.float64)))
    return (x_t - (beta / math.sqrt(1.0 - abar_t)) * eps) / math.sqrt(alpha)


def classifier_grad(classifier: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], labels: torch.Tensor) -> GradFn:
    """``grad_fn`` of classifier guidance: ``grad_x log softmax(classifier(x, t))[label]`` per example."""

    def grad_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x, t).float(), dim=-1)
            chosen = log_probs[torch.arange(x.shape[0], device=x.device), labels].sum()
            return torch.autograd.grad(chosen, x)[0]

    return grad_fn


def cfg_eps(conditional: EpsFn, unconditional: EpsFn, scale: float) -> EpsFn:
    """Classifier-free guidance: ``eps_c + scale (eps_c - eps_uncond)``; scale 0 is the conditional model
    (and then the unconditional one is not run)."""

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = conditional(x, t)
        if scale == 0.0:
            return eps
        return eps + scale * (eps - unconditional(x, t))

    return eps_fn


class DiffusionSampler:
    """Walks ``x_T ~ N(0, I)`` down the ``timesteps(steps, sampling_schedule)`` with the seed's reverse step."""

    def __init__(self, schedule: NoiseSchedule, steps: int = 100, sampling_schedule: str = "identity",
                 sigma_large: bool = False, constrain: Optional[Constraint] = None) -> None:
        self.schedule = schedule
        self.times = timesteps(steps, sampling_schedule)  # validates steps and the schedule name
        self.steps = int(steps)
        self.sigma_large = sigma_large
        self.constrain = constrain if constrain is not None and constrain.active else None

    def predict_eps(self, eps_fn: EpsFn, x: torch.Tensor, t: float) -> torch.Tensor:
        tb = torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)
        eps = eps_fn(x, tb)
        if self.constrain is not None:
            tt = torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device)
            x0 = self.constrain(self.schedule.eps_to_x0(x.double(), tt, eps.double()))
            eps = self.schedule.x0_to_eps(x.double(), tt, x0).to(x.dtype)
        return eps

    @torch.no_grad()
    def sample(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: Optional[torch.Generator] = None,
               grad_fn: Optional[GradFn] = None, guidance_scale: float = 0.0) -> torch.Tensor:
        """The sample at ``t = 0`` from the noise ``x_T``; ``generator`` draws the step noise.

        ``grad_fn`` with ``guidance_scale`` > 0 adds classifier guidance to every step's mean.
        """
        x = x_T
        for i in range(self.steps):
            t, s = float(self.times[i]), float(self.times[i + 1])
            eps = self.predict_eps(eps_fn, x, t)
            _, _, variance = step_coefficients(self.schedule, t, s, self.sigma_large)
            mean = reverse_mean(self.schedule, x, t, s, eps)
            if grad_fn is not None and guidance_scale and variance > 0.0:
                sb = torch.full((x.shape[0],), s, dtype=torch.float32, device=x.device)
                mean = mean + (variance * guidance_scale) * grad_fn(mean, sb)
            if s > 0.0:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = mean + math.sqrt(variance) * noise
            else:
                x = mean
            if not torch.isfinite(x).all():
                raise NonFiniteSample(f"sampling step {i + 1}/{self.steps} (t {t:.4g} -> {s:.4g}) gave NaN or infinite "
                                      "values: the model diverged or the guidance scale is too large")
        return x
