"""Hand-computed checks of the KD, FitNets, AT and CRD losses; backward passes on timm models."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from outputs import dual_output

from kdbench.method import Context, build_method
from kdbench.methods.at import AttentionTransfer, attention_map
from kdbench.methods.common import kd_loss, match_spatial, relative_stage, stage_names
from kdbench.methods.crd import CRD
from kdbench.methods.fitnets import FitNets
from kdbench.models import build_model
from kdbench.output import Output


def toy_output(shapes: dict[str, tuple[int, ...]], seed: int = 0, classes: int = 2) -> Output:
    """An ``Output`` of random tensors, batch 2, with features of the given shapes."""
    gen = torch.Generator().manual_seed(seed)
    features = {name: torch.randn(2, *shape, generator=gen) for name, shape in shapes.items()}
    return Output(torch.randn(2, classes, generator=gen), features)


def toy_dual(shapes: dict[str, tuple[int, ...]], seed: int = 0, classes: int = 2) -> Output:
    """``toy_output`` with the dual-branch teacher's layout."""
    out = toy_output(shapes, seed, classes)
    return dual_output(out.logits, out.features)


def toy_ctx(student: Output, teacher: Output, num_samples: int = 10) -> Context:
    """Training labels alternate 0, 1, 0, ..."""
    labels = torch.arange(num_samples) % 2
    return Context(student, teacher, num_classes=2, num_samples=num_samples, train_labels=labels)


def batch_for(labels: list[int], index: list[int] | None = None) -> dict:
    batch = {"label": torch.tensor(labels), "video": [f"v{i}" for i in range(len(labels))]}
    if index is not None:
        batch["index"] = torch.tensor(index)
    return batch


def hand_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    z = logits.double().numpy()
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(z)), labels.numpy()].mean())


FIVE_STAGES = {f"stage{k}": (4, 8 // 2 ** (k // 2), 8 // 2 ** (k // 2)) for k in range(1, 6)}
DUAL_TEACHER = {
    **{f"{branch}.stage{k}": (6, 4, 4) for branch in ("spatial", "frequency") for k in range(1, 5)},
    "spatial.pooled": (6,),
    "frequency.pooled": (6,),
    "fused": (12,),
}


# ---------------------------------------------------------------- common helpers


def test_kd_loss_matches_hand_computation() -> None:
    s = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    temp = 2.0

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p_s, p_t = softmax(s.double().numpy() / temp), softmax(t.double().numpy() / temp)
    expected = (p_t * (np.log(p_t) - np.log(p_s))).sum() / 2 * temp**2
    assert kd_loss(s, t, temp).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(s, s.clone(), temp).item() == pytest.approx(0.0, abs=1e-6)


def test_stage_names_orders_by_depth_and_reads_the_declared_layout() -> None:
    single = toy_output({"stage10": (1, 1, 1), "stage2": (1, 1, 1), "pooled": (1,)})
    assert stage_names(single) == ["stage2", "stage10"]
    assert stage_names(toy_dual(DUAL_TEACHER))[0] == "spatial.stage1"
    with pytest.raises(ValueError, match="no 'stageK' features"):
        stage_names(toy_output({"pooled": (3,)}))
    # the layout is read, not guessed from the names: a declared main path wins
    dual = toy_dual(DUAL_TEACHER)
    declared = dataclasses.replace(
        dual, stages=dual.branches["frequency"], embedding="spatial.pooled"
    )
    assert stage_names(declared) == [f"frequency.stage{k}" for k in range(1, 5)]
    assert CRD(toy_ctx(toy_output({"pooled": (5,)}), declared)).teacher_features() == [
        "spatial.pooled"
    ]


@pytest.mark.parametrize("branch", ["both", "spatial", "frequency"])
def test_the_dual_branch_teacher_declares_its_layout(branch: str) -> None:
    model = build_model(
        "dual-branch", 2, spatial="resnet10t", frequency="resnet10t", branch=branch, image_size=32
    )
    out = model.eval()(torch.randn(2, 3, 32, 32))
    names = ["spatial", "frequency"] if branch == "both" else [branch]
    assert list(out.branches) == names
    for name in names:
        assert out.branches[name] == tuple(f"{name}.stage{k}" for k in range(1, 6))
    assert out.stages == out.branches[names[0]]
    assert out.embedding == "fused"
    assert {*out.stages, out.embedding} <= out.features.keys()


def test_relative_stage_matches_depth() -> None:
    four = ["a", "b", "c", "d"]
    assert relative_stage(3, 5, four) == "b"  # 2.4
    assert relative_stage(2, 4, ["x", "y", "z", "w", "v"]) == "z"  # 2.5 rounds up
    assert relative_stage(1, 5, ["only"]) == "only"
    assert relative_stage(1, 5, four) == "a"  # 0.8, never below the first


def test_match_spatial_pools_both_to_the_smaller_size() -> None:
    s = torch.arange(16.0).view(1, 1, 4, 4)
    t = torch.ones(1, 1, 2, 8)
    ps, pt = match_spatial(s, t)
    assert ps.shape == pt.shape == (1, 1, 2, 4)
    assert ps[0, 0, 0, 0].item() == pytest.approx((0 + 4) / 2)
    assert torch.equal(pt, torch.ones(1, 1, 2, 4))


# ---------------------------------------------------------------- FitNets


def identity_regressor(method: FitNets) -> None:
    conv, bn = method.regressor[:2]
    channels = conv.weight.shape[0]
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None])
        bn.running_var.fill_(1.0 - bn.eps)
    method.eval()


