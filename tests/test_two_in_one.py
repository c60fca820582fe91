"""Two-in-one KD and its ablations: gradient homogenization, the DCT loss, the variants."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from outputs import dual_output

from kdbench.method import Context, build_method
from kdbench.methods.branches import feature_distance
from kdbench.methods.two_in_one import pcgrad
from kdbench.models import TimmNet, build_model
from kdbench.output import Output
from kdbench.registry import METHODS

BATCH, CLASSES, CHANNELS = 4, 2, 32
SMALL = {"student_feature": "stage4", "projector_channels": 16}  # stage4: [4, 24, 2, 2]


def fake_teacher(seed: int = 0, frequency_channels: int = CHANNELS) -> Output:
    """A dual-branch teacher's output, by hand: two stages per branch, 4×4 last maps."""
    g = torch.Generator().manual_seed(seed)
    features = {}
    for branch, channels in (("spatial", CHANNELS), ("frequency", frequency_channels)):
        features[f"{branch}.stage1"] = torch.randn(BATCH, 8, 8, 8, generator=g)
        features[f"{branch}.stage2"] = torch.randn(BATCH, channels, 4, 4, generator=g)
        features[f"{branch}.pooled"] = torch.randn(BATCH, channels, generator=g)
    features["fused"] = torch.randn(BATCH, CHANNELS + frequency_channels, generator=g)
    return dual_output(torch.randn(BATCH, CLASSES, generator=g), features)


def setup(name: str = "two-in-one", teacher: Output | None = None, **params):
    """A tiny student, a batch, its forward and the built method."""
    torch.manual_seed(0)
    student = TimmNet("mobilenetv3_small_050", num_classes=CLASSES)
    batch = {"image": torch.randn(BATCH, 3, 32, 32), "label": torch.tensor([0, 1, 0, 1])}
    teacher = fake_teacher() if teacher is None else teacher
    s_out = student(batch["image"])
    ctx = Context(s_out, teacher, CLASSES, num_samples=100)
    method = build_method(name, ctx, {**SMALL, **params})
    return student, method, batch, s_out, teacher


def raw_grads(method, losses, s_out) -> tuple[torch.Tensor, torch.Tensor]:
    """The un-homogenized gradients of the two feature terms on the shared feature."""
    z = s_out.feature(method.student_feature)
    return tuple(
        torch.autograd.grad(losses[b], z, retain_graph=True)[0] for b in ("spatial", "frequency")
    )


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_magnitude_gives_equal_norms_and_keeps_directions():
    _, method, batch, s_out, teacher = setup(homogenize="magnitude")
    losses = method.losses(batch, s_out, teacher)
    g_s, g_f = raw_grads(method, losses, s_out)
    method.backward(losses, s_out)
    h_s, h_f = method.last_grads["spatial"], method.last_grads["frequency"]
    assert float(g_s.norm()) != pytest.approx(float(g_f.norm()), rel=1e-2)
    assert float(h_s.norm()) == pytest.approx(float(h_f.norm()), rel=1e-5)
    assert cosine(h_s, g_s) == pytest.approx(1.0, abs=1e-5)
    assert cosine(h_f, g_f) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(method.initial_norms, torch.stack([g_s.norm(), g_f.norm()]))


def test_magnitude_weights_match_hand_computation_over_two_steps():
    _, method, *_ = setup(homogenize="magnitude")
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # step 1 defines ‖g⁰‖ = (3, 1): r = (1, 1), α = (½, ½), C = ½·3 + ½·1 = 2
    h_s, h_f = method.magnitude(3 * e1, 1 * e2)
    assert torch.allclose(h_s, 2 * e1) and torch.allclose(h_f, 2 * e2)
    # step 2, norms (1.5, 2): r = (0.5, 2), α = (0.2, 0.8), C = 0.2·1.5 + 0.8·2 = 1.9
    h_s, h_f = method.magnitude(1.5 * e1, 2 * e2)
    assert torch.allclose(h_s, 1.9 * e1) and torch.allclose(h_f, 1.9 * e2)
    assert torch.allclose(method.state_dict()["initial_norms"], torch.tensor([3.0, 1.0]))


