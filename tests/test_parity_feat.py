"""Parity of the feature and relation methods with their references: each loss and its gradients
on the student's tensors equal torchdistill 1.1.5's module (RKD, PKT, SP, VID, ReviewKD's
hierarchical context loss and attention-based fusion) or, where it has none, the reference
repository's formula written out here (NST: RepDistiller ``distiller_zoo/NST.py``; ReviewKD's
fusion with a resize to the teacher's size: mdistiller ``mdistiller/distillers/ReviewKD.py``).

Run with ``-s`` to print one ``parity | method | reference | max|Δ| loss | max|Δ| grad`` row per
case, as tests/test_parity.py does.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from outputs import dual_output
from test_parity import assert_parity, io, leaf, loss_and_grads
from torch import Tensor
from torchdistill.losses import mid_level
from torchdistill.losses.mid_level import (
    HierarchicalContextLoss,
    PKTLoss,
    RKDLoss,
    SPKDLoss,
    VIDLoss,
)
from torchdistill.models.wrapper import AttentionBasedFusion, Regressor4VID

from kdbench.method import Context, build_method
from kdbench.output import Output

BATCH = 8
LABELS = {"label": torch.zeros(BATCH, dtype=torch.long)}


def method_for(name: str, student: dict, teacher: dict, dual: bool = False, **params):
    """``name`` sized from student and teacher outputs with the given (detached) features;
    ``dual``: the teacher's output has the dual-branch teacher's layout."""
    torch.manual_seed(0)
    logits = torch.zeros(BATCH, 2)
    s_out = Output(logits, {k: v.detach() for k, v in student.items()})
    t_out = dual_output(logits, teacher) if dual else Output(logits, teacher)
    ctx = Context(s_out, t_out, 2, num_samples=BATCH, total_epochs=24)
    return build_method(name, ctx, params)


def terms_of(method, student: dict, teacher: dict) -> dict[str, Tensor]:
    logits = torch.zeros(BATCH, 2)
    return method.losses(LABELS, Output(logits, student), Output(logits, teacher))


# ---------------------------------------------------------------- RKD and PKT


def test_rkd_equals_torchdistill_rkdloss() -> None:
    student = {"pooled": leaf(BATCH, 10, seed=1)}
    teacher = {"fused": torch.randn(BATCH, 12, generator=torch.Generator().manual_seed(2))}
    method = method_for("rkd", student, teacher, dual=True)
    assert method.teacher_features() == ["fused"]
    terms = terms_of(method, student, teacher)
    reference = RKDLoss("s", "t", dist_factor=25.0, angle_factor=50.0, reduction="mean")
    assert_parity(
        "rkd (distance 25, angle 50) | torchdistill RKDLoss",
        loss_and_grads(terms["rkd_distance"] + terms["rkd_angle"], [student["pooled"]]),
        loss_and_grads(
            reference(io(s=student["pooled"]), io(t=teacher["fused"])), [student["pooled"]]
        ),
    )


def test_pkt_equals_torchdistill_pktloss() -> None:
    student = {"pooled": leaf(BATCH, 10, seed=3)}
    teacher = {"pooled": torch.randn(BATCH, 12, generator=torch.Generator().manual_seed(4))}
    method = method_for("pkt", student, teacher)
    terms = terms_of(method, student, teacher)
    reference = 30000.0 * PKTLoss("s", "output", "t", "output")(
        io(s=student["pooled"]), io(t=teacher["pooled"])
    )
    assert_parity(
        "pkt (β = 30000) | torchdistill PKTLoss",
        loss_and_grads(terms["pkt"], [student["pooled"]]),
        loss_and_grads(reference, [student["pooled"]]),
    )


# ---------------------------------------------------------------- stage-map methods


def stage_maps(sides: dict[str, int], channels: int, seed: int, grad: bool) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    maps = {}
    for k, (name, side) in enumerate(sides.items()):
        x = torch.randn(BATCH, channels + k, side, side, generator=g)
        maps[name] = x.requires_grad_() if grad else x.relu()
    return maps


# stage1 is the stem; stage2's 8×8 is pooled to the teacher's 4×4, as RepDistiller does
STUDENT_SIDES = {"stage1": 16, "stage2": 8, "stage3": 4, "stage4": 4}
TEACHER_SIDES = {"stage1": 8, "stage2": 4, "stage3": 4, "stage4": 4}


def repdistiller_sp(f_s: Tensor, f_t: Tensor) -> Tensor:
    """RepDistiller ``Similarity.similarity_loss``: the batch Gram matrices of the flattened
    maps, each row L2-normalised, squared Frobenius distance over B²."""
    bsz = f_s.shape[0]
    g_s = F.normalize(torch.mm(f_s.view(bsz, -1), f_s.view(bsz, -1).t()))
    g_t = F.normalize(torch.mm(f_t.view(bsz, -1), f_t.view(bsz, -1).t()))
    return ((g_t - g_s) * (g_t - g_s)).view(-1, 1).sum(0)[0] / (bsz * bsz)


def test_sp_equals_repdistiller_and_torchdistill_spkdloss_read_as_the_paper(monkeypatch) -> None:
    student = stage_maps({"stage3": 8, "stage4": 4}, 6, seed=5, grad=True)
    teacher = stage_maps({"stage3": 8, "stage4": 4}, 10, seed=6, grad=False)
    pairs = [["stage3", "stage3"], ["stage4", "stage4"]]
    method = method_for("sp", student, teacher, pairs=pairs)
    ours = loss_and_grads(terms_of(method, student, teacher)["sp"], list(student.values()))
    repdistiller = 3000.0 * sum(repdistiller_sp(student[n], teacher[n]) for n in student)
    assert_parity(
        "sp (8², 4² pairs, β = 3000) | RepDistiller Similarity (in the test)",
        ours,
        loss_and_grads(repdistiller, list(student.values())),
    )

    def spkd() -> Tensor:
        losses = [SPKDLoss(n, n, reduction="batchmean") for n in student]
        return 3000.0 * sum(loss(io(**student), io(**teacher)) for loss in losses)

    # torchdistill 1.1.5 calls normalize(G, 1): p = 1, an L1 row norm; the paper (Tung & Mori,
    # eq. 2) and RepDistiller divide each row by its L2 norm. Read as dim=1, it is the paper's.
    assert abs(float(spkd().detach()) - float(ours[0])) > 0.1 * float(ours[0])
    monkeypatch.setattr(mid_level, "normalize", lambda x, dim: F.normalize(x, p=2.0, dim=dim))
    assert_parity(
        "sp (same) | torchdistill SPKDLoss(batchmean), its normalize(G, 1) read as dim=1",
        ours,
        loss_and_grads(spkd(), list(student.values())),
    )


def test_vid_equals_torchdistill_vidloss_with_its_regressor() -> None:
    student = stage_maps(STUDENT_SIDES, 6, seed=7, grad=True)
    teacher = stage_maps(TEACHER_SIDES, 10, seed=8, grad=False)
    method = method_for("vid", student, teacher)
    assert [s for s, _ in method.pairs] == ["stage2", "stage3", "stage4"]  # after the stem
    used = [student[s_name] for s_name, _ in method.pairs]
    pairs, regressors = {}, {}
    for (s_name, t_name), ours in zip(method.pairs, method.regressors, strict=True):
        c_s, c_t = student[s_name].shape[1], teacher[t_name].shape[1]
        theirs = Regressor4VID(c_s, c_t, c_t, eps=1e-5, init_pred_var=5.0)
        assert torch.allclose(theirs.soft_plus_param, ours.variance_param)  # σ² = 5 at start
        with torch.no_grad():
            ours.variance_param.uniform_(-1.0, 3.0)  # a variance that has trained
            theirs.soft_plus_param.copy_(ours.variance_param)
            for k in (0, 2, 4):
                theirs.regressor[k].weight.copy_(ours.mean[k].weight)
        regressors[s_name] = theirs
        pairs[s_name] = {
            "student": {"io": "output", "path": s_name},
            "teacher": {"io": "output", "path": t_name},
        }
    vid = terms_of(method, student, teacher)["vid"]
    student_io = {
        name: {"output": regressors[name](F.adaptive_avg_pool2d(student[name], 4))}
        for name in regressors
    }
    reference = VIDLoss(pairs)(student_io, io(**teacher))
    assert_parity(
        "vid (3 pairs, one pooled 8²→4², trained σ²) | torchdistill VIDLoss + Regressor4VID",
        loss_and_grads(vid, used),
        loss_and_grads(reference, used),
    )


def repdistiller_nst(f_s: Tensor, f_t: Tensor) -> Tensor:
    """RepDistiller ``NSTLoss.nst_loss`` (full_loss=True): pool the larger map to the smaller
    height, normalise each channel over H·W, MMD² with the kernel (aᵀb)², as written there."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    f_s = F.normalize(f_s.view(f_s.shape[0], f_s.shape[1], -1), dim=2)
    f_t = F.normalize(f_t.view(f_t.shape[0], f_t.shape[1], -1), dim=2)

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)

    return kernel(f_t, f_t).mean().detach() + kernel(f_s, f_s).mean() - 2 * kernel(f_s, f_t).mean()


