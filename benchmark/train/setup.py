"""What a run is built from: its config checked, then its data, networks, method, teacher side
and optimiser, as one ``Setup``."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdbench.config import ConfigError, RunConfig
from kdbench.dataset import unchanged_random_state
from kdbench.method import Context, Method, build_method, check_params
from kdbench.models import build_model, model_names
from kdbench.models.preact import PreactUnsupported, enable_preact
from kdbench.output import Head
from kdbench.registry import DATASETS, METHODS, MODELS, UnknownNameError, unknown_message
from kdbench.schema import coerce
from kdbench.train.data import build_datasets, check_batch, dataset_labels, make_loader
from kdbench.train.device import place, resolve_device
from kdbench.train.distributed import World, broadcast, broadcast_state, main_first, run_device
from kdbench.train.ema import WeightAverage
from kdbench.train.optim import LR_SCHEDULES, OPTIMIZERS, make_optimizer
from kdbench.train.precision import batch_shape, check_precision, choose_dtype
from kdbench.train.syncbn import synchronise_batchnorm
from kdbench.train.teacher import CachedTeacher, LiveTeacher, load_teacher, teacher_side

TEST_EPOCHS = ("all", "best")
# keyword arguments most timm models take (timm.create_model passes them on untyped)
TIMM_KWARGS = {"drop_rate": float, "drop_path_rate": float, "drop_block_rate": float}
TIMM_KWARGS |= {"global_pool": str, "in_chans": int, "output_stride": int}


@dataclass
class Setup:
    """Everything a run trains and evaluates with, built from its config."""

    loaders: dict[str, DataLoader]
    student: nn.Module
    teacher: nn.Module | None
    teacher_outputs: LiveTeacher | CachedTeacher | None  # what a step's teacher side calls
    method: Method
    optimizer: torch.optim.Optimizer
    device: torch.device
    notes: dict  # how the teacher side ran (precision, cache), for the run's record
    dtype: torch.dtype = torch.float32  # the student's autocast dtype (``train.precision``)
    verdict: dict | None = None  # how ``train.precision: auto`` chose ``dtype`` (measured)
    average: WeightAverage | None = None  # ``train.ema``: the weights evaluated and saved
    datasets: dict[str, Dataset] = field(default_factory=dict)  # whole splits (loaders: shares)
    world: World = field(default_factory=World)  # this process among the run's (train.devices)

    def optimizer_params(self) -> list[nn.Parameter]:
        """What the optimiser trains: the student's parameters and the method's."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def evaluated(self) -> nn.Module:
        """The network a run evaluates, costs and saves: the weight average when there is one,
        as the method deploys it (the student itself, but for SimKD)."""
        return self.method.deployed(self.average.model if self.average else self.student)


def validate(cfg: RunConfig) -> None:
    """Cheap checks of names and parameters, before anything is built or written."""
    method_cls = METHODS.get(cfg.method.name)
    check_params(f"method {cfg.method.name!r}", method_cls, cfg.method.params)
    for data in filter(None, (cfg.data, cfg.data.test)):
        check_params(f"dataset {data.name!r}", DATASETS.get(data.name), data.params)
    known = set(model_names())
    for role, model in [("student", cfg.student), ("teacher", cfg.teacher)]:
        if model is None:
            continue
        if model.name not in known:
            raise UnknownNameError(unknown_message("model", model.name, known))
        if model.name in MODELS:  # a kdbench model: its keyword arguments are known
            check_params(f"{role}.kwargs of {model.name!r}", MODELS.get(model.name), model.kwargs)
            check_types(f"{role}.kwargs", MODELS.get(model.name), model.kwargs)
        else:  # timm forwards unknown keywords to the model class: the common ones are typed
            for key, value in model.kwargs.items():
                if key in TIMM_KWARGS:
                    coerce(TIMM_KWARGS[key], value, f"{role}.kwargs.{key}")
    if method_cls.needs_teacher and cfg.teacher is None:
        raise ConfigError(
            f"method {cfg.method.name!r} distils from a teacher: set teacher.name and "
            "teacher.run (a teacher run id) or teacher.checkpoint"
        )
    check_precision(cfg.train.precision, "train.precision")
    if cfg.teacher:
        check_precision(cfg.teacher.precision, "teacher.precision")
    if not 0.0 < cfg.data.train_fraction <= 1.0:
        raise ConfigError(
            f"data.train_fraction: expected a fraction in (0, 1], got {cfg.data.train_fraction}"
        )
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(unknown_message("optimizer", cfg.train.optimizer, OPTIMIZERS))
    if cfg.train.devices < 1:
        raise ConfigError(f"train.devices: expected at least 1, got {cfg.train.devices}")
    check_batch(cfg.data.batch_size, cfg.train.devices)
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs: expected at least 1, got {cfg.train.epochs}")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: expected a learning rate > 0, got {cfg.train.lr}")
    if not 0.0 <= cfg.train.ema < 1.0:
        raise ConfigError(f"train.ema: expected a decay in [0, 1) (0: off), got {cfg.train.ema}")
    if cfg.train.test_epochs not in TEST_EPOCHS:
        raise ConfigError(unknown_message("train.test_epochs", cfg.train.test_epochs, TEST_EPOCHS))
    if cfg.train.schedule not in LR_SCHEDULES:
        raise ConfigError(unknown_message("schedule", cfg.train.schedule, LR_SCHEDULES))


def check_types(owner: str, fn, values: dict) -> None:
    """Each value of ``values`` fits the annotation of ``fn``'s keyword of that name, as a
    config field would (``config.coerce``; the values themselves are left as given)."""
    try:
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except (NameError, TypeError):  # an annotation that cannot be resolved: nothing to check
        return
    for key, value in values.items():
        if key in hints:
            coerce(hints[key], value, f"{owner}.{key}")


