"""CIFAR-style networks (3×3 stem, no early down-sampling) as RepDistiller defines them.

timm's networks down-sample 4× in their stem, which leaves too little of a 32×32 image; the
classic CIFAR-100 KD leaderboards use these instead. Registered in ``MODELS`` with a
``cifar_`` prefix (RepDistiller's ``vgg13`` would shadow timm's): ``cifar_resnet{8,14,20,32,
44,56,110}``, ``cifar_resnet8x4``, ``cifar_resnet32x4``, ``cifar_wrn_{16,28,40}_{1,2,4,8,10}``
(those RepDistiller and torchdistill use), ``cifar_vgg{8,11,13,16,19}`` (with batch norm).

Each returns ``Output``: ``stage1`` is the stem's map, ``stage2..`` each stage's output (the
features RepDistiller's ``is_feat=True`` returns, in order), ``pooled`` the pre-logits vector.
"""

from __future__ import annotations

from functools import partial
from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.models.preact import PreactPoint, PreactUnsupported, record
from kdbench.output import Head, Output
from kdbench.registry import MODELS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "02231e6d1df9"


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class StagedNet(nn.Module):
    """A stem, stages and a linear head over globally averaged features → ``Output``."""

    stem: nn.Module
    stages: nn.ModuleList
    head: nn.Module  # applied to the last stage before pooling (identity or BN-ReLU)
    fc: nn.Linear
    preact: dict[str, Tensor] | None = None  # stageK.preact, once requested

    def forward(self, x: Tensor) -> Output:
        x = self.stem(x)
        features = {"stage1": x}
        for i, stage in enumerate(self.stages, 2):
            x = stage(x)
            features[f"stage{i}"] = x
        pooled = self.head(x).mean((2, 3))
        features["pooled"] = pooled
        features.update(self.preact or {})
        return Output(self.fc(pooled), features)

    def preact_points(self) -> dict[str, PreactPoint]:
        raise PreactUnsupported(
            f"{type(self).__name__}: pre-activation features are implemented for the CIFAR "
            "ResNets only (post-activation blocks; WRN is pre-activation, VGG has no blocks)"
        )

    def enable_preact(self) -> None:
        if self.preact is None:
            self.preact = record(self.preact_points())

    def preact_norms(self) -> dict[str, nn.BatchNorm2d]:
        return {f"{k}.preact": p.norm for k, p in self.preact_points().items()}

    def classifier_head(self) -> Head:
        """``head`` (identity or BN-ReLU), global average pooling and ``fc`` on the last stage."""
        return Head((f"stage{len(self.stages) + 1}",), MapClassifier(self.head, self.fc))


class MapClassifier(nn.Module):
    """``fc(mean(head(x)))``: a StagedNet's classifier on its last stage's map."""

    def __init__(self, head: nn.Module, fc: nn.Linear) -> None:
        super().__init__()
        self.head = head
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.head(x).mean((2, 3)))


class BasicBlock(nn.Module):
    """He et al.'s post-activation block; a 1×1 conv + BN shortcut where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.act = nn.ReLU()  # a module, so that its input (the pre-activation) can be read

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(StagedNet):
    """ResNet-``depth`` (6n+2) with stem width ``widths[0]`` and three stages of n blocks."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.stages = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1)
                            for i in range(n)))
            for c_in, c_out, stride in zip(widths[:3], widths[1:], (1, 2, 2), strict=True)
        )  # fmt: skip
        self.head = nn.Identity()
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def preact_points(self) -> dict[str, PreactPoint]:
        """The stem's ReLU after its BN; in each stage's last block the ReLU after the sum."""
        points = {"stage1": PreactPoint(self.stem[2], self.stem[1])}
        for k, stage in enumerate(self.stages, 2):
            points[f"stage{k}"] = PreactPoint(stage[-1].act, stage[-1].bn2)
        return points


