"""Fault injection on a run's own files: each test does the fault for real (changed code, two
processes at once, damaged checkpoints, a full or read-only disk, divergence) and asserts that
no wrong result is trusted, the damaged file is named, and the run completes after the fault.

The numbers refer to the faults listed in the "Trustworthy runs" issue; the teacher-output
cache (2, 3), readers (4, 7, 9) and data (10) have their own ``test_faults_*`` files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kdbench.train.loop as loop
from kdbench import identity
from kdbench.cli import main
from kdbench.config import ConfigError
from kdbench.datasets.synthff import SynthFF
from kdbench.methods.vanilla import Vanilla
from kdbench.results import checkpoint_dir, load_results, run_path
from kdbench.sweep.plan import Plan, resolve_teacher
from kdbench.sweep.runner import run_in_process
from kdbench.train import checkpoint, run

pytestmark = pytest.mark.slow

QUIET = {"log": lambda *_: None}


def kdbench_run(results: Path, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "kdbench.cli", "run", "--preset", "smoke", "--results",
            str(results), "data.params.videos=20", *overrides]  # fmt: skip
    env = dict(os.environ, CI="1")
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    """A real tmpfs of ``size`` at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# 1. Stale results ---------------------------------------------------------------------------


def test_1_a_changed_method_default_gets_a_new_id_and_trains(tiny, tmp_path, monkeypatch):
    cfg = tiny()
    first = run(cfg, tmp_path, **QUIET)
    assert first["config"]["method"]["params"] == {"aux_weight": 1.0}  # defaults written out
    monkeypatch.setitem(Vanilla.__init__.__kwdefaults__, "aux_weight", 0.5)
    changed = tiny()
    assert changed.run_id() != cfg.run_id()
    second = run(changed, tmp_path, **QUIET)
    assert second["config"]["method"]["params"] == {"aux_weight": 0.5}
    assert second["finished"] >= first["finished"] and len(load_results(tmp_path)) == 2


def test_1_a_changed_loss_and_format_version_get_new_ids(tiny, tmp_path, monkeypatch):
    plugin = tmp_path / "kdbench_test_plugin.py"
    source = (
        "from kdbench.methods.vanilla import Vanilla\n"
        "from kdbench.registry import METHODS\n"
        "@METHODS.register('test-plugin-ce')\n"
        "class PluginCE(Vanilla):\n"
        "    def losses(self, batch, s_out, t_out):\n"
        "        return super().losses(batch, s_out, t_out)\n"
    )
    plugin.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("kdbench_test_plugin")
    before = tiny("method.name=test-plugin-ce").run_id()
    plugin.write_text(source.replace("return super()", "return  super()"))  # the code changed
    identity.module_digest.cache_clear()
    assert tiny("method.name=test-plugin-ce").run_id() != before
    plain = tiny().run_id()
    monkeypatch.setattr(SynthFF, "format_version", SynthFF.format_version + 1)
    assert tiny().run_id() != plain  # a new SynthFF corpus format is a new experiment


def test_1_a_hit_says_when_and_rerun_recomputes(tiny, tmp_path, capsys):
    cfg = tiny()
    first = run(cfg, tmp_path)
    again = run(cfg, tmp_path)
    assert again["finished"] == first["finished"]
    assert f"already done (result of {first['finished']})" in capsys.readouterr().err
    time.sleep(1.1)  # "finished" has one-second resolution
    fresh = run(cfg, tmp_path, rerun=True)
    assert fresh["finished"] > first["finished"] and fresh["resumed_from_epoch"] == 0
    assert "already done" not in capsys.readouterr().err


def test_1_sweep_run_rerun_trains_finished_runs_again(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "name: again\nextends: smoke\n"
        "base: {train: {epochs: 1}, data: {params: {videos: 20}}}\n"
        "grid: {method: [vanilla], seed: [0]}\n"
    )
    args = ["sweep", "run", str(spec), "--results", str(tmp_path / "r"), "--executor", "debug"]
    assert main(args) == 0
    [first] = load_results(tmp_path / "r")
    time.sleep(1.1)  # "finished" has one-second resolution
    assert main(args) == 0
    assert load_results(tmp_path / "r")[0]["finished"] == first["finished"]  # a plain run: kept
    assert main([*args, "--rerun"]) == 0
    [again] = load_results(tmp_path / "r")
    assert again["run_id"] == first["run_id"] and again["finished"] > first["finished"]


# 5. Two identical runs at once ----------------------------------------------------------------