def test_fitnets_hint_equals_beta_times_mse() -> None:
    student = toy_output({"stage1": (3, 4, 4), "stage2": (3, 2, 2)}, seed=1)
    teacher = toy_output({"stage1": (3, 4, 4), "stage2": (3, 2, 2)}, seed=2)
    method = FitNets(toy_ctx(student, teacher), beta=100.0)
    assert (method.student_feature, method.teacher_feature) == ("stage1", "stage1")
    identity_regressor(method)
    terms = method.losses(batch_for([0, 1]), student, teacher)
    s, t = student.features["stage1"].numpy(), teacher.features["stage1"].numpy()
    hint = 100.0 * ((np.maximum(s, 0) - t) ** 2).mean()  # conv + BN + ReLU
    assert terms["hint"].item() == pytest.approx(hint, rel=1e-5)
    ce = hand_cross_entropy(student.logits, torch.tensor([0, 1]))
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)


def test_fitnets_regressor_without_relu() -> None:
    student = toy_output({"stage1": (3, 4, 4)}, seed=1)
    teacher = toy_output({"stage1": (3, 4, 4)}, seed=2)
    method = FitNets(toy_ctx(student, teacher), beta=1.0, relu=False)
    assert len(method.regressor) == 2
    identity_regressor(method)
    s, t = student.features["stage1"].numpy(), teacher.features["stage1"].numpy()
    hint = method.losses(batch_for([0, 1]), student, teacher)["hint"]
    assert hint.item() == pytest.approx(((s - t) ** 2).mean(), rel=1e-5)


def test_fitnets_pools_the_larger_map() -> None:
    student = toy_output({"stage1": (2, 4, 4)}, seed=3)
    teacher = toy_output({"stage1": (2, 2, 2)}, seed=4)
    method = FitNets(toy_ctx(student, teacher), beta=1.0)
    identity_regressor(method)
    s = np.maximum(student.features["stage1"].numpy(), 0)
    s = s.reshape(2, 2, 2, 2, 2, 2).mean(axis=(3, 5))
    t = teacher.features["stage1"].numpy()
    hint = method.losses(batch_for([0, 0]), student, teacher)["hint"]
    assert hint.item() == pytest.approx(((s - t) ** 2).mean(), rel=1e-5)


def test_fitnets_hint_epochs_drop_ce_early() -> None:
    student = toy_output({"stage1": (3, 2, 2)})
    teacher = toy_output({"stage1": (5, 2, 2)})
    method = FitNets(toy_ctx(student, teacher), hint_epochs=2)
    batch = batch_for([1, 0])
    assert set(method.losses(batch, student, teacher)) == {"hint"}
    method.set_epoch(1)
    assert set(method.losses(batch, student, teacher)) == {"hint"}
    method.set_epoch(2)
    assert set(method.losses(batch, student, teacher)) == {"ce", "hint"}


