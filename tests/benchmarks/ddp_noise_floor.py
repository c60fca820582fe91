"""Are two processes' gradients one process's? The harness's pieces (GlobalBatchNorm, the
share-weighted gradient all-reduce) on resnet10t (channels_last, a batch of 16 cut 8 + 8, gloo)
against one process on the whole batch, in fp64, where rounding is out of the way, and in fp32,
against the rounding floor (one process's fp32 gradient against its fp64 one). Prints the
largest relative difference of a gradient tensor; the README quotes its output.

    python tests/benchmarks/ddp_noise_floor.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import timm
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from kdbench.train.distributed import World, process_group, reduce_gradients
from kdbench.train.launch import free_port
from kdbench.train.syncbn import synchronise_batchnorm

BATCH, SIDE = 16, 64


def data(dtype: torch.dtype) -> tuple:
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=2).to(memory_format=torch.channels_last)
    x, y = torch.randn(BATCH, 3, SIDE, SIDE), torch.randint(0, 2, (BATCH,))
    return model.to(dtype), x.to(dtype).contiguous(memory_format=torch.channels_last), y


def gradients(model, x, y) -> list[torch.Tensor]:
    F.cross_entropy(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    with process_group(World(rank, 2, rank, 2), torch.device("cpu")):
        found = {}
        for dtype in (torch.float64, torch.float32):
            model, x, y = data(dtype)
            model = synchronise_batchnorm(model, torch.device("cpu"))
            mine = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
            F.cross_entropy(model(x[mine]), y[mine]).backward()
            reduce_gradients(model.parameters(), 0.5)
            found[str(dtype)] = [p.grad.detach().clone() for p in model.parameters()]
        if rank == 0:
            torch.save(found, out)


def largest(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((u.double() - v.double()).abs().max() / v.double().abs().max()).item()
               for u, v in zip(a, b, strict=True))  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    one = {str(d): gradients(*data(d)) for d in (torch.float64, torch.float32)}
    out = Path(tempfile.mkdtemp()) / "two.pt"
    mp.start_processes(worker, (free_port(), str(out)), nprocs=2, start_method="spawn")
    two = torch.load(out)
    f64, f32 = str(torch.float64), str(torch.float32)
    rows = {
        "fp64: 2 processes vs 1": largest(two[f64], one[f64]),
        "fp32: 2 processes vs 1": largest(two[f32], one[f32]),
        "fp32 vs fp64, 1 process (the rounding floor)": largest(one[f32], one[f64]),
        "fp32 vs fp64, 2 processes": largest(two[f32], one[f64]),
    }
    print(json.dumps({k: float(f"{v:.3g}") for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