def test_nst_equals_repdistillers_formula() -> None:
    student = stage_maps(STUDENT_SIDES, 6, seed=9, grad=True)
    teacher = stage_maps(TEACHER_SIDES, 10, seed=10, grad=False)
    method = method_for("nst", student, teacher)
    assert [s for s, _ in method.pairs] == ["stage2", "stage3", "stage4"]  # after the stem
    used = [student[s_name] for s_name, _ in method.pairs]
    nst = terms_of(method, student, teacher)["nst"]
    reference = 50.0 * sum(repdistiller_nst(student[s], teacher[t]) for s, t in method.pairs)
    assert_parity(
        "nst (3 pairs, one pooled 8²→4², β = 50) | RepDistiller NSTLoss (in the test)",
        loss_and_grads(nst, used),
        loss_and_grads(reference, used),
    )


# ---------------------------------------------------------------- ReviewKD


def mdistiller_abf(abf: AttentionBasedFusion, x: Tensor, y, shape: int, out_shape: int):
    """mdistiller's ``ABF.forward`` with torchdistill's layers: conv1, attention fusion with the
    upsampled residual, a nearest resize to ``out_shape``, then conv2."""
    n, _, h, w = x.shape
    x = abf.conv1(x)
    if abf.attention_conv is not None:
        y = F.interpolate(y, (shape, shape), mode="nearest")
        z = abf.attention_conv(torch.cat([x, y], dim=1))
        x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
    if x.shape[-1] != out_shape:
        x = F.interpolate(x, (out_shape, out_shape), mode="nearest")
    return abf.conv2(x), x


