"""Data-parallel training with PyTorch's own stack: ``torchrun`` starts the processes, ``torch.distributed``
connects them (gloo on CPU, NCCL on GPUs), ``DistributedDataParallel`` averages the gradients.

Every rank draws the *same* seeded global batch and trains on its rows ``rank::world``; since the loss is a
mean and DDP averages gradients, a step equals one process training on the whole global batch. Rank 0
alone evaluates and writes the run directory; decisions that depend on rank 0's clock or files (time
budget, Ctrl-C, early stop) are broadcast so that the ranks never disagree and deadlock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor, nn


@dataclass
class Dist:
    """This process's place in the job; ``world == 1`` means a plain single-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a multi-GPU node."""
        return torch.device("cuda", self.local_rank) if self.active and device.type == "cuda" else device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # broadcast_buffers=False: our buffers (rotary / sinusoidal tables) are constants, identical on every
        # rank, so the per-step broadcast DDP does by default would be a collective for nothing
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )

    def shard(self, batch: dict[str, Any]) -> dict[str, Any]:
        """This rank's rows of a global batch."""
        if not self.active:
            return batch
        return {k: v[self.rank :: self.world] if torch.is_tensor(v) else v for k, v in batch.items()}

    def mean_all(self, values: Tensor) -> list[float]:
        """The means over ranks of a vector of scalars, read to the host at once (one sync for many steps)."""
        values = values.detach().float()
        if self.active:
            values = values.clone()
            tdist.all_reduce(values)
            values /= self.world
        return values.tolist()

    def decide(self, flag: bool) -> bool:
        """Rank 0's answer, on every rank."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)])
        tdist.broadcast(t, src=0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def close(self) -> None:
        if self.active and tdist.is_initialized():
            tdist.destroy_process_group()


def from_environment(device: torch.device) -> Dist:
    """Join the job ``torchrun`` started (``WORLD_SIZE`` > 1), or return a single-process :class:`Dist`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(dist.local_rank)
        tdist.init_process_group(backend=backend)
    return dist


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
