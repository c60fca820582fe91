"""SimKD against its formula, and the classifier heads it reuses.

Reference: Chen et al., "Knowledge Distillation with the Reused Teacher Classifier" (CVPR 2022),
github.com/DefangChen/SimKD ``models/util.py`` (class ``SimKD``) and mdistiller
``mdistiller/distillers/SimKD.py``: the student's last map, average-pooled to the teacher map's
side when larger, goes through 1×1 → 3×3 → 1×1 conv-BN-ReLU (``C_t // factor`` channels in the
middle, no conv bias); loss ``β · MSE(projected, teacher map)``; prediction
``teacher_fc(avgpool(projected))``. Transcribed below, with the weights copied from ours.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_parity import assert_parity, leaf, loss_and_grads
from torch import Tensor, nn

from kdbench.method import Context, build_method
from kdbench.models import build_model
from kdbench.output import Head, Output


def reference_projector(s_n: int, t_n: int, factor: int) -> nn.Sequential:
    mid = t_n // factor
    return nn.Sequential(
        nn.Conv2d(s_n, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
        nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
        nn.Conv2d(mid, t_n, 1, bias=False), nn.BatchNorm2d(t_n), nn.ReLU(),
    )  # fmt: skip


def reference_simkd(feat_s, feat_t, transfer, t_fc, beta):
    s_h, t_h = feat_s.shape[2], feat_t.shape[2]
    if s_h > t_h:
        source, target = F.adaptive_avg_pool2d(feat_s, (t_h, t_h)), feat_t
    else:
        source, target = feat_s, F.adaptive_avg_pool2d(feat_t, (s_h, s_h))
    trans = transfer(source)
    pred = t_fc(F.adaptive_avg_pool2d(trans, 1).flatten(1))
    return beta * F.mse_loss(trans, target), pred


class LinearTeacherHead(nn.Module):
    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize(("s_side", "t_side"), [(4, 2), (2, 4), (4, 4)])
def test_simkd_equals_its_formula(s_side: int, t_side: int) -> None:
    torch.manual_seed(0)
    s_map = leaf(8, 6, s_side, s_side, seed=1)
    t_map = torch.randn(8, 12, t_side, t_side).relu()
    fc = nn.Linear(12, 5)
    teacher = Output(fc(t_map.mean((2, 3))).detach(), {"stage4": t_map})
    student = Output(torch.zeros(8, 5), {"stage4": s_map.detach()})
    ctx = Context(student, teacher, 5, 100, teacher_head=Head(("stage4",), LinearTeacherHead(fc)))
    ours = build_method("simkd", ctx, {"weight": 0.7, "factor": 3})
    reference = reference_projector(6, 12, 3)
    reference.load_state_dict({k: v for k, v in ours.projector.state_dict().items()}, strict=True)
    s_out = Output(torch.zeros(8, 5), {"stage4": s_map})
    loss = ours.losses({}, s_out, teacher)["simkd"]
    ref_loss, ref_pred = reference_simkd(s_map, t_map, reference, fc, 0.7)
    assert_parity(
        "simkd | SimKD's formula (DefangChen/SimKD models/util.py)",
        loss_and_grads(loss, [s_map]),
        loss_and_grads(ref_loss, [s_map]),
    )
    deployed = ours.deployed(lambda x: s_out)
    torch.testing.assert_close(deployed(None).logits, ref_pred, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("resnet10t", {}, 64),
        ("dual-branch", {"spatial": "resnet10t", "frequency": "resnet10t"}, 64),
        ("cifar_resnet8x4", {}, 32),
        ("cifar_wrn_16_2", {}, 32),
    ],
)
def test_every_model_head_gives_its_logits(name: str, kwargs: dict, size: int) -> None:
    model = build_model(name, 5, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
        head = model.classifier_head()
        logits = head.module(torch.cat([out.feature(n) for n in head.maps], dim=1))
    torch.testing.assert_close(logits, out.logits, rtol=1e-4, atol=1e-5)


def test_a_head_that_does_not_give_the_logits_is_refused() -> None:
    t_map = torch.randn(2, 4, 2, 2)
    teacher = Output(torch.randn(2, 3), {"stage4": t_map})
    student = Output(torch.zeros(2, 3), {"stage4": torch.randn(2, 4, 2, 2)})
    ctx = Context(
        student, teacher, 3, 10, teacher_head=Head(("stage4",), LinearTeacherHead(nn.Linear(4, 3)))
    )
    with pytest.raises(ValueError, match="does not give its logits"):
        build_method("simkd", ctx, {})
    with pytest.raises(ValueError, match="exposes none"):
        build_method("simkd", Context(student, teacher, 3, 10), {})


@pytest.mark.slow
def test_a_simkd_run_evaluates_and_costs_what_it_deploys(tiny, tmp_path):
    from kdbench.sweep.plan import Plan, resolve_teacher
    from kdbench.sweep.runner import run_in_process

    plan = Plan()
    cfg = resolve_teacher(tiny("method.name=simkd", "student.name=resnet10t"), plan)
    plain = resolve_teacher(tiny("method.name=kd", "student.name=resnet10t"), plan)
    records = run_in_process([*plan.teachers, cfg, plain], tmp_path, log=lambda *_: None)
    simkd, kd = records[-2:]
    assert simkd["status"] == kd["status"] == "done", simkd.get("error")
    projector = simkd["cost"]["method_params"]
    head = (512 + 512) * 2 + 2  # the smoke teacher's fused head: two resnet10t branches → 2
    assert simkd["cost"]["student"]["params"] == kd["cost"]["student"]["params"] + projector + head
    assert simkd["cost"]["student"]["flops"] > kd["cost"]["student"]["flops"]
    assert set(simkd["history"][0]["train"]) == {"simkd"}  # the one loss: no CE, no KD