@pytest.mark.parametrize(
    ("scale", "fusion"),
    [(1, "torchdistill AttentionBasedFusion"), (2, "mdistiller ABF.forward (in the test)")],
)
def test_reviewkd_equals_hierarchical_context_loss_over_abf(scale: int, fusion: str) -> None:
    sides = {"stage2": 8, "stage3": 4}
    student = stage_maps(sides, 6, seed=11, grad=True)
    student["pooled"] = leaf(BATCH, 9, seed=12)
    teacher = stage_maps({k: v * scale for k, v in sides.items()}, 10, seed=13, grad=False)
    teacher["pooled"] = torch.randn(BATCH, 12, generator=torch.Generator().manual_seed(14))
    pairs = [["stage2", "stage2"], ["stage3", "stage3"], ["pooled", "pooled"]]
    method = method_for("reviewkd", student, teacher, pairs=pairs)  # warm-up: 2 of 24 epochs
    abfs = []
    for k, ours in enumerate(method.fusions):
        c_in, c_mid = ours.reduce[0].in_channels, ours.reduce[0].out_channels
        theirs = AttentionBasedFusion(c_in, c_mid, ours.expand[0].out_channels, k < 2)
        theirs.load_state_dict(ours_as_torchdistill(ours.state_dict()))
        abfs.append(theirs)
    reviewkd = terms_of(method, student, teacher)["reviewkd"]
    maps = [student["stage2"], student["stage3"], student["pooled"][:, :, None, None]]
    targets = [teacher["stage2"], teacher["stage3"], teacher["pooled"][:, :, None, None]]
    out, residual = abfs[2](maps[2]) if scale == 1 else mdistiller_abf(abfs[2], maps[2], None, 1, 1)
    outputs = [out]
    for k in (1, 0):
        side = maps[k].shape[2]
        if scale == 1:
            out, residual = abfs[k](maps[k], residual, side)
        else:
            out, residual = mdistiller_abf(abfs[k], maps[k], residual, side, side * scale)
        outputs.insert(0, out)
    hcl = HierarchicalContextLoss("abf", "output", "t", "output")
    context = sum(hcl(io(abf=(o, None)), io(t=t)) for o, t in zip(outputs, targets, strict=True))
    reference = 5.0 * min(1 / 2, 1.0) * context  # mdistiller: epoch 1 of a 20-of-240 warm-up
    assert_parity(
        f"reviewkd (8², 4², pooled; teacher ×{scale}; warm-up) | torchdistill "
        f"HierarchicalContextLoss over {fusion}",
        loss_and_grads(reviewkd, list(student.values())),
        loss_and_grads(reference, list(student.values())),
    )


def ours_as_torchdistill(state: dict) -> dict:
    """Our ABF's parameter names in torchdistill's ``AttentionBasedFusion``."""
    names = {"reduce.": "conv1.", "expand.": "conv2.", "attention.": "attention_conv."}
    renamed = {}
    for key, value in state.items():
        prefix = next(p for p in names if key.startswith(p))
        renamed[names[prefix] + key[len(prefix) :]] = value
    return renamed


def test_reviewkd_ramps_its_weight_over_the_warm_up() -> None:
    student = stage_maps({"stage2": 8, "stage3": 4}, 6, seed=15, grad=True)
    method = method_for("reviewkd", student, stage_maps({"stage2": 8, "stage3": 4}, 6, 16, False))
    assert method.pairs == [("stage3", "stage3")]  # after the stem, 4×4 or more
    ramps = []
    for epoch in (0, 1, 5):
        method.set_epoch(epoch)
        ramps.append(method.ramp())
    assert ramps == [0.5, 1.0, 1.0]  # 20/240 of 24 epochs: 2 epochs


def test_stage_methods_auto_fit_resnet10t_at_64px() -> None:
    # resnet10t at 64 px: the stem 32², then 16², 8², 4², 2²; the teacher's spatial branch alike
    sides = {f"stage{k}": 64 // 2**k for k in range(1, 6)}
    student = stage_maps(sides, 4, seed=17, grad=False)
    teacher = stage_maps({f"spatial.{k}": v for k, v in sides.items()}, 4, seed=18, grad=False)
    teacher["frequency.stage1"] = teacher["spatial.stage1"]
    middle = [(f"stage{k}", f"spatial.stage{k}") for k in (2, 3, 4)]
    assert method_for("sp", student, teacher, dual=True).pairs == [("stage4", "spatial.stage4")]
    for name in ("vid", "nst", "reviewkd"):
        assert method_for(name, student, teacher, dual=True).pairs == middle
