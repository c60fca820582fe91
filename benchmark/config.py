"""Typed run configuration: the dataclasses, shipped presets, run ids (``kdbench.schema`` reads
YAML and ``key.sub=value`` overrides into them)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from kdbench.errors import ConfigError  # public here too: plugins raise kdbench.config's
from kdbench.paths import package_data
from kdbench.registry import unknown_message
from kdbench.schema import apply_overrides, from_dict

# Public in kdbench.config before kdbench.schema held them: re-exported for plugins and scripts.
from kdbench.schema import coerce as coerce
from kdbench.schema import load_yaml as load_yaml
from kdbench.schema import parse_override as parse_override


@dataclass
class ModelConfig:
    """A network: a registered kdbench model or any timm name, with keyword arguments."""

    name: str = "mobilenetv3_small_050"  # a kdbench model (`kdbench list models`) or any timm name
    kwargs: dict = field(default_factory=dict)  # the model's keyword arguments
    checkpoint: str | None = None  # a state dict to start from (weights_only load)
    # Pretrained weights of a timm model, offline: a .pth / .safetensors file or a Hugging Face
    # cache folder, loaded by timm (weights only; the classifier where the class count matches).
    pretrained: str | None = None


@dataclass
class TeacherConfig(ModelConfig):
    """The frozen teacher: its weights come from a teacher run (``run``) or a ``checkpoint``."""

    name: str = "resnet18"  # as student.name
    run: str | None = None  # run id of a finished teacher run in the same results folder
    # How a sweep trains the teacher when neither `run` nor `checkpoint` is given: a vanilla run
    # on the same data with this seed,
    seed: int = 0
    train: dict = field(default_factory=dict)  # these `train` overrides
    data: dict = field(default_factory=dict)  # and these `data` overrides: {train_fraction: 1}
    # Computation: bf16 autocast where the device does bf16 natively ("auto"), or forced.
    precision: str = "auto"  # auto | fp32 | bf16
    # Reuse stored teacher outputs when the dataset has fixed views (same numbers, less time).
    cache: bool = True


@dataclass
class MethodConfig:
    name: str = "vanilla"  # a registered method (`kdbench list methods`)
    params: dict = field(default_factory=dict)  # the method's keyword hyper-parameters


@dataclass
class DatasetRef:
    """A registered dataset and its keyword arguments."""

    name: str = ""  # a registered dataset
    params: dict = field(default_factory=dict)  # its keyword arguments


@dataclass
class DataConfig:
    name: str = "synthff"  # a registered dataset (`kdbench list datasets`)
    params: dict = field(default_factory=dict)  # the dataset's keyword arguments
    batch_size: int = 64  # training batch
    eval_batch_size: int = 256  # evaluation batch (and teacher-cache passes); not in the run id
    workers: int | None = None  # DataLoader processes; None: 0 on CPU, up to 8 on CUDA
    test: DatasetRef | None = None  # test on another dataset (cross-dataset evaluation)
    # Limited data: train on this fraction of the training split's videos (per label, the same
    # videos for every seed); val and test stay whole. The teacher may see more (teacher.data).
    train_fraction: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training split
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3  # peak learning rate (any float, e.g. 1e-3)
    weight_decay: float = 0.05  # decoupled for adamw, L2 for sgd
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | step | constant
    milestones: list = field(default_factory=list)  # step schedule: epochs where lr *= gamma
    gamma: float = 0.1  # step schedule: the factor
    select: str = "auc"  # validation metric that picks the best epoch
    # The student's computation: bf16 autocast (fp32 weights and losses) where the device does
    # bf16 natively ("auto": CUDA >= 8.0, CPUs with AVX512-BF16/AMX), or forced. In the run id.
    precision: str = "auto"  # auto | fp32 | bf16
    keep_last: bool = False  # keep the last epoch's checkpoint (last.pt) after the run is done
    # Decay per optimizer step of an exponential moving average of the student's weights, which
    # is then what the run evaluates and saves (as timm's --model-ema); 0: off.
    ema: float = 0.0
    # Seconds between resume checkpoints (last.pt); 0: after every epoch. The last epoch is
    # always saved. Where a run executes, not what it computes: not in the run id.
    checkpoint_every_s: float = 0.0
    # Epochs at which the test split is evaluated: "all", or "best": only those whose
    # validation metric (`select`) is the best so far, and the last, which are the only ones
    # the record can report (same result, fewer passes; the history then lacks the others).
    test_epochs: str = "all"
    # Processes the run trains on (one per GPU; gloo processes on CPU), sharing each global
    # batch of data.batch_size equally (torchrun, a Slurm job of that many tasks, or started by
    # kdbench itself). In the run id: methods whose loss couples a batch's samples see each
    # process's share only.
    devices: int = 1
    # With devices > 1: BatchNorm statistics over the global batch (SyncBatchNorm), so N
    # processes train what one does; false: each process's own (faster on GPUs, another result).
    sync_bn: bool = True


@dataclass
class RunConfig:
    """One training run: a student trained by a method, optionally from a frozen teacher."""

    seed: int = 0  # seeds the student's init, the data order and augmentation
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig | None = None  # none: no teacher (vanilla, or a teacher's own run)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N; not in the run id

    def run_id(self) -> str:
        """A content hash of what computes the result: the config with every default filled in
        (not where it runs) and the code version of its method, models and datasets."""
        from kdbench.identity import code_version, resolved

        data = resolved(asdict(self))
        for key in NOT_HASHED:
            drop(data, key)
        for key, default in NEW_KEYS.items():
            drop(data, key, only_if=default)
        blob = json.dumps({"config": data, "code": code_version(data)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def resolved(self) -> RunConfig:
        """This config with the defaults of its method, dataset and model parameters written
        out, as its record stores it."""
        from kdbench.identity import resolved

        return from_dict(RunConfig, resolved(asdict(self)))


# Where and how a run executes, not what it computes: not part of its id.
NOT_HASHED = (
    "device",
    "data.workers",
    "data.eval_batch_size",
    "teacher.cache",
    "train.keep_last",
    "train.checkpoint_every_s",
)


# Keys added after results existed, left out of the hash at their default (which computes what
# the runs before them did), so those runs keep their ids.
NEW_KEYS = {
    "data.train_fraction": 1.0,
    "teacher.data": {},
    "train.test_epochs": "all",
    "train.ema": 0.0,
    "student.pretrained": None,
    "teacher.pretrained": None,
    "train.devices": 1,
    "train.sync_bn": True,
}


def drop(data: dict, key: str, only_if: Any = ...) -> None:
    """Remove dotted ``key`` from ``data`` (if its value is ``only_if``, when given)."""
    *sections, leaf = key.split(".")
    node = data
    for section in sections:
        node = node.get(section) or {}  # no teacher: nothing to drop
    if leaf in node and (only_if is ... or node[leaf] == only_if):
        del node[leaf]


PRESET_FOLDERS = {"run": "presets", "sweep": "presets/sweeps"}
PRESET_COMMANDS = {"run": "kdbench run --preset", "sweep": "kdbench sweep run --preset"}


def preset_names(kind: str = "run") -> list[str]:
    """Shipped presets of ``kind``: ``run`` (one config) or ``sweep`` (a grid of runs)."""
    files = package_data(PRESET_FOLDERS[kind])
    return sorted(p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str, kind: str = "run") -> dict:
    """A preset shipped with the package: ``benchmark/presets/NAME.yaml`` for a run,
    ``benchmark/presets/sweeps/NAME.yaml`` for a sweep."""
    if name not in preset_names(kind):
        other = next((k for k in PRESET_FOLDERS if k != kind and name in preset_names(k)), None)
        if other:
            hint = f"try `{PRESET_COMMANDS[other]} {name}`"
            raise ConfigError(f"{name!r} is a {other} preset, not a {kind} preset; {hint}")
        raise ConfigError(unknown_message(f"{kind} preset", name, preset_names(kind)))
    text = package_data(PRESET_FOLDERS[kind], f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def build_config(data: dict, overrides: list[str] = ()) -> RunConfig:
    """A run config from YAML data and overrides, every parameter default written out. Unknown
    keys, wrong types and unknown method or dataset names fail before anything heavy is
    imported (resolving the defaults imports the method and dataset code)."""
    cfg = from_dict(RunConfig, apply_overrides(data, list(overrides)))
    check_names(cfg)
    return cfg.resolved()


def check_names(cfg: RunConfig) -> None:
    """Unknown method and dataset names as one did-you-mean line, without importing them."""
    from kdbench.registry import DATASETS, METHODS, UnknownNameError

    checks = [(METHODS, cfg.method.name, "method.name"), (DATASETS, cfg.data.name, "data.name")]
    if cfg.data.test:
        checks.append((DATASETS, cfg.data.test.name, "data.test.name"))
    for registry, name, key in checks:
        try:
            registry.check_name(name)
        except UnknownNameError as err:
            raise ConfigError(f"{key}: {err}") from None