def test_magnitude_takes_its_reference_norms_again_after_the_burn_in():
    _, method, *_ = setup(homogenize="magnitude", burn_in=2)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    for norms in ((3.0, 1.0), (1.0, 1.0)):  # steps 0 and 1: the reference is step 0's
        method.magnitude(norms[0] * e1, norms[1] * e2)
        method.steps += 1
    assert torch.allclose(method.initial_norms, torch.tensor([3.0, 1.0]))
    method.magnitude(2 * e1, 4 * e2)  # step 2 == burn_in: taken again, so r = (1, 1)
    assert torch.allclose(method.initial_norms, torch.tensor([2.0, 4.0]))
    method.steps += 1
    h_s, h_f = method.magnitude(1 * e1, 4 * e2)  # r = (0.5, 1), α = (1/3, 2/3), C = 3
    assert torch.allclose(h_s, 3 * e1) and torch.allclose(h_f, 3 * e2)


def test_a_step_reports_the_gradient_norm_of_every_term_on_z():
    _, method, batch, s_out, teacher = setup(homogenize="none")
    losses = method.losses(batch, s_out, teacher)
    g_s, g_f = raw_grads(method, losses, s_out)
    z = s_out.feature(method.student_feature)
    (g_rest,) = torch.autograd.grad(losses["ce"] + losses["kd"], z, retain_graph=True)
    method.backward(losses, s_out)
    stats = method.step_stats()
    assert float(stats["grad_spatial"]) == pytest.approx(float(g_s.norm()), rel=1e-5)
    assert float(stats["grad_frequency"]) == pytest.approx(float(g_f.norm()), rel=1e-5)
    assert float(stats["grad_ce_kd"]) == pytest.approx(float(g_rest.norm()), rel=1e-5)
    assert float(stats["cos_spatial_frequency"]) == pytest.approx(cosine(g_s, g_f), abs=1e-5)


def test_pcgrad_formula_on_hand_made_vectors():
    h_s, h_f = pcgrad(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(h_s, torch.tensor([0.5, 0.5]))  # (1,0) + ½(-1,1)
    assert torch.allclose(h_f, torch.tensor([0.0, 1.0]))  # (-1,1) + (1,0)
    h_s, h_f = pcgrad(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))  # no conflict
    assert torch.equal(h_s, torch.tensor([1.0, 0.0])) and torch.equal(h_f, torch.tensor([1.0, 1.0]))


def test_pcgrad_removes_a_conflict_between_the_branches():
    for seed in range(20):  # teacher targets for which the raw gradients on z conflict
        _, method, batch, s_out, teacher = setup(teacher=fake_teacher(seed), homogenize="pcgrad")
        losses = method.losses(batch, s_out, teacher)
        g_s, g_f = raw_grads(method, losses, s_out)
        if (g_s * g_f).sum() < 0:
            break
    else:
        pytest.fail("no conflicting teacher targets found")
    method.backward(losses, s_out)
    h_s, h_f = method.last_grads["spatial"], method.last_grads["frequency"]
    dot = (g_s * g_f).sum()
    assert torch.allclose(h_s, g_s - dot / g_f.pow(2).sum() * g_f, atol=1e-7)
    assert torch.allclose(h_f, g_f - dot / g_s.pow(2).sum() * g_s, atol=1e-7)
    assert float((h_s * h_f).sum()) >= -1e-9


def test_none_gives_the_gradients_of_plain_autograd():
    student, method, batch, s_out, teacher = setup(homogenize="none")
    losses = method.losses(batch, s_out, teacher)
    params = [*student.parameters(), *method.parameters()]
    total = torch.stack(list(losses.values())).sum()
    expected = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
    method.backward(losses, s_out)
    for p, e in zip(params, expected, strict=True):
        if e is None:
            assert p.grad is None
        else:
            assert torch.allclose(p.grad, e, rtol=1e-4, atol=1e-7)


def test_projectors_get_the_plain_gradients_of_their_own_terms():
    _, method, batch, s_out, teacher = setup(homogenize="magnitude")
    losses = method.losses(batch, s_out, teacher)
    params = {b: list(method.projectors[b].parameters()) for b in ("spatial", "frequency")}
    expected = {
        b: torch.autograd.grad(losses[b], ps, retain_graph=True) for b, ps in params.items()
    }
    method.backward(losses, s_out)
    for branch, ps in params.items():
        for p, e in zip(ps, expected[branch], strict=True):
            assert p.grad is not None and torch.allclose(p.grad, e)
        assert any(float(p.grad.abs().sum()) > 0 for p in ps)


def standardized(x: np.ndarray) -> np.ndarray:
    axes = (1, 2, 3)
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)