def test_fitnets_auto_picks_middle_stage_and_spatial_branch() -> None:
    method = FitNets(toy_ctx(toy_output(FIVE_STAGES), toy_dual(DUAL_TEACHER)), kernel=3)
    assert (method.student_feature, method.teacher_feature) == ("stage3", "spatial.stage2")
    assert method.teacher_features() == ["spatial.stage2"]
    assert method.regressor[0].kernel_size == (3, 3)


def test_fitnets_vector_features_regress_through_a_1x1_conv() -> None:
    student, teacher = toy_output({"pooled": (4,)}), toy_dual(DUAL_TEACHER)
    method = FitNets(toy_ctx(student, teacher), student_feature="pooled", teacher_feature="fused")
    assert method.regressor[0].weight.shape == (12, 4, 1, 1)
    assert torch.isfinite(method.losses(batch_for([0, 1]), student, teacher)["hint"])


def test_fitnets_unknown_feature_is_a_clear_error() -> None:
    ctx = toy_ctx(toy_output(FIVE_STAGES), toy_dual(DUAL_TEACHER))
    with pytest.raises(KeyError, match=r"did you mean 'spatial\.stage2'"):
        FitNets(ctx, teacher_feature="spatial.stag2")
    with_pooled = toy_ctx(toy_output({**FIVE_STAGES, "pooled": (4,)}), toy_dual(DUAL_TEACHER))
    with pytest.raises(ValueError, match="set teacher_feature"):
        FitNets(with_pooled, student_feature="pooled")
    with pytest.raises(ValueError, match="must be odd"):
        FitNets(ctx, kernel=2)


# ---------------------------------------------------------------- AT


def hand_attention(x: torch.Tensor) -> np.ndarray:
    a = (x.double().numpy() ** 2).mean(1).reshape(len(x), -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_attention_map_of_a_fixed_tensor() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 2.0], [1.0, 0.0]]]])
    expected = torch.tensor([[0.5, 4.0, 5.0, 8.0]]) / math.sqrt(105.25)
    assert torch.allclose(attention_map(x, 2.0), expected)


def test_at_loss_equals_hand_value() -> None:
    student = toy_output({"stage1": (2, 4, 4)}, seed=5)
    teacher = toy_output({"stage1": (3, 4, 4)}, seed=6)
    method = AttentionTransfer(toy_ctx(student, teacher), pairs=[["stage1", "stage1"]])
    terms = method.losses(batch_for([0, 1]), student, teacher)
    diff = hand_attention(student.features["stage1"]) - hand_attention(teacher.features["stage1"])
    assert terms["at"].item() == pytest.approx(1000.0 / 2 * (diff**2).mean(), rel=1e-5)
    ce = hand_cross_entropy(student.logits, torch.tensor([0, 1]))
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)


def test_at_identical_features_give_zero() -> None:
    out = toy_output(FIVE_STAGES, seed=7)
    method = AttentionTransfer(toy_ctx(out, out))
    assert method.losses(batch_for([0, 1]), out, out)["at"].item() == pytest.approx(0.0, abs=1e-6)


def test_at_pools_the_larger_map() -> None:
    student = toy_output({"stage1": (2, 8, 8)}, seed=8)
    teacher = toy_output({"stage1": (3, 4, 4)}, seed=9)
    method = AttentionTransfer(toy_ctx(student, teacher), pairs=[["stage1", "stage1"]], beta=2.0)
    pooled = student.features["stage1"].view(2, 2, 4, 2, 4, 2).mean((3, 5))
    diff = hand_attention(pooled) - hand_attention(teacher.features["stage1"])
    at = method.losses(batch_for([0, 1]), student, teacher)["at"]
    assert at.item() == pytest.approx((diff**2).mean(), rel=1e-5)


def test_at_auto_pairs_the_deepest_three_stages_of_4x4_or_more() -> None:
    # FIVE_STAGES: 8×8, 4×4, 4×4, 2×2, 2×2; the dual-branch teacher: 4×4 everywhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method = AttentionTransfer(toy_ctx(toy_output(FIVE_STAGES), toy_dual(DUAL_TEACHER)))
    assert method.pairs == [
        ("stage1", "spatial.stage1"),
        ("stage2", "spatial.stage2"),
        ("stage3", "spatial.stage2"),
    ]
    assert method.teacher_features() == ["spatial.stage1", "spatial.stage2"]