class WideBlock(nn.Module):
    """Pre-activation block of Zagoruyko & Komodakis; a 1×1 conv shortcut where the width changes
    (applied to the pre-activated input, as in their code)."""

    def __init__(self, c_in: int, c_out: int, stride: int, drop: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.drop = drop
        self.shortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        out = F.dropout(out, self.drop, self.training) if self.drop else out
        return self.conv2(out) + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(StagedNet):
    """WRN-``depth``-``width`` (depth 6n+4): a 16-channel stem conv, three stages of n blocks."""

    def __init__(self, depth: int, width: int, num_classes: int, drop: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 (16, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * width, 32 * width, 64 * width)
        self.stem = conv3x3(3, 16)
        self.stages = nn.ModuleList(
            nn.Sequential(*(WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1,
                                      drop) for i in range(n)))
            for c_in, c_out, stride in zip(widths[:3], widths[1:], (1, 2, 2), strict=True)
        )  # fmt: skip
        self.head = nn.Sequential(nn.BatchNorm2d(widths[3]), nn.ReLU())
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


VGG_STAGES = {  # conv widths of the five stages
    8: ((64,), (128,), (256,), (512,), (512,)),
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def vgg_stage(c_in: int, widths: tuple[int, ...], pool: bool) -> nn.Sequential:
    """[max-pool], then conv3×3-BN-ReLU per width (convs keep their bias, as in RepDistiller)."""
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    for width in widths:
        layers += [conv3x3(c_in, width, bias=True), nn.BatchNorm2d(width), nn.ReLU()]
        c_in = width
    return nn.Sequential(*layers)


class CifarVGG(StagedNet):
    """VGG-``depth`` with BN; max-pools between the first four stages, none before the fifth
    (on 32×32 inputs it runs at 4×4, as RepDistiller's VGG does)."""

    def __init__(self, depth: int, num_classes: int) -> None:
        super().__init__()
        if depth not in VGG_STAGES:
            raise ValueError(f"CIFAR VGG depth must be one of {sorted(VGG_STAGES)}, got {depth}")
        stages = VGG_STAGES[depth]
        self.stem = vgg_stage(3, stages[0], pool=False)
        self.stages = nn.ModuleList(
            vgg_stage(prev[-1], widths, pool=i < 3)
            for i, (prev, widths) in enumerate(pairwise(stages))
        )
        self.head = nn.Identity()
        self.fc = nn.Linear(stages[-1][-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


THIN = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)
WRNS = ((16, 1), (16, 2), (16, 4), (16, 8), (28, 10), (40, 1), (40, 2), (40, 4))


def builtin_models() -> dict[str, tuple]:
    """name → (factory taking ``num_classes``, one-line description)."""
    models = {}
    for depth in (8, 14, 20, 32, 44, 56, 110):
        models[f"cifar_resnet{depth}"] = (
            partial(CifarResNet, depth, THIN),
            f"CIFAR ResNet-{depth}, widths 16-16-32-64 (RepDistiller's resnet{depth})",
        )
    for depth in (8, 32):
        models[f"cifar_resnet{depth}x4"] = (
            partial(CifarResNet, depth, WIDE),
            f"CIFAR ResNet-{depth}x4, widths 32-64-128-256 (RepDistiller's resnet{depth}x4)",
        )
    for depth, width in WRNS:
        models[f"cifar_wrn_{depth}_{width}"] = (
            partial(WideResNet, depth, width),
            f"Wide ResNet-{depth}-{width} for CIFAR (RepDistiller's / torchdistill's)",
        )
    for depth in VGG_STAGES:
        models[f"cifar_vgg{depth}"] = (
            partial(CifarVGG, depth),
            f"CIFAR VGG-{depth} with BN (RepDistiller's vgg{depth}, i.e. vgg{depth}_bn)",
        )
    return models


for _name, (_factory, _description) in builtin_models().items():
    _factory.description = _description  # what `kdbench list models` shows
    MODELS.register(_name)(_factory)