def test_5_two_identical_runs_at_once_train_once(tmp_path):
    """The second of two identical runs waits on the first's lock, then finds its result.
    The first is stopped (SIGSTOP) while it holds the lock, so the second surely meets it
    held, however slowly it starts on shared cores."""
    first = kdbench_run(tmp_path, "train.epochs=3")
    wait_for(lambda: any(tmp_path.rglob("run.lock")), first, "the first run's lock")
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = kdbench_run(tmp_path, "train.epochs=3")
        kill_after = threading.Timer(300, second.kill)
        kill_after.start()
        seen = []
        while not any("waiting: pid" in line for line in seen) and second.poll() is None:
            seen.append(second.stdout.readline())
        kill_after.cancel()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    outputs = [
        first.communicate(timeout=300)[0],
        "".join(seen) + second.communicate(timeout=300)[0],
    ]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert "waiting: pid" in outputs[1] and "already done" in outputs[1], outputs
    assert "already done" not in outputs[0], outputs
    records = load_results(tmp_path)
    assert len(records) == 1 and records[0]["attempts"] == 1
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("run.lock"))


def wait_for(condition, proc: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if ``proc`` ends or time runs out."""
    deadline = time.time() + timeout_s
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {what}: {proc.communicate()[0]}")
        time.sleep(0.05)


def test_5_a_stale_lock_of_a_dead_process_is_taken_over(tiny, tmp_path):
    cfg = tiny()
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = checkpoint_dir(tmp_path, cfg.resolved().run_id()) / "run.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": 0}))
    lines = []
    record = run(cfg, tmp_path, log=lines.append)
    assert record["status"] == "done" and not lock.exists()
    assert any("taking over the stale lock" in line for line in lines)


# 6. Damaged checkpoints -----------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: os.urandom(len(data)),
    "empty": lambda data: b"",
    "one bit": lambda data: data[:-100] + bytes([data[-100] ^ 1]) + data[-99:],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_6_a_damaged_last_checkpoint_is_set_aside_and_the_previous_used(damage, tiny, tmp_path):
    cfg = tiny("train.epochs=2", "train.keep_last=true")
    whole = run(cfg, tmp_path, **QUIET)
    folder = checkpoint_dir(tmp_path, cfg.run_id())
    last = folder / "last.pt"
    last.write_bytes(DAMAGE[damage](last.read_bytes()))
    run_path(tmp_path, cfg.run_id()).unlink()  # as if the run had been killed after epoch 2
    lines = []
    record = run(cfg, tmp_path, log=lines.append)
    assert record["status"] == "done" and record["resumed_from_epoch"] == 1  # from prev.pt
    assert [e["epoch"] for e in record["history"]] == [1, 2]
    assert record["history"][1]["test"] == whole["history"][1]["test"]  # same numbers
    [fault] = record["checkpoint_faults"]
    assert str(last) in fault and "set aside" in fault
    assert any(str(last) in line for line in lines)
    assert len(list(folder.glob("last.pt.damaged-*[0-9]Z"))) == 1


def test_6_both_checkpoints_damaged_start_from_scratch(tiny, tmp_path):
    cfg = tiny("train.epochs=2", "train.keep_last=true")
    run(cfg, tmp_path, **QUIET)
    folder = checkpoint_dir(tmp_path, cfg.run_id())
    for name in ("last.pt", "prev.pt"):
        (folder / name).write_bytes(b"not a checkpoint")
    run_path(tmp_path, cfg.run_id()).unlink()
    record = run(cfg, tmp_path, **QUIET)
    assert record["status"] == "done" and record["resumed_from_epoch"] == 0
    assert len(record["checkpoint_faults"]) == 2


def test_6_a_truncated_teacher_is_trained_again_and_its_students_run(tiny, tmp_path):
    plan = Plan()
    student = resolve_teacher(tiny("method.name=kd"), plan)
    first = run_in_process([*plan.teachers, student], tmp_path, **QUIET)
    assert [r["status"] for r in first] == ["done", "done"]
    weights = tmp_path / first[0]["checkpoint"]
    weights.write_bytes(weights.read_bytes()[:1000])
    run_path(tmp_path, student.run_id()).unlink()
    lines = []
    again = run_in_process([*plan.teachers, student], tmp_path, log=lines.append)
    assert [r["status"] for r in again] == ["done", "done"]
    assert again[0]["finished"] >= first[0]["finished"]  # trained again, not trusted
    assert list(weights.parent.glob("model.pt.damaged-*"))
    assert list((tmp_path / "runs").glob(f"{first[0]['run_id']}.json.damaged-*"))


def test_6_a_full_disk_leaves_no_partial_checkpoint_and_the_run_completes_later(tiny, tmp_path):
    cfg = tiny("train.epochs=1")
    with tmpfs(tmp_path / "disk", "1m") as disk:
        with pytest.raises(OSError, match=r"No space left on device: '.*last\.pt'"):
            run(cfg, disk, **QUIET)
        assert not list(disk.rglob("*.tmp")) and not list(disk.rglob("*.pt"))
        record = json.loads(run_path(disk, cfg.run_id()).read_text())
        assert record["status"] == "failed" and "No space left" in record["error"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert run(cfg, disk, **QUIET)["status"] == "done"
        assert (disk / "checkpoints" / cfg.run_id() / "model.pt").stat().st_size > 0


# 10. Divergence and unwritable results --------------------------------------------------------


def test_10_divergence_is_named_by_epoch_and_step(tiny, tmp_path):
    cfg = tiny("train.lr=1000000.0", "train.epochs=3", "data.batch_size=64")  # one step per epoch
    with pytest.raises(loop.DivergedError, match=r"diverged at epoch \d+"):
        run(cfg, tmp_path, **QUIET)
    record = json.loads(run_path(tmp_path, cfg.run_id()).read_text())
    assert record["error"].startswith("DivergedError: diverged at epoch")


def test_10_unwritable_results_fail_before_training(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained"))
    a_file = tmp_path / "results.txt"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"results folder .*results\.txt is a file"):
        run(tiny(), a_file, **QUIET)
    readonly = pytest.raises(ConfigError, match=r"results folder .*ro is not writable")
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as folder, readonly:
        run(tiny(), folder, **QUIET)


# 12. The last epoch's checkpoint --------------------------------------------------------------


def test_12_the_epoch_checkpoint_is_removed_when_done_unless_kept(tiny, tmp_path):
    done = run(tiny(), tmp_path, **QUIET)
    folder = (tmp_path / done["checkpoint"]).parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "model.pt.sha256"]
    kept = run(tiny("train.keep_last=true", "train.epochs=2"), tmp_path, **QUIET)
    names = {p.name for p in (tmp_path / kept["checkpoint"]).parent.iterdir()}
    assert {"last.pt", "prev.pt", "model.pt"} <= names
    assert checkpoint.verify(tmp_path / kept["checkpoint"]) is None


# Determinism ----------------------------------------------------------------------------------


def test_the_same_config_and_seed_give_identical_metrics_in_fp32(tiny, tmp_path):
    cfg = tiny("train.precision=fp32", "train.epochs=2", "data.params.videos=40")
    a = run(cfg, tmp_path / "a", **QUIET)
    b = run(cfg, tmp_path / "b", **QUIET)
    timing = ("time_s", "data_wait_s")
    strip = lambda h: [{k: v for k, v in e.items() if k not in timing} for e in h]  # noqa: E731
    assert json.dumps(strip(a["history"])) == json.dumps(strip(b["history"]))  # NaN too
    assert 0 < a["best"]["test"]["auc"] < 1


def test_6_a_result_without_its_weights_stays_a_result_but_cannot_teach(tiny, tmp_path):
    plan = Plan()
    student = resolve_teacher(tiny("method.name=kd"), plan)
    teacher, _ = run_in_process([*plan.teachers, student], tmp_path, **QUIET)
    (tmp_path / teacher["checkpoint"]).unlink()  # a results folder copied without weights
    again = run(plan.teachers[0], tmp_path, **QUIET)
    assert again["finished"] == teacher["finished"]  # still its result: not trained again
    run_path(tmp_path, student.run_id()).unlink()
    with pytest.raises(ConfigError, match="no finished run with intact weights"):
        run(student, tmp_path, **QUIET)  # a teacher needs them: its record set aside
    assert list((tmp_path / "runs").glob(f"{teacher['run_id']}.json.damaged-*"))
    healed = run_in_process([*plan.teachers, student], tmp_path, **QUIET)
    assert [r["status"] for r in healed] == ["done", "done"]


def test_6_a_damaged_teacher_checkpoint_given_by_path_is_refused(tiny, tmp_path):
    plan = Plan()
    resolve_teacher(tiny("method.name=kd"), plan)
    [teacher] = run_in_process(plan.runs(), tmp_path, **QUIET)
    weights = tmp_path / teacher["checkpoint"]
    data = bytearray(weights.read_bytes())
    data[-100] ^= 1
    weights.write_bytes(bytes(data))
    student = tiny("method.name=kd", f"teacher.checkpoint={weights}")
    with pytest.raises(ConfigError, match=r"teacher\.checkpoint: damaged file .*checksum"):
        run(student, tmp_path, **QUIET)