def test_at_auto_counts_the_teacher_map_and_needs_one_large_pair() -> None:
    student = toy_output({f"stage{k}": (4, 8, 8) for k in (1, 2)})
    teacher = toy_output({"stage1": (4, 4, 4), "stage2": (4, 2, 2)})
    assert AttentionTransfer(toy_ctx(student, teacher)).pairs == [("stage1", "stage1")]
    tiny = toy_output({"stage1": (4, 2, 2), "stage2": (4, 1, 1)})
    with pytest.raises(ValueError, match="no stage pair has maps of 4×4 or more"):
        AttentionTransfer(toy_ctx(tiny, tiny))


def test_at_warns_when_a_pair_is_smaller_than_4x4() -> None:
    ctx = toy_ctx(toy_output(FIVE_STAGES), toy_dual(DUAL_TEACHER))
    with pytest.warns(UserWarning, match=r"\(stage4, spatial.stage3\) compares 2×2 maps"):
        AttentionTransfer(ctx, pairs=[["stage2", "spatial.stage2"], ["stage4", "spatial.stage3"]])


def test_at_rejects_bad_pairs() -> None:
    ctx = toy_ctx(toy_output({**FIVE_STAGES, "pooled": (4,)}), toy_dual(DUAL_TEACHER))
    with pytest.raises(ValueError, match="pairs must be"):
        AttentionTransfer(ctx, pairs=[["stage1"]])
    with pytest.raises(ValueError, match=r"needs \[B,C,H,W\]"):
        AttentionTransfer(ctx, pairs=[["pooled", "spatial.stage1"]])


# ---------------------------------------------------------------- CRD


def hand_nce(scores: np.ndarray, num_samples: int) -> float:
    k = scores.shape[1] - 1
    noise = k / num_samples
    total = 0.0
    for row in scores:
        total += math.log(row[0] / (row[0] + noise + 1e-7))
        total += sum(math.log(noise / (p + noise + 1e-7)) for p in row[1:])
    return -total / len(scores)


def hand_embed(layer: torch.nn.Linear, x: torch.Tensor) -> np.ndarray:
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    v = x.double().numpy() @ w.T + b
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def toy_crd(num_samples: int = 6, **params) -> tuple[CRD, Output, Output]:
    torch.manual_seed(0)
    student = toy_output({"pooled": (5,)}, seed=10)
    teacher = toy_output({"pooled": (3,)}, seed=11)
    return CRD(toy_ctx(student, teacher, num_samples), **params), student, teacher


def test_crd_nce_loss_and_bank_update_match_hand_computation() -> None:
    method, student, teacher = toy_crd(k=3, dim=4)
    negatives = torch.tensor([[1, 2, 3], [0, 0, 5]])
    method.sample_negatives = lambda index: negatives
    rows = np.array([[0, 1, 2, 3], [4, 0, 0, 5]])
    old_s = method.student_bank.double().numpy().copy()
    old_t = method.teacher_bank.double().numpy().copy()
    v_s = hand_embed(method.embed_s, student.features["pooled"])
    v_t = hand_embed(method.embed_t, teacher.features["pooled"])

    terms = method.losses(batch_for([0, 1], index=[0, 4]), student, teacher)

    e_s = np.exp(np.einsum("bkd,bd->bk", old_t[rows], v_s) / 0.07)  # student vs teacher bank
    e_t = np.exp(np.einsum("bkd,bd->bk", old_s[rows], v_t) / 0.07)  # teacher vs student bank
    z_s, z_t = e_s.mean() * 6, e_t.mean() * 6
    expected = 0.8 * (hand_nce(e_s / z_s, 6) + hand_nce(e_t / z_t, 6))
    assert terms["crd"].item() == pytest.approx(expected, rel=1e-4)
    assert method.z_student.item() == pytest.approx(z_s, rel=1e-4)
    assert method.z_teacher.item() == pytest.approx(z_t, rel=1e-4)

    for bank, old, v in ((method.student_bank, old_s, v_s), (method.teacher_bank, old_t, v_t)):
        new = 0.5 * old[[0, 4]] + 0.5 * v
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        assert np.allclose(bank.numpy()[[0, 4]], new, atol=1e-6)
        assert np.allclose(bank.numpy()[[1, 2, 3, 5]], old[[1, 2, 3, 5]])

    method.losses(batch_for([0, 1], index=[2, 3]), student, teacher)
    assert method.z_student.item() == pytest.approx(z_s, rel=1e-4)  # Z is set once


