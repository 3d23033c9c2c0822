"""Process-group set-up for DistributedDataParallel under torchrun, srun or a single process.

Ranks come from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` or, when a script is started
by ``srun`` directly, from ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``. The backend is
nccl on GPUs and gloo on CPU. One process and no such variables means no process group at all.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _ranks_from_environment(env: Mapping[str, str]) -> tuple:
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"])
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and int(env["SLURM_NTASKS"]) > 1:
        return int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"])
    return 0, 0, 1


def init_distributed(use_gpu: bool, env: Mapping[str, str] = os.environ) -> DistContext:
    """Join the process group the launcher describes; pick this process's device."""
    rank, local_rank, world_size = _ranks_from_environment(env)
    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("--ngpu > 0 but torch sees no CUDA device: check CUDA_VISIBLE_DEVICES or use --ngpu 0")
    device = torch.device(f"cuda:{local_rank}") if use_gpu else torch.device("cpu")
    if use_gpu:
        torch.cuda.set_device(device)
    if world_size > 1 and not torch.distributed.is_initialized():
        # srun starts the ranks itself: give them the rendezvous torchrun would have set.
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + int(env.get("SLURM_JOB_ID", 0)) % 1000))
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world_size))
        torch.distributed.init_process_group(backend="nccl" if use_gpu else "gloo", rank=rank, world_size=world_size)
        logger.info("rank %d/%d joined the %s process group on %s", rank, world_size,
                    torch.distributed.get_backend(), device)
    return DistContext(rank, local_rank, world_size, device)


def wrap_models(models: Dict[str, nn.Module], context: DistContext) -> Dict[str, nn.Module]:
    """Move models to the device and wrap the trainable ones in DistributedDataParallel."""
    wrapped = {}
    for name, model in models.items():
        model = model.to(context.device)
        if context.is_distributed and any(p.requires_grad for p in model.parameters()):
            device_ids = [context.device.index] if context.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        wrapped[name] = model
    return wrapped


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
