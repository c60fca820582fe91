"""The Method seam: what every distillation method implements, and how the harness builds one."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from kdbench.config import ConfigError
from kdbench.output import Head, Output
from kdbench.registry import METHODS, unknown_message


@dataclass(frozen=True)
class Context:
    """What a method may size itself from, taken from one dry forward before training.

    ``student`` / ``teacher`` are real outputs on a 2-sample batch (shapes of every feature);
    ``teacher`` is ``None`` for methods that need no teacher. ``train_labels``: the label of
    each training sample, ``[num_samples]`` int64, in the order of the batches' ``"index"``
    (``None`` when the dataset does not expose them). ``total_epochs`` and ``steps_per_epoch``:
    the run's schedule (``train.epochs``, and the optimiser steps of one epoch), for warm-ups
    relative to it; the harness sets both, the defaults only serve tests. ``student_head`` /
    ``teacher_head``: each network's classifier as a module on its last maps (``Head``), for
    methods that reuse one; ``None`` for a network that does not expose it. The teacher's is
    frozen, like the teacher. ``teacher_preact_norms``: for a method with ``needs_preact``, the
    batch norm that feeds each teacher ``*.preact`` feature (OFD's margin), by feature name.
    """

    student: Output
    teacher: Output | None
    num_classes: int
    num_samples: int  # size of the training split (CRD's memory banks)
    train_labels: Tensor | None = None  # CRD's negatives from other classes
    total_epochs: int = 1
    steps_per_epoch: int = 1
    student_head: Head | None = None
    teacher_head: Head | None = None
    teacher_preact_norms: dict[str, nn.BatchNorm2d] | None = None


class Method(nn.Module):
    """A distillation method. Its own parameters (projectors, embeddings) train with the student.

    Subclasses set ``description`` (one line for ``kdbench list``), override ``losses`` and,
    rarely, ``backward``. ``needs_teacher = False`` declares a method that trains without a
    teacher; ``needs_preact = True`` one that reads pre-activation features (``stageK.preact``,
    the input of stage K's last ReLU; ResNet-family models). Every batch carries the dataset
    contract's keys (``kdbench.dataset``): ``image``, ``label``, ``index`` (each sample's
    position in the training split) and, where the dataset has them, ``video`` and ``view``.
    """

    description: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = True
    needs_preact: ClassVar[bool] = False  # student and teacher add stageK.preact features

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.num_classes = ctx.num_classes

    def set_epoch(self, epoch: int) -> None:
        """Called by the harness at the start of each epoch (0-based); for staged methods."""

    def teacher_features(self) -> list[str]:
        """Names of the teacher features ``losses`` reads (the rest need not be kept)."""
        return []

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        """Named, already weighted loss terms; the harness logs each and minimises their sum."""
        raise NotImplementedError

    def backward(self, losses: dict[str, Tensor], s_out: Output) -> None:
        """Back-propagate ``losses`` into the student and the method's parameters."""
        torch.stack(list(losses.values())).sum().backward()

    def deployed(self, student: nn.Module) -> nn.Module:
        """The network that is evaluated, costed and saved as the run's weights: the student,
        unless the method deploys more (SimKD: its projector and the teacher's classifier)."""
        return student

    def step_stats(self) -> dict[str, Tensor]:
        """Named scalars of the last step (e.g. gradient norms) that the harness averages per
        epoch into the run's history (``method_stats``); none by default."""
        return {}


def build_method(name: str, ctx: Context, params: dict) -> Method:
    """Instantiate the registered method ``name``; unknown parameters are errors."""
    cls = METHODS.get(name)
    check_params(f"method {name!r}", cls, params)
    return cls(ctx, **params)


def check_params(owner: str, fn, params: dict) -> None:
    """Raise a clear error if ``params`` has a key that ``fn`` does not accept."""
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    valid = [n for n in sig.parameters if n not in ("self", "ctx")]
    for key in params:
        if key not in valid:
            raise ConfigError(f"{owner}: {unknown_message('parameter', key, valid)}")