def test_crd_negatives_are_uniform_over_the_others() -> None:
    method, _, _ = toy_crd(negatives="uniform")
    assert method.k == 5  # 16384 clamped to num_samples - 1
    index = torch.arange(6).repeat(50)
    torch.manual_seed(1)
    negatives = method.sample_negatives(index)
    assert negatives.shape == (300, 5)
    assert not (negatives == index[:, None]).any()
    for i in range(6):
        assert set(negatives[index == i].flatten().tolist()) == set(range(6)) - {i}


def test_crd_negatives_come_from_the_other_classes_by_default() -> None:
    student, teacher = toy_output({"pooled": (5,)}), toy_output({"pooled": (3,)})
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 2])
    ctx = Context(student, teacher, num_classes=3, num_samples=7, train_labels=labels)
    method = CRD(ctx, k=4)
    index = torch.arange(7).repeat(100)
    torch.manual_seed(2)
    negatives = method.sample_negatives(index)
    assert negatives.shape == (700, 4)
    for i in range(7):
        others = {j for j in range(7) if labels[j] != labels[i]}
        assert set(negatives[index == i].flatten().tolist()) == others
    assert "negative_order" not in method.state_dict()  # derived from the labels, not saved


def test_crd_other_class_negatives_need_labels_of_two_classes() -> None:
    student, teacher = toy_output({"pooled": (5,)}), toy_output({"pooled": (3,)})
    with pytest.raises(ValueError, match=r"label of each of the 6 training samples \(got none"):
        CRD(Context(student, teacher, num_classes=2, num_samples=6))
    one_class = Context(student, teacher, 2, num_samples=6, train_labels=torch.zeros(6))
    with pytest.raises(ValueError, match="at least 2 classes"):
        CRD(one_class)
    with pytest.raises(ValueError, match="negatives mode 'exact'"):
        CRD(one_class, negatives="exact")
    assert CRD(one_class, negatives="uniform").k == 5


def test_crd_embeds_in_float32_under_bf16_autocast() -> None:
    results = []
    for precision in (torch.float32, torch.bfloat16):
        method, student, teacher = toy_crd()
        method.sample_negatives = lambda index: torch.tensor([[1, 2, 3, 4, 5], [0, 2, 3, 4, 5]])
        with torch.autocast("cpu", dtype=precision, enabled=precision != torch.float32):
            crd = method.losses(batch_for([0, 1], index=[0, 1]), student, teacher)["crd"]
        results.append((crd, method.student_bank.clone()))
    (crd_32, bank_32), (crd_16, bank_16) = results
    assert crd_16.dtype == torch.float32
    assert torch.allclose(crd_16, crd_32, atol=1e-6)
    assert torch.allclose(bank_16, bank_32, atol=1e-7)


def test_crd_small_split_defaults_and_checkpointed_banks() -> None:
    method, _, _ = toy_crd(num_samples=50)
    assert method.k == 49
    state = method.state_dict()
    assert state["student_bank"].shape == state["teacher_bank"].shape == (50, 128)
    assert torch.allclose(state["student_bank"].norm(dim=1), torch.ones(50))
    assert {"z_student", "z_teacher"} <= set(state)
    assert method.teacher_feature == "pooled"


def test_crd_eval_leaves_banks_alone_and_kd_is_optional() -> None:
    method, student, teacher = toy_crd(kd_weight=0.5, temperature=2.0)
    method.eval()
    before = method.student_bank.clone()
    terms = method.losses(batch_for([0, 1], index=[0, 1]), student, teacher)
    assert torch.equal(method.student_bank, before)
    kd = 0.5 * kd_loss(student.logits, teacher.logits, 2.0)
    assert set(terms) == {"ce", "crd", "kd"}
    assert terms["kd"].item() == pytest.approx(kd.item())
    dual = CRD(toy_ctx(toy_output({"pooled": (5,)}), toy_dual(DUAL_TEACHER)))
    assert dual.teacher_features() == ["fused"]


