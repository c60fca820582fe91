"""One run on two processes (gloo on CPU, ``train.devices: 2``): the global batch cut into
equal slices, BatchNorm over the global batch, gradients summed by share, predictions gathered
in order; started by kdbench itself and by ``torchrun``, it trains what one process trains at
the same global batch, resumes after a kill, and fails cleanly.

The tolerance: these runs use SGD at a small learning rate. Two processes compute one's
gradient exactly in fp64 (1.7e-13), but in fp32 their sums run in another order, and
resnet10t's BatchNorm makes the last bits matter: the two fp32 gradients differ as much as one
process's fp32 gradient differs from its fp64 one (``tests/benchmarks/ddp_noise_floor.py``,
README), and training makes that grow (AdamW's first steps are nearly ``lr · sign(g)``). At
lr 0.002 two processes reproduce one: the test metrics equal, the loss means within 1e-4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from kdbench.train.data import ShardedBatches, ViewSampler, shard
from kdbench.train.distributed import World
from kdbench.train.syncbn import global_copy

pytestmark = pytest.mark.slow

CONFIG = """\
student: {name: resnet10t}
data: {name: synthff, params: {videos: 80}, batch_size: 16}
train: {epochs: 2, optimizer: sgd, lr: 0.002, precision: fp32}
"""
LOSS_RTOL = 1e-4  # the per-epoch loss means
METRIC_ATOL = 1e-6  # the test metrics at the best epoch


def kdbench(*args, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kdbench.cli", *map(str, args)]
    env = os.environ | {"CI": "1"} | (env or {})
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def record_of(results: Path) -> dict:
    (path,) = (results / "runs").glob("*.json")
    return json.loads(path.read_text())


def assert_same_training(one: dict, two: dict) -> None:
    for a, b in zip(one["history"], two["history"], strict=True):
        for name, value in a["train"].items():
            assert b["train"][name] == pytest.approx(value, rel=LOSS_RTOL), (a["epoch"], name)
    for split in ("val", "test"):
        for name, value in one["best"][split].items():
            assert two["best"][split][name] == pytest.approx(value, abs=METRIC_ATOL), name


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "run.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def one_process(config, tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("one")
    done = kdbench("run", config, "--results", results)
    assert done.returncode == 0, done.stderr
    return record_of(results)


# --- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "batch", "processes"), [(70, 16, 2), (70, 12, 3), (10, 16, 2)])
def test_the_slices_of_each_batch_make_up_the_one_process_batch(size, batch, processes):
    drop_last = size > batch

    def batches(world: World) -> ShardedBatches:  # each process has its own sampler
        return ShardedBatches(ViewSampler(size, 4), batch, drop_last, world)

    single, parts = batches(World()), [batches(World(r, processes)) for r in range(processes)]
    for epoch in (0, 3):
        for sampler in [single, *parts]:
            sampler.set_epoch(7, epoch)
        whole, sliced = list(single), [list(p) for p in parts]
        assert all(len(s) == len(whole) == len(single) for s in sliced)  # all take every step
        for k, keys in enumerate(whole):
            assert [key for s in sliced for key in s[k]] == keys
            shares = [p.share(k, len(s[k])) for p, s in zip(parts, sliced, strict=True)]
            assert sum(shares) == pytest.approx(1.0) and single.share(k, len(keys)) == 1.0
    order = ViewSampler(size, 4)  # one process: torch's own batching of the same order
    order.set_epoch(7, 3)
    reference = list(torch.utils.data.BatchSampler(order, batch, drop_last))
    single.set_epoch(7, 3)
    assert list(single) == reference


def test_shards_of_a_split_are_contiguous_and_cover_it_once():
    assert [shard(10, World(r, 3)) for r in range(3)] == [range(0, 4), range(4, 7), range(7, 10)]
    assert [len(shard(1, World(r, 2))) for r in range(2)] == [1, 0]


def global_batchnorm_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    x, weights = torch.randn(8, 4, 5, 5) * 3 + 1, torch.randn(8, 4, 5, 5)
    conv, bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None)
    ref_conv, ref_bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None)
    ref_conv.load_state_dict(conv.state_dict())
    (ref_bn(ref_conv(x)) * weights).mean().backward()
    mine = slice(4 * rank, 4 * rank + 4)
    synced = global_copy(bn)
    ((synced(conv(x[mine])) * weights[mine]).mean() / 2).backward()
    for p in [*conv.parameters(), *bn.parameters()]:
        torch.distributed.all_reduce(p.grad)
    if rank == 0:
        pairs = [(conv.weight.grad, ref_conv.weight.grad), (bn.weight.grad, ref_bn.weight.grad)]
        pairs += [(bn.running_var, ref_bn.running_var), (bn.running_mean, ref_bn.running_mean)]
        worst = max((a - b).abs().max().item() for a, b in pairs)
        Path(out).write_text(json.dumps({"worst": worst, "tracked": int(bn.num_batches_tracked)}))
    torch.distributed.destroy_process_group()


def test_global_batchnorm_equals_batchnorm_over_the_whole_batch(tmp_path):
    """Outputs' gradients and running statistics of two processes of 4 samples each against
    one BatchNorm2d over the 8 (a plain layer, in one process)."""
    from kdbench.train.launch import free_port

    out = tmp_path / "bn.json"
    mp.start_processes(
        global_batchnorm_worker, args=(free_port(), str(out)), nprocs=2, start_method="spawn"
    )
    found = json.loads(out.read_text())
    assert found["worst"] < 1e-6 and found["tracked"] == 1


# --- whole runs ------------------------------------------------------------------------------


def test_two_processes_started_by_kdbench_train_what_one_does(config, one_process, tmp_path):
    done = kdbench("run", config, "train.devices=2", "--results", tmp_path)
    assert done.returncode == 0, done.stderr
    two = record_of(tmp_path)
    assert two["processes"] == 2 and one_process["processes"] == 1
    assert two["run_id"] != one_process["run_id"]  # train.devices is in the run id
    assert_same_training(one_process, two)
    assert two["dataset"] == one_process["dataset"]  # whole splits (sizes), not one share
    assert done.stderr.count(" done: ") == 1  # one process reports


def test_torchrun_trains_the_same_run(config, one_process, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "kdbench.cli", "run", str(config),
               "train.devices=2", "--results", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=os.environ | {"CI": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    two = record_of(tmp_path)
    assert two["processes"] == 2  # not two independent single-process runs
    assert_same_training(one_process, two)
    assert done.stderr.count(" done: ") == 1  # one of torchrun's two workers reports


def test_a_world_that_does_not_match_train_devices_is_one_line(config, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "kdbench.cli", "run", str(config),
               "--results", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "train.devices is 1, but this run was started as 2 processes" in done.stderr


def test_a_batch_that_does_not_split_evenly_is_refused_before_anything_runs(config, tmp_path):
    done = kdbench("run", config, "train.devices=3", "--results", tmp_path, timeout=120)
    assert done.returncode == 2
    assert "data.batch_size 16 does not split evenly over train.devices 3" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_killed_two_process_run_resumes_to_the_same_result(config, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    three = ["train.devices=2", "train.epochs=3"]
    assert kdbench("run", config, *three, "--results", whole).returncode == 0
    args = [sys.executable, "-m", "kdbench.cli", "run", str(config), *three,
            "--results", str(killed)]  # fmt: skip
    proc = subprocess.Popen(args, env=os.environ | {"CI": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not list(killed.glob("checkpoints/*/last.pt")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # its two processes follow it (PR_SET_PDEATHSIG)
    proc.wait()
    time.sleep(2)
    assert not list(killed.glob("runs/*.json")), "killed before the end"
    done = kdbench("run", config, *three, "--results", killed)
    assert done.returncode == 0, done.stderr
    resumed, uninterrupted = record_of(killed), record_of(whole)
    assert resumed["resumed_from_epoch"] == 1 and resumed["attempts"] == 2
    assert resumed["best"]["test"] == uninterrupted["best"]["test"]  # bit-identical
    assert [e["train"] for e in resumed["history"]] == [
        e["train"] for e in uninterrupted["history"]
    ]


def test_a_diverging_two_process_run_fails_on_both_and_is_recorded(config, tmp_path):
    done = kdbench("run", config, "train.devices=2", "train.lr=1.0e6", "--results", tmp_path)
    assert done.returncode == 1
    record = record_of(tmp_path)
    assert record["status"] == "failed" and "diverged at epoch 1" in record["error"]
    assert "diverged at epoch 1" in done.stdout + done.stderr
