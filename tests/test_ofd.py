"""OFD against its reference and the pre-activation features it reads.

Reference: Heo et al., "A Comprehensive Overhaul of Feature Distillation" (ICCV 2019),
mdistiller ``mdistiller/distillers/OFD.py`` (``feat_loss``, the margins of ``init_ofd_modules``,
``ofd_loss``) and github.com/clovaai/overhaul-distillation ``distiller.py``: transcribed below
(the margin with scipy's normal CDF, as the reference computes it).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from test_parity import assert_parity, leaf, loss_and_grads
from torch import nn

from kdbench.method import Context, build_method
from kdbench.models import build_model
from kdbench.models.preact import PreactUnsupported, enable_preact
from kdbench.output import Output


def reference_margin(bn: nn.BatchNorm2d) -> torch.Tensor:
    margin = []
    for s, m in zip(bn.weight.data, bn.bias.data, strict=True):
        s, m = abs(s.item()), m.item()
        if norm.cdf(-m / s) > 0.001:
            margin.append(
                -s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / norm.cdf(-m / s) + m
            )
        else:
            margin.append(-3 * s)
    return torch.FloatTensor(margin).view(1, -1, 1, 1)


def reference_feat_loss(source, target, margin):
    loss = (
        (source - margin) ** 2 * ((source > margin) & (target <= margin)).float()
        + (source - target) ** 2 * ((source > target) & (target > margin) & (target <= 0)).float()
        + (source - target) ** 2 * (target > 0).float()
    )
    return torch.abs(loss).mean(dim=0).sum()


def random_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    bn.weight.data = torch.randn(channels, generator=g)
    bn.bias.data = torch.randn(channels, generator=g) * 2  # some channels almost never < 0
    return bn


def test_ofd_equals_mdistiller() -> None:
    shapes = {"stage2": (6, 8), "stage3": (10, 4)}  # channels, side
    s_maps = {k: leaf(5, c, side, side, seed=i) for i, (k, (c, side)) in enumerate(shapes.items())}
    t_maps = {k: torch.randn(5, 2 * c, 2 * side, 2 * side) for k, (c, side) in shapes.items()}
    norms = {
        f"{k}.preact": random_bn(2 * c, seed=i) for i, (k, (c, _)) in enumerate(shapes.items())
    }
    student = Output(torch.randn(5, 3), {f"{k}.preact": v.detach() for k, v in s_maps.items()})
    teacher = Output(torch.randn(5, 3), {f"{k}.preact": v for k, v in t_maps.items()})
    ctx = Context(student, teacher, 3, 50, teacher_preact_norms=norms)
    pairs = [["stage2", "stage2"], ["stage3", "stage3"]]
    ours = build_method("ofd", ctx, {"pairs": pairs, "feat_weight": 0.01, "ce_weight": 0.0})
    s_out = Output(torch.randn(5, 3), {f"{k}.preact": v for k, v in s_maps.items()})
    loss = ours.losses({"label": torch.zeros(5, dtype=torch.int64)}, s_out, teacher)["ofd"]
    reference = 0
    for i, key in enumerate(shapes):
        source = ours.connectors[i](s_maps[key])
        target = F.adaptive_avg_pool2d(t_maps[key], source.shape[-2:])
        margin = reference_margin(norms[f"{key}.preact"])
        torch.testing.assert_close(getattr(ours, f"margin{i}"), margin, rtol=1e-5, atol=1e-6)
        reference = reference + reference_feat_loss(source, target, margin) / 2 ** (1 - i)
    inputs = list(s_maps.values())
    assert_parity(
        "ofd (2 pairs, margins from BN) | mdistiller OFD.py feat_loss + margins",
        loss_and_grads(loss, inputs),
        loss_and_grads(0.01 * reference, inputs),
    )


def test_auto_pairs_keep_maps_of_4x4_or_more() -> None:
    student = build_model("resnet10t", 2).eval()
    teacher = build_model("dual-branch", 2, spatial="resnet10t", frequency="resnet10t").eval()
    for model in (student, teacher):
        enable_preact(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ctx = Context(student(x), teacher(x), 2, 10, teacher_preact_norms=teacher.preact_norms())
    ofd = build_method("ofd", ctx, {})
    assert ofd.pairs == [[f"stage{k}", f"spatial.stage{k}"] for k in (2, 3, 4)]
    assert ofd.teacher_features() == [f"spatial.stage{k}.preact" for k in (2, 3, 4)]


def test_models_without_preact_features_say_so() -> None:
    with pytest.raises(PreactUnsupported, match="ResNet-family"):
        enable_preact(build_model("mobilenetv3_small_050", 2))
    with pytest.raises(PreactUnsupported, match="CIFAR ResNets only"):
        enable_preact(build_model("cifar_wrn_16_2", 2))


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("resnet10t", {}, 64),
        ("resnet50", {}, 64),
        ("dual-branch", {"spatial": "resnet10t", "frequency": "resnet10t"}, 64),
        ("cifar_resnet8x4", {}, 32),
    ],
)
def test_preact_features_are_what_the_last_relu_reads(name, kwargs, size) -> None:
    model = build_model(name, 3, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        plain = model(x)
        enable_preact(model)
        out = model(x)
    preact = [k for k in out.features if k.endswith(".preact")]
    assert preact and sorted(preact) == sorted(model.preact_norms())
    assert not any(k.endswith(".preact") for k in plain.features)  # only on request
    for key in preact:
        torch.testing.assert_close(
            out.features[key].relu(), out.features[key.removesuffix(".preact")]
        )
    torch.testing.assert_close(out.logits, plain.logits)
