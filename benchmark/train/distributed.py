"""One run on several processes (``train.devices``): who this process is, the process group,
and the few collectives the harness needs. Every helper is a no-op in a single process, so the
loop has one code path.

The processes come from ``torchrun`` (its ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables),
from a Slurm job of ``--ntasks N`` (``submitit.helpers.TorchDistributedEnvironment`` exports the
same variables), or from ``kdbench.train.launch`` when a run with ``train.devices > 1`` is
started in one process. Backend: NCCL on CUDA, gloo on CPU; the code is the same.

Why not ``DistributedDataParallel``: a method may override ``backward`` (two-in-one's gradient
homogenization calls ``torch.autograd.grad``), which DDP's reducer does not see, and methods own
trainable parameters of their own. The harness instead all-reduces every gradient (student's
and method's) in one flat buffer after the method's backward, weighted by each process's share
of the global batch; communication does not overlap the backward pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from kdbench.config import ConfigError

TIMEOUT = timedelta(minutes=10)  # a process that waits longer for the others fails the run
LAUNCHERS = (
    "start it with `torchrun --nproc-per-node {n} -m kdbench.cli run ...`, "
    "or as a Slurm job of {n} tasks (a profile with tasks_per_node), "
    "or from one process (kdbench starts the {n} processes itself)"
)


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """The process that writes (records, checkpoints, the teacher cache) and logs."""
        return self.rank == 0


def world_from_env() -> World:
    """The world ``torchrun`` or a Slurm job (through submitit) describes; one process
    without them."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    rank = int(os.environ.get("RANK", "0"))
    return World(rank, size, int(os.environ.get("LOCAL_RANK", "0")), local_size)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def check_world(devices: int, found: World) -> None:
    """``train.devices`` must be the number of processes the run was started with."""
    if found.size != devices:
        raise ConfigError(
            f"train.devices is {devices}, but this run was started as {found.size} processes: "
            + LAUNCHERS.format(n=devices)
        )


def run_device(found: World, device: torch.device) -> torch.device:
    """Each process's own GPU (``cuda:LOCAL_RANK``) when the run is on CUDA."""
    if device.type == "cuda" and found.size > 1:
        return torch.device("cuda", found.local_rank % torch.cuda.device_count())
    return device


@contextmanager
def process_group(found: World, device: torch.device) -> Iterator[None]:
    """The run's process group (env:// rendezvous), for the duration of the run."""
    if found.size == 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=found.rank, world_size=found.size, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (it writes what the others then read: a dataset
    or teacher cache); the others wait, then run it too."""
    main = not active() or dist.get_rank() == 0
    if not main:
        dist.barrier()
    try:
        yield
    finally:
        if active() and main:
            dist.barrier()


def broadcast(value: Any) -> Any:
    """The main process's ``value``, on every process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order, on every process."""
    if not active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is set on any process."""
    if not active():
        return flag
    box = torch.tensor([float(flag)])
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item())


def sum_values(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """``values`` (scalars) summed over the processes, in one all-reduce."""
    if not active() or not values:
        return values
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, stacked, strict=True))


def broadcast_state(module: torch.nn.Module) -> None:
    """Every parameter and buffer of ``module`` set to the main process's."""
    if not active():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dense = tensor.data.contiguous()  # channels_last weights: gloo sends dense tensors
        dist.broadcast(dense, src=0)
        tensor.data.copy_(dense)


def reduce_gradients(params: Iterable[torch.nn.Parameter], share: float) -> None:
    """Replace each gradient by the global batch's: the sum over processes of
    ``share × gradient`` (``share``: this process's fraction of the global batch). A parameter
    no process gave a gradient keeps ``None`` (the optimiser skips it, as in one process)."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    flat = [has] + [
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * share for p in params
    ]
    buffer = torch.cat([t.to(device) for t in flat])
    dist.all_reduce(buffer)
    seen, offset = buffer[: len(params)], len(params)
    for p, count in zip(params, seen.tolist(), strict=True):
        size = p.numel()
        if count:
            p.grad = buffer[offset : offset + size].view_as(p).to(p.dtype)
        offset += size