# ---------------------------------------------------------------- real timm models


def dual_branch(out: Output) -> Output:
    """A single-branch output renamed like the dual-branch teacher's."""
    features = {f"{b}.{n}": f for n, f in out.features.items() for b in ("spatial", "frequency")}
    features["fused"] = torch.cat([out.features["pooled"]] * 2, dim=1)
    return dual_output(out.logits, features)


@pytest.fixture(scope="module")
def nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    teacher = build_model("resnet10t", num_classes=2).eval()
    return build_model("mobilenetv3_small_050", num_classes=2), teacher


@pytest.mark.parametrize("dual", [False, True], ids=["single", "dual"])
@pytest.mark.parametrize(
    ("name", "params"), [("fitnets", {}), ("at", {}), ("crd", {"kd_weight": 1.0})]
)
def test_backward_on_timm_models(nets, name: str, params: dict, dual: bool) -> None:
    student, teacher = nets
    wrap = dual_branch if dual else (lambda out: out)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        labels = torch.arange(50) % 2
        ctx = Context(student(x[:2]), wrap(teacher(x[:2])), 2, num_samples=50, train_labels=labels)
        t_out = wrap(teacher(x))
    method = build_method(name, ctx, params)
    assert all(n in t_out.features for n in method.teacher_features())
    student.zero_grad()
    s_out = student(x)
    terms = method.losses(batch_for([0, 1, 1, 0], index=[3, 7, 11, 49]), s_out, t_out)
    assert all(torch.isfinite(term) for term in terms.values())
    method.backward(terms, s_out)
    for params_of in (student, method):
        for p in params_of.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("bank_rows", [10, 100])  # matmul + gather, then bank[rows] + bmm
def test_crd_bank_dot_paths_agree_with_the_definition(bank_rows: int) -> None:
    from kdbench.methods.crd import bank_dot

    g = torch.Generator().manual_seed(0)
    bank, anchor = torch.randn(bank_rows, 4, generator=g), torch.randn(3, 4, generator=g)
    rows = torch.randint(0, bank_rows, (3, 5), generator=g)
    expected = (bank[rows] * anchor[:, None, :]).sum(-1)
    assert torch.allclose(bank_dot(bank, rows, anchor), expected, atol=1e-6)


class LabelledImages(torch.utils.data.Dataset):
    """Four random 32-px images; ``labels`` as the kdbench datasets expose them."""

    labels = np.array([1, 0, 0, 1])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.randn(3, 32, 32), "label": torch.tensor(self.labels[index])}


def test_the_harness_context_carries_the_training_labels(nets) -> None:
    from kdbench.train.data import dataset_labels
    from kdbench.train.setup import dry_run

    student, teacher = nets
    ctx = dry_run(student, teacher, LabelledImages(), num_classes=2, device="cpu")
    assert ctx.num_samples == 4
    assert torch.equal(ctx.train_labels, torch.tensor([1, 0, 0, 1]))
    assert dataset_labels(torch.utils.data.TensorDataset(torch.zeros(3))) is None


@pytest.mark.parametrize("name", ["fitnets", "at", "crd"])
def test_feature_methods_add_logit_kd_only_when_weighted(name) -> None:
    student = toy_output({"stage1": (3, 4, 4), "pooled": (3,)}, seed=7)
    teacher = toy_output({"stage1": (3, 4, 4), "pooled": (3,)}, seed=8)
    batch = batch_for([0, 1], index=[0, 1])
    plain = build_method(name, toy_ctx(student, teacher), {"k": 4} if name == "crd" else {})
    assert "kd" not in plain.losses(batch, student, teacher)  # RepDistiller's -a 0
    params = {"kd_weight": 0.5, "temperature": 2.0} | ({"k": 4} if name == "crd" else {})
    terms = build_method(name, toy_ctx(student, teacher), params).losses(batch, student, teacher)
    expected = 0.5 * kd_loss(student.logits, teacher.logits, 2.0)
    assert terms["kd"].item() == pytest.approx(expected.item(), rel=1e-6)
