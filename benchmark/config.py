"""Typed run configuration: dataclasses, YAML (safe_load), ``key.sub=value`` overrides, run ids."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kdbench.errors import ConfigError  # public here too: plugins raise kdbench.config's
from kdbench.registry import unknown_message


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


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            prefix = f"{where}." if where else ""
            raise ConfigError(unknown_message("config key", key, names, prefix))
        values[key] = coerce(hints[key], value, path)
    return cls(**values)


def coerce(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``hint`` (nested dataclasses built recursively)."""
    options = typing.get_args(hint) if is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{path}: expected a value, got null")
    for option in options:
        if dataclasses.is_dataclass(option):
            return from_dict(option, value, path)
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if base is float and str not in options and isinstance(value, str):
            number = as_float(value)  # YAML 1.1 reads 1e-3 and 1.0e6 as strings
            if number is not None:
                return number
        if isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{path}: expected {expected}, got {value!r}")


def as_float(text: str) -> float | None:
    """``text`` as Python's ``float()`` reads it, or None."""
    try:
        return float(text)
    except ValueError:
        return None


def is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=0.01`` -> (["train", "lr"], 0.01); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key.sub=value, e.g. train.epochs=5")
    return key.split("."), yaml.safe_load(raw) if raw else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with each ``key.sub=value`` set (missing sections created)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value)
    return data


def set_path(data: dict, keys: list[str], value: Any) -> None:
    """Set ``data[k1][k2]… = value``; where a mapping already holds a dotted key that the
    remaining keys spell (a sweep's grid axis ``train.lr``), that key is the one set."""
    node = data
    for i, key in enumerate(keys[:-1]):
        dotted = ".".join(keys[i:])
        if dotted in node:
            node[dotted] = value
            return
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def load_yaml(path: str | Path, empty_ok: bool = False) -> dict:
    """A YAML file as plain data (``safe_load``: tags that would run code are rejected). A
    missing, unreadable, malformed or (unless ``empty_ok``) empty file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None and empty_ok:
        return {}
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty (expected a mapping, e.g. train: {{epochs: 5}})"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


PRESET_FOLDERS = {"run": "presets", "sweep": "presets/sweeps"}
PRESET_COMMANDS = {"run": "kdbench run --preset", "sweep": "kdbench sweep run --preset"}


def preset_names(kind: str = "run") -> list[str]:
    """Shipped presets of ``kind``: ``run`` (one config) or ``sweep`` (a grid of runs)."""
    files = resources.files("kdbench").joinpath(PRESET_FOLDERS[kind])
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
    text = resources.files("kdbench").joinpath(PRESET_FOLDERS[kind], f"{name}.yaml").read_text()
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
