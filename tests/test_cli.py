"""The command line: every command in its help, one clear line for bad names, plug-in methods
through the harness."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.cli import main

pytestmark = pytest.mark.slow
COMMANDS = {"bench", "config", "data", "demo", "flops", "list", "report", "run", "sweep"}


def test_help_lists_every_command_one_module_each():
    """`kdbench --help` (the installed console script) names every command with its line of
    help; each command is one module of benchmark/cli/."""
    folder = Path(__file__).resolve().parents[1] / "benchmark" / "cli"
    modules = {path.stem for path in folder.glob("*.py") if not path.stem.startswith("_")}
    assert modules == COMMANDS
    kdbench = Path(sys.executable).with_name("kdbench")
    done = subprocess.run([kdbench, "--help"], capture_output=True, text=True, check=True)
    listed = re.search(r"\{([a-z,]+)\}", done.stdout).group(1).split(",")
    assert sorted(listed) == sorted(COMMANDS)
    for name in COMMANDS:
        assert re.search(rf"^ +{name} +\w", done.stdout, re.MULTILINE), name
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["method.name=kdd"], "unknown method 'kdd'; did you mean 'kd' or 'rkd' or 'dkd'?"),
        (["student.name=mobilenetv3_smal_050"], "did you mean 'mobilenetv3_small_050'"),
        (["data.name=synthf"], "unknown dataset 'synthf'; did you mean 'synthff'?"),
        (["train.epocs=3"], "unknown config key 'train.epocs'; did you mean 'train.epochs'"),
        (["method.params.temprature=2", "method.name=kd"], "did you mean 'temperature'?"),
    ],
)
def test_bad_names_give_one_clear_line(args, message, tmp_path, capsys):
    code = main(["run", "--preset", "smoke", "--results", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_list_methods_shows_every_method_with_a_description(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for name in ["vanilla", "kd", "fitnets", "at", "crd", "two-in-one", "feat-both"]:
        assert name in out
    assert "Hinton" in out


def test_list_shows_the_detectors_and_backends_one_sentence_each(capsys):
    assert main(["list", "detectors"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "haar │ OpenCV's Viola-Jones frontal-face cascade" in out and "dlib │ dlib's HOG" in out
    assert main(["list", "backends"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "slurm │ job arrays" in out and "local │ subprocesses here" in out


def test_flops_prints_params_and_flops(capsys):
    assert main(["flops", "resnet10t", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet10t: 4.9") and "GFLOPs at 32x32" in out


PLUGIN = '''
"""A method defined outside kdbench: logit matching by mean squared error."""
import torch.nn.functional as F
from kdbench.method import Method
from kdbench.registry import METHODS


@METHODS.register("logit-mse")
class LogitMSE(Method):
    description = "CE + MSE between student and teacher logits"

    def __init__(self, ctx, *, weight: float = 1.0):
        super().__init__(ctx)
        self.weight = weight

    def losses(self, batch, s_out, t_out):
        return {
            "ce": F.cross_entropy(s_out.logits, batch["label"]),
            "mse": self.weight * F.mse_loss(s_out.logits, t_out.logits),
        }
'''


def test_a_plugin_method_runs_through_the_harness(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_kd_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = tmp_path / "results"
    args = ["--plugin", "my_kd_plugin", "run", "--preset", "smoke", "--results", str(results),
            "method.name=logit-mse", "method.params.weight=0.5", "data.params.videos=20",
            "train.epochs=1", "teacher.train.epochs=1"]  # fmt: skip
    assert main(args) == 0
    records = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    student = next(r for r in records if r["config"]["method"]["name"] == "logit-mse")
    assert student["status"] == "done"
    assert set(student["history"][0]["train"]) == {"ce", "mse"}
    assert student["config"]["method"]["params"] == {"weight": 0.5}


def test_run_says_what_it_needs_when_given_nothing_or_both(tmp_path, capsys):
    assert main(["run", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "what to run: a config file or --preset NAME (run presets: smoke)" in err
    assert "not both" not in err
    config = tmp_path / "c.yaml"
    config.write_text("train: {epochs: 1}\n")
    assert main(["run", str(config), "--preset", "smoke", "--results", str(tmp_path)]) == 2
    assert "give a config file or --preset NAME, not both" in capsys.readouterr().err


def test_the_teacher_is_announced_only_when_it_is_trained(tmp_path, capsys):
    args = ["run", "--preset", "smoke", "--results", str(tmp_path), "method.name=kd"]
    args += ["train.epochs=1", "teacher.train.epochs=1", "data.params.videos=20"]
    assert main(args) == 0
    assert "training the teacher first" in capsys.readouterr().err
    assert main([*args, "seed=1"]) == 0  # another student of the same teacher
    assert "training the teacher first" not in capsys.readouterr().err


def test_a_config_typo_fails_before_torch_is_imported():
    """The 2-second promise: `kdbench run --preset smoke method.name=kdd` reports the typo
    before the training stack (torch) is imported."""
    code = (
        "import sys\n"
        "from kdbench.cli import main\n"
        "rc = main(['run', '--preset', 'smoke', 'method.name=kdd'])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"], done.stderr[-2000:]
    assert "method.name: unknown method 'kdd'; did you mean" in done.stderr


def console_script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    kdbench = Path(sys.executable).parent / "kdbench"
    return subprocess.run([str(kdbench), *args], capture_output=True, text=True, cwd=cwd)


def test_list_features_shows_every_feature_with_its_shape_and_timm_module():
    done = console_script("list", "features", "resnet10t", "--size", "64", "--preact")
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert "[2, 256, 4, 4]" in rows["stage4"] and "layer3 (reduction 16)" in rows["stage4"]
    assert "[2, 64, 32, 32]" in rows["stage1"] and "act1" in rows["stage1"]  # the stem
    assert "[2, 512]" in rows["pooled"] and "stage5.preact" in rows
    kwargs = console_script("list", "features", "dual-branch", "spatial=resnet10t", "--size", "64")
    assert "spatial.stage5" in kwargs.stdout and "fused" in kwargs.stdout, kwargs.stderr
    # the layout that stage methods read (Output.stages, .embedding, .branches)
    assert "stages: stage1, stage2, stage3, stage4, stage5; embedding: pooled" in done.stdout
    layout = next(line for line in kwargs.stdout.splitlines() if line.startswith("stages:"))
    assert layout.startswith("stages: spatial.stage1, ") and "embedding: fused" in layout
    assert "; branch frequency: frequency.stage1, " in layout


def test_list_methods_verbose_gives_each_hyper_parameter_its_default_and_meaning():
    done = console_script("list", "methods", "-v", "--pattern", "*kd")
    assert done.returncode == 0, done.stderr
    cells = {
        row[1].strip(): row[2].strip()
        for row in (line.split("│") for line in done.stdout.splitlines())
        if len(row) > 3 and " = " in row[1]
    }
    assert "alpha · T²" in cells["alpha = 0.9"]  # kd: from its class docstring
    assert "weight of TCKD" in cells["alpha = 1.0"]  # dkd: its __init__ docstring
    assert "temperature = 4.0" in cells


def test_config_show_prints_the_resolved_config_and_the_id_a_run_gets(tmp_path):
    done = console_script("config", "show", "--preset", "smoke", "train.lr=1e-3")
    assert done.returncode == 0, done.stderr
    *body, last = done.stdout.strip().splitlines()
    import yaml

    from kdbench.config import build_config, load_preset, load_yaml

    shown = yaml.safe_load("\n".join(body))
    expected = build_config(load_preset("smoke"), ["train.lr=1e-3"])
    assert shown["train"]["lr"] == 1e-3 and "alpha" not in shown["method"]["params"]
    assert last == f"# run id: {expected.run_id()}"
    (tmp_path / "shown.yaml").write_text("\n".join(body))
    assert build_config(load_yaml(tmp_path / "shown.yaml")).run_id() == expected.run_id()


def test_overrides_after_an_option_are_applied_too(tmp_path):
    """argparse takes a positional list once: ``key=value`` words after an option join it."""
    done = console_script(
        "config",
        "show",
        "--preset",
        "smoke",
        "train.epochs=1",
        "--preset",
        "smoke",
        "train.lr=0.25",
    )
    assert done.returncode == 0, done.stderr
    assert "  epochs: 1\n" in done.stdout and "  lr: 0.25\n" in done.stdout
    late = console_script(
        "run", "--preset", "smoke", "train.epochs=1", "--results", str(tmp_path), "method.name=kdd"
    )
    assert late.returncode == 2 and "method.name: unknown method 'kdd'" in late.stdout + late.stderr
    stray = console_script("config", "show", "--preset", "smoke", "--nope")
    assert stray.returncode == 2 and "unrecognized arguments: --nope" in stray.stderr


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line_not_a_traceback(tmp_path):
    import os
    import signal
    import time

    kdbench = Path(sys.executable).parent / "kdbench"
    env = dict(os.environ, CI="1", KDBENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [str(kdbench), "run", "--preset", "smoke", "--results", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "r").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the command has parsed its config and is starting the run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in out + err
