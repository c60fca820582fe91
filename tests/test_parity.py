"""Parity with reference implementations: each method's loss and its gradients on the student's
tensors equal torchdistill's loss module (KD, FitNets, AT, CRD) or, where torchdistill has none,
the paper's formula written out here (two-in-one's feature terms and gradient homogenizers).

Run with ``-s`` to print one ``parity | method | reference | max|Δ| loss | max|Δ| grad`` row
per case, the table in the README.
"""

from __future__ import annotations

import math

import pytest
import torch
from outputs import dual_output
from torch import Tensor, nn
from torchdistill.losses.mid_level import ATLoss, CRDLoss, KDLoss, SimpleLossWrapper
from torchdistill.models.adaptation import ConvReg
from torchdistill.models.wrapper import Normalizer4CRD

from kdbench.method import Context, build_method
from kdbench.output import Output

BATCH, CLASSES = 8, 5
TOLERANCE = 1e-5  # on |Δ| / max(1, |reference|), float32 throughout


def leaf(*shape: int, seed: int) -> Tensor:
    """A random float32 tensor that collects gradients."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def loss_and_grads(loss: Tensor, inputs: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    grads = torch.autograd.grad(loss, inputs, retain_graph=True)
    return loss.detach(), [g.detach() for g in grads]


def max_delta(ours: list[Tensor], reference: list[Tensor]) -> float:
    """max |ours − reference| over every element, relative to max(1, |reference|)."""
    scale = max(1.0, *(float(r.abs().max()) for r in reference))
    return max(float((o - r).abs().max()) for o, r in zip(ours, reference, strict=True)) / scale


def assert_parity(row: str, ours: tuple, reference: tuple) -> None:
    """Print the table row, then assert both |Δ| below ``TOLERANCE``; the reference gradient
    must not be zero (a test of nothing)."""
    (loss, grads), (ref_loss, ref_grads) = ours, reference
    assert any(float(g.abs().max()) > 0 for g in ref_grads)
    d_loss = "n/a" if loss is None else f"{max_delta([loss], [ref_loss]):.1e}"
    d_grad = max_delta(grads, ref_grads)
    print(f"parity | {row} | {d_loss} | {d_grad:.1e}")
    assert d_loss == "n/a" or float(d_loss) < TOLERANCE
    assert d_grad < TOLERANCE


def io(**tensors: Tensor) -> dict:
    """A torchdistill io dict: ``{module path: {"output": tensor}}``."""
    return {path: {"output": tensor} for path, tensor in tensors.items()}


# ---------------------------------------------------------------- logit KD


def test_kd_equals_torchdistill_kdloss() -> None:
    s, t = leaf(BATCH, CLASSES, seed=0), 3 * torch.randn(BATCH, CLASSES)
    labels = torch.randint(0, CLASSES, (BATCH,))
    ctx = Context(Output(s.detach()), Output(t), CLASSES, num_samples=BATCH)
    method = build_method("kd", ctx, {"temperature": 4.0, "alpha": 0.9})
    terms = method.losses({"label": labels}, Output(s), Output(t))
    # torchdistill's alpha weighs the CE, beta the T²·KL: ours (1 − α)·CE + α·T²·KL
    reference = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=0.1, beta=0.9)
    assert_parity(
        "kd | torchdistill KDLoss",
        loss_and_grads(terms["ce"] + terms["kd"], [s]),
        loss_and_grads(reference(io(fc=s), io(fc=t), labels), [s]),
    )


def dual_teacher(seed: int, channels: int = 6, side: int = 4) -> Output:
    g = torch.Generator().manual_seed(seed)
    features = {
        f"{branch}.stage1": torch.randn(BATCH, channels, side, side, generator=g)
        for branch in ("spatial", "frequency")
    }
    return dual_output(3 * torch.randn(BATCH, CLASSES, generator=g), features)


def branch_method(name: str, **params) -> nn.Module:
    """``name`` built on a toy shared feature ``stage1`` (8 channels, 4×4)."""
    torch.manual_seed(0)
    student = Output(torch.zeros(2, CLASSES), {"stage1": torch.zeros(2, 8, 4, 4)})
    ctx = Context(student, dual_teacher(0), CLASSES, num_samples=100)
    return build_method(name, ctx, {"projector_channels": 8, **params})


def student_output(seed: int) -> tuple[Output, Tensor, Tensor]:
    """Shared feature ``z`` (a leaf) and logits computed from it by a fixed linear head."""
    z = leaf(BATCH, 8, 4, 4, seed=seed)
    head = torch.randn(8, CLASSES, generator=torch.Generator().manual_seed(99))
    logits = z.mean((2, 3)) @ head
    return Output(logits, {"stage1": z}), z, logits


@pytest.mark.parametrize("name", ["feat-spatial", "feat-frequency", "feat-both", "two-in-one"])
def test_the_logit_kd_term_equals_torchdistill_kdloss(name: str) -> None:
    method = branch_method(name, ce_weight=1.0, kd_weight=1.0, temperature=4.0)
    s_out, _, logits = student_output(1)
    teacher = dual_teacher(2)
    labels = torch.randint(0, CLASSES, (BATCH,))
    terms = method.losses({"label": labels}, s_out, teacher)
    reference = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=1.0, beta=1.0)
    assert_parity(
        f"{name}: CE + KD terms | torchdistill KDLoss",
        loss_and_grads(terms["ce"] + terms["kd"], [logits]),
        loss_and_grads(reference(io(fc=logits), io(fc=teacher.logits), labels), [logits]),
    )


# ---------------------------------------------------------------- two-in-one's feature terms


def standardised(x: Tensor) -> Tensor:
    """(x − mean) / sqrt(var + 1e-5) over each sample's C, H, W (biased variance)."""
    mean = x.mean((1, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((1, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def dct_matrix(n: int) -> Tensor:
    """The orthonormal DCT-II: C[k, i] = s_k cos(π (2i + 1) k / 2n), s_0 = √(1/n), else √(2/n)."""
    k, i = torch.arange(n)[:, None].double(), torch.arange(n)[None, :].double()
    scale = torch.where(k == 0, math.sqrt(1 / n), math.sqrt(2 / n))
    return (scale * torch.cos(math.pi * (2 * i + 1) * k / (2 * n))).float()


def log_dct_spectrum(x: Tensor) -> Tensor:
    """log(1 + |C_H · X · C_Wᵀ|) of each channel."""
    c_h, c_w = dct_matrix(x.shape[2]), dct_matrix(x.shape[3])
    return torch.log1p((c_h @ x @ c_w.T).abs())


REFERENCE_DISTANCES = {
    "mse": lambda s, t: ((standardised(s) - standardised(t)) ** 2).mean(),
    "dct": lambda s, t: (
        (log_dct_spectrum(standardised(s)) - log_dct_spectrum(standardised(t))) ** 2
    ).mean(),
}


@pytest.mark.parametrize(
    ("name", "branch", "formula"),
    [
        ("feat-spatial", "spatial", "MSE of per-sample standardised maps"),
        ("two-in-one", "spatial", "MSE of per-sample standardised maps"),
        ("feat-frequency", "frequency", "MSE of log(1+|orthonormal DCT-II|), matrix form"),
        ("two-in-one", "frequency", "MSE of log(1+|orthonormal DCT-II|), matrix form"),
    ],
)
def test_feature_terms_equal_their_formula(name: str, branch: str, formula: str) -> None:
    method = branch_method(name, **{f"{branch}_weight": 0.7})
    s_out, z, _ = student_output(3)
    teacher = dual_teacher(4)
    term = method.terms[branch]
    terms = method.losses({"label": torch.zeros(BATCH, dtype=torch.long)}, s_out, teacher)
    projected = method.projectors[term.projector](z)
    target = teacher.feature(term.feature)
    reference = term.weight * REFERENCE_DISTANCES[term.loss](projected, target)
    assert_parity(
        f"{name}: {branch} term | {formula} (in the test)",
        loss_and_grads(terms[branch], [z]),
        loss_and_grads(reference, [z]),
    )


# ---------------------------------------------------------------- gradient homogenization


def rotograd_magnitude(grads: list[Tensor], initial_norms: list[Tensor]) -> list[Tensor]:
    """RotoGrad's magnitude rule: every gradient rescaled to C = Σ_k α_k ‖g_k‖, with
    α_k = r_k / Σ_j r_j and r_k = ‖g_k‖ / ‖g_k⁰‖."""
    norms = [g.norm() for g in grads]
    ratios = [n / n0 for n, n0 in zip(norms, initial_norms, strict=True)]
    common = sum(r / sum(ratios) * n for r, n in zip(ratios, norms, strict=True))
    return [g / n * common for g, n in zip(grads, norms, strict=True)]


def pcgrad_projection(grads: list[Tensor]) -> list[Tensor]:
    """PCGrad (Yu et al. 2020, Alg. 1): each g_i loses its component along every g_j it
    conflicts with (g_i · g_j < 0)."""
    projected = []
    for i, g_i in enumerate(grads):
        out = g_i.clone()
        for j, g_j in enumerate(grads):
            dot = (out * g_j).sum()
            if j != i and dot < 0:
                out = out - dot / g_j.pow(2).sum() * g_j
        projected.append(out)
    return projected


def homogenized_step(method: nn.Module, seed: int) -> tuple[Tensor, Tensor, list[Tensor]]:
    """One ``backward`` of ``method``: the gradient it leaves on ``z``, the plain CE + KD
    gradient on ``z``, and the raw feature-term gradients (spatial, frequency)."""
    s_out, z, _ = student_output(seed)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=torch.Generator().manual_seed(seed))
    terms = method.losses({"label": labels}, s_out, dual_teacher(seed + 100))
    raw = [torch.autograd.grad(terms[b], z, retain_graph=True)[0] for b in method.terms]
    plain = torch.autograd.grad(terms["ce"] + terms["kd"], z, retain_graph=True)[0]
    method.backward(terms, s_out)
    return z.grad, plain, raw


def test_magnitude_homogenization_equals_rotograd() -> None:
    method = branch_method("two-in-one", homogenize="magnitude")
    initial = None
    ours, reference = [], []
    for step in range(3):  # step 0 records ‖g⁰‖; later steps are weighted by it
        grad_z, plain, raw = homogenized_step(method, seed=10 + step)
        initial = initial or [g.norm() for g in raw]
        ours.append(grad_z)
        reference.append(plain + sum(rotograd_magnitude(raw, initial)))
    assert_parity(
        "two-in-one: homogenize=magnitude | RotoGrad's magnitude rule (in the test)",
        (None, ours),
        (None, reference),
    )


def test_pcgrad_homogenization_equals_pcgrad() -> None:
    method = branch_method("two-in-one", homogenize="pcgrad")
    ours, reference, conflicts = [], [], 0
    for step in range(6):
        grad_z, plain, raw = homogenized_step(method, seed=20 + step)
        conflicts += int((raw[0] * raw[1]).sum() < 0)
        ours.append(grad_z)
        reference.append(plain + sum(pcgrad_projection(raw)))
    assert 0 < conflicts < 6  # both branches of the rule are exercised
    assert_parity(
        "two-in-one: homogenize=pcgrad | PCGrad projection (in the test)",
        (None, ours),
        (None, reference),
    )


# ---------------------------------------------------------------- FitNets


@pytest.mark.parametrize(("kernel", "relu"), [(1, True), (3, True), (1, False)])
def test_fitnets_equals_torchdistill_convreg_and_mse(kernel: int, relu: bool) -> None:
    s, t = leaf(BATCH, 6, 8, 8, seed=5), torch.randn(BATCH, 10, 8, 8).relu()
    logits = torch.zeros(BATCH, 2)
    teacher = Output(logits, {"stage1": t})
    ctx = Context(Output(logits, {"stage1": s.detach()}), teacher, 2, num_samples=BATCH)
    method = build_method("fitnets", ctx, {"kernel": kernel, "relu": relu, "beta": 100.0})
    with torch.no_grad():  # a batch norm that is not the identity
        method.regressor[1].weight.uniform_(0.5, 1.5)
        method.regressor[1].bias.uniform_(-0.5, 0.5)
    regressor = ConvReg(6, 10, kernel, 1, kernel // 2, uses_relu=relu)
    with torch.no_grad():
        regressor.conv.weight.copy_(method.regressor[0].weight)
        regressor.conv.bias.zero_()  # ours has no bias: the batch norm follows
        regressor.bn.weight.copy_(method.regressor[1].weight)
        regressor.bn.bias.copy_(method.regressor[1].bias)
    mse = SimpleLossWrapper(
        nn.MSELoss(),
        input={"is_from_teacher": False, "module_path": "regressor", "io": "output"},
        target={"is_from_teacher": True, "module_path": "stage1", "io": "output"},
    )
    batch = {"label": torch.zeros(BATCH, dtype=torch.long)}
    hint = method.losses(batch, Output(logits, {"stage1": s}), teacher)["hint"]
    reference = 100.0 * mse(io(regressor=regressor(s)), io(stage1=t), None)
    assert_parity(
        f"fitnets (kernel={kernel}, relu={relu}) | torchdistill ConvReg + MSELoss",
        loss_and_grads(hint, [s]),
        loss_and_grads(reference, [s]),
    )


# ---------------------------------------------------------------- AT


def test_at_equals_torchdistill_atloss() -> None:
    sides = {"stage2": 16, "stage3": 8, "stage4": 4}
    students = {name: leaf(BATCH, 6, side, side, seed=side) for name, side in sides.items()}
    teachers = {name: torch.randn(BATCH, 12, side, side) for name, side in sides.items()}
    logits = torch.zeros(BATCH, 2)
    ctx = Context(Output(logits, students), Output(logits, teachers), 2, num_samples=BATCH)
    method = build_method("at", ctx, {"beta": 1000.0})
    assert [s_name for s_name, _ in method.pairs] == list(sides)
    batch = {"label": torch.zeros(BATCH, dtype=torch.long)}
    at = method.losses(batch, Output(logits, students), Output(logits, teachers))["at"]
    pairs = {
        name: {"student": {"io": "output", "path": name}, "teacher": {"io": "output", "path": name}}
        for name in sides
    }
    reference = 1000.0 / 2 * ATLoss(pairs, mode="code")(io(**students), io(**teachers))
    assert_parity(
        "at (16², 8², 4² pairs) | torchdistill ATLoss (mode=code) × β/2",
        loss_and_grads(at, list(students.values())),
        loss_and_grads(reference, list(students.values())),
    )


# ---------------------------------------------------------------- CRD


def test_crd_equals_torchdistill_crdloss() -> None:
    samples, dim, k = 64, 16, 32  # a power of 2: torchdistill's alias table then builds
    torch.manual_seed(0)
    s_dim, t_dim = 10, 12
    logits = torch.zeros(BATCH, 2)
    ctx = Context(
        Output(logits, {"pooled": torch.zeros(2, s_dim)}),
        Output(logits, {"pooled": torch.zeros(2, t_dim)}),
        2,
        num_samples=samples,
        train_labels=torch.arange(samples) % 2,
    )
    method = build_method("crd", ctx, {"dim": dim, "k": k, "beta": 0.8})
    reference = CRDLoss("s_norm", "empty", "t_norm", dim, samples, k, samples, 0.07, 0.5)
    reference.memory_v1.copy_(method.student_bank)
    reference.memory_v2.copy_(method.teacher_bank)
    s_norm, t_norm = Normalizer4CRD(method.embed_s), Normalizer4CRD(method.embed_t)
    ours, theirs = [], []
    for step in range(3):  # the first step sets Z; each step updates both banks
        s, t = leaf(BATCH, s_dim, seed=step), torch.randn(BATCH, t_dim)
        index = torch.randperm(samples)[:BATCH]
        negatives = method.sample_negatives(index)
        method.sample_negatives = lambda index, negatives=negatives: negatives
        batch = {"label": index % 2, "index": index}
        crd = method.losses(batch, Output(logits, {"pooled": s}), Output(logits, {"pooled": t}))
        ours.append(loss_and_grads(crd["crd"], [s]))
        supp = {"pos_idx": index, "contrast_idx": torch.cat([index[:, None], negatives], 1)}
        student_io = {**io(s_norm=s_norm(s)), "empty": {"input": supp}}
        loss = 0.8 * reference(student_io, io(t_norm=t_norm(t))).squeeze()  # shape [1]
        theirs.append(loss_and_grads(loss, [s]))
        assert torch.allclose(method.student_bank, reference.memory_v1, atol=1e-6)
        assert torch.allclose(method.teacher_bank, reference.memory_v2, atol=1e-6)
    assert method.z_student.item() == pytest.approx(reference.params[2].item(), rel=1e-6)
    assert method.z_teacher.item() == pytest.approx(reference.params[3].item(), rel=1e-6)
    assert_parity(
        "crd (3 steps, banks and Z included) | torchdistill CRDLoss, contrast_idx given",
        (torch.stack([loss for loss, _ in ours]), [g for _, grads in ours for g in grads]),
        (torch.stack([loss for loss, _ in theirs]), [g for _, grads in theirs for g in grads]),
    )