def test_feature_losses_match_an_independent_dct():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 3, 4, 4, generator=g), 3 * torch.randn(2, 3, 4, 4, generator=g)
    spec_s, spec_t = (
        scipy.fft.dctn(standardized(x.double().numpy()), axes=(2, 3), norm="ortho") for x in (s, t)
    )
    log_mse = np.mean((np.log1p(np.abs(spec_s)) - np.log1p(np.abs(spec_t))) ** 2)
    assert float(feature_distance(s, t, "dct")) == pytest.approx(log_mse, rel=1e-4)
    # Parseval: the pixel-domain MSE equals the MSE of the orthonormal DCT coefficients
    assert float(feature_distance(s, t, "mse")) == pytest.approx(
        np.mean((spec_s - spec_t) ** 2), rel=1e-4
    )


def test_feature_distance_pools_the_larger_map():
    s, t = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(t, 2)
    assert torch.allclose(feature_distance(s, t, "dct"), feature_distance(s, pooled, "dct"))


@pytest.mark.parametrize(
    ("name", "terms", "projectors"),
    [
        ("two-in-one", {"spatial", "frequency"}, {"spatial", "frequency"}),
        ("feat-spatial", {"spatial"}, {"spatial"}),
        ("feat-frequency", {"frequency"}, {"frequency"}),
        ("feat-both", {"spatial", "frequency"}, {"spatial"}),
    ],
)
def test_variants_choose_their_terms_and_projectors(name, terms, projectors):
    _, method, batch, s_out, teacher = setup(name)
    losses = method.losses(batch, s_out, teacher)
    assert set(losses) == {"ce", "kd"} | terms
    assert set(method.projectors) == projectors
    assert method.teacher_features() == [
        f"{b}.stage2" for b in ("spatial", "frequency") if b in terms
    ]
    method.backward(losses, s_out)
    assert all(p.grad is not None for p in method.parameters())


def test_feat_both_feeds_one_projector_from_both_targets():
    _, method, batch, s_out, teacher = setup("feat-both")
    losses = method.losses(batch, s_out, teacher)
    weight = method.projectors["spatial"][-1].weight
    for branch in ("spatial", "frequency"):
        assert method.terms[branch].projector == "spatial"
        assert float(torch.autograd.grad(losses[branch], weight, retain_graph=True)[0].norm()) > 0


def test_feat_both_refuses_branches_of_different_widths():
    with pytest.raises(ValueError, match=r"'frequency.stage2' has 48 channels.*outputs 32"):
        setup("feat-both", teacher=fake_teacher(frequency_channels=48))


@pytest.mark.parametrize("name", ["two-in-one", "feat-spatial", "feat-frequency", "feat-both"])
def test_a_single_branch_teacher_is_a_clear_error(name):
    plain = Output(torch.randn(BATCH, CLASSES), {"stage1": torch.randn(BATCH, 8, 4, 4)})
    with pytest.raises(ValueError, match=r"needs a dual-branch teacher.*has: stage1"):
        setup(name, teacher=plain)


def test_pooled_student_feature_and_explicit_teacher_features():
    _, method, batch, s_out, teacher = setup(
        student_feature="pooled",
        spatial_feature="spatial.pooled",
        frequency_feature="frequency.stage1",
    )
    assert method.teacher_features() == ["spatial.pooled", "frequency.stage1"]
    losses = method.losses(batch, s_out, teacher)
    method.backward(losses, s_out)
    assert s_out.features["pooled"].shape == (BATCH, 1024)
    with pytest.raises(ValueError, match=r"did you mean 'spatial\.stage2'"):
        setup(spatial_feature="spatial.stage3")


def test_unknown_options_are_errors():
    with pytest.raises(ValueError, match="homogenize mode 'rotograd'"):
        setup(homogenize="rotograd")
    with pytest.raises(ValueError, match="feature loss 'l1'"):
        setup(frequency_loss="l1")


def test_trains_from_the_dual_branch_teacher():
    teacher = build_model(
        "dual-branch", CLASSES, spatial="resnet10t", frequency="resnet10t", image_size=32
    ).eval()
    _, _, batch, s_out, _ = setup()
    with torch.no_grad():
        t_out = teacher(batch["image"])
    ctx = Context(s_out, t_out, CLASSES, num_samples=100)
    method = build_method("two-in-one", ctx, {"projector_channels": 16})
    assert method.teacher_features() == ["spatial.stage5", "frequency.stage5"]
    method.backward(method.losses(batch, s_out, t_out), s_out)
    assert sorted(METHODS.names("feat-*")) == ["feat-both", "feat-frequency", "feat-spatial"]