def build(cfg: RunConfig, results: Path, world: World | None = None) -> Setup:
    """Everything ``cfg`` trains with, on this process of ``world`` (one by default): the main
    process prepares the data and the teacher cache first, the others then read them."""
    world = world or World()
    device = run_device(world, resolve_device(cfg.device))
    with main_first():
        datasets = build_datasets(cfg.data)
    loaders = {s: make_loader(d, cfg, s, device, world) for s, d in datasets.items()}
    num_classes = datasets["train"].num_classes
    check_image_size(cfg, datasets["train"])
    student = build_model(
        cfg.student.name,
        num_classes,
        cfg.student.checkpoint,
        cfg.student.pretrained,
        **cfg.student.kwargs,
    )
    student = place(student, device)
    method_cls = METHODS.get(cfg.method.name)
    teacher, weights = None, None
    if method_cls.needs_teacher:
        teacher, weights = load_teacher(cfg, num_classes, results, device)
    if method_cls.needs_preact:
        request_preact(cfg.method.name, student, teacher)
    ctx = dry_run(student, teacher, datasets["train"], num_classes, device)
    ctx = replace(ctx, total_epochs=cfg.train.epochs, steps_per_epoch=len(loaders["train"]))
    method = build_method(cfg.method.name, ctx, cfg.method.params).to(device)
    # Whether the precision verdict and the teacher cache exist yet must not move the random
    # streams training draws from (CRD's negatives): same id, same result. The main process
    # times the student for `auto` (before its BatchNorm is synchronised) and tells the others.
    shape = batch_shape(datasets["train"], cfg.data.batch_size // world.size)
    choice = None
    if world.main:
        with unchanged_random_state():
            choice = choose_dtype(
                cfg.train.precision, "train.precision", student, cfg.student, shape, device, True
            )
    dtype, verdict = broadcast(choice)
    if world.size > 1:
        student, method = share_networks(cfg, student, method, device)
    params = list(student.parameters()) + list(method.parameters())
    with main_first(), unchanged_random_state():
        outputs, notes = teacher_side(cfg, teacher, weights, method, datasets["train"], device)
    optimizer = make_optimizer(params, cfg)
    average = WeightAverage(student, cfg.train.ema) if cfg.train.ema else None
    return Setup(
        loaders,
        student,
        teacher,
        outputs,
        method,
        optimizer,
        device,
        notes,
        dtype,
        verdict,
        average,
        datasets,
        world,
    )


def share_networks(cfg: RunConfig, student: nn.Module, method: Method, device) -> tuple:
    """The student and the method's modules as every process of the run must hold them: the
    main process's weights, and BatchNorm over the global batch (``train.sync_bn``)."""
    if cfg.train.sync_bn:
        student = synchronise_batchnorm(student, device)
        method = synchronise_batchnorm(method, device)
    broadcast_state(student)
    broadcast_state(method)
    return student, method


def dry_run(student, teacher, train_set: Dataset, num_classes: int, device) -> Context:
    """One forward of a 2-sample batch, so methods can size projectors from real shapes; and
    what a method may reuse of the networks (their classifier heads, the teacher's batch
    norms before its pre-activation features)."""
    images = torch.stack([train_set[i]["image"] for i in range(2)]).to(device)
    with torch.no_grad():
        was = student.training
        s_out = student.eval()(images)
        student.train(was)
        t_out = teacher(images) if teacher is not None else None
    return network_context(student, teacher, s_out, t_out, num_classes, train_set)


def network_context(student, teacher, s_out, t_out, num_classes: int, train_set) -> Context:
    """The ``Context`` of a dry forward: the outputs, and what a method may reuse of the
    networks (their classifier heads, the teacher's batch norms before its pre-activation
    features, where it returns them)."""
    preact = t_out is not None and any(k.endswith(".preact") for k in t_out.features)
    return Context(
        s_out,
        t_out,
        num_classes,
        len(train_set),
        dataset_labels(train_set),
        student_head=head_of(student),
        teacher_head=head_of(teacher),
        teacher_preact_norms=teacher.preact_norms() if preact else None,
    )


def head_of(model: nn.Module | None) -> Head | None:
    """The network's classifier head, where it exposes one (``classifier_head()``)."""
    return model.classifier_head() if hasattr(model, "classifier_head") else None


def request_preact(method: str, student: nn.Module, teacher: nn.Module | None) -> None:
    """Make both networks return ``stageK.preact`` features, or say which cannot."""
    for role, model in (("student", student), ("teacher", teacher)):
        if model is None:
            continue
        try:
            enable_preact(model)
        except PreactUnsupported as err:
            raise ConfigError(
                f"method {method!r} reads pre-activation features; {role}: {err}"
            ) from None


def check_image_size(cfg: RunConfig, train_set: Dataset) -> None:
    """A kdbench model sized for its input (``image_size``: the dual-branch teacher's FAD) must
    be given the data's size: one line naming the key to set, before anything is built."""
    with unchanged_random_state():  # an item may draw its view: the seeded run must not see it
        side = train_set[0]["image"].shape[-1]
    for role, model in (("student", cfg.student), ("teacher", cfg.teacher)):
        size = (model.kwargs if model else {}).get("image_size")
        if size is not None and size != side:
            raise ConfigError(
                f"{role}.kwargs.image_size is {size}, but the data's images are {side}×{side} "
                f"(data.params): set {role}.kwargs.image_size={side}"
            )
