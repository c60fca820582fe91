"""Two-in-one KD (Zhou et al. 2023): one student feature distilled from both teacher branches."""

from __future__ import annotations

import torch
from torch import Tensor

from kdbench.method import Context
from kdbench.methods.branches import PROJECTOR_CHANNELS, BranchDistillation
from kdbench.output import Output
from kdbench.registry import METHODS, unknown_message

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "66c62783cfb8"

HOMOGENIZERS = ("magnitude", "pcgrad", "none")
BRANCHES = ("spatial", "frequency")
EPS = 1e-12


@METHODS.register("two-in-one")
class TwoInOne(BranchDistillation):
    """Two-in-one KD, as documented (the full paper was not available to us): the student's
    shared feature ``z`` feeds a spatial projector (1×1 convs, pixel-domain MSE to the
    teacher's ``spatial.*`` feature) and a frequency projector (3×3 convs, DCT-domain loss to
    ``frequency.*``); the two terms' gradients on ``z`` are homogenized before they reach the
    student. Plus CE and ``kd_weight · T² KL`` to the teacher's fused logits.

    ``homogenize``:
      - ``magnitude`` (RotoGrad's magnitude part, Javaloy & Valera 2022): with ``g_k`` the
        gradient of term ``k`` on ``z`` (norms over the whole batch tensor) and ``g_k⁰`` its
        value at the first step (a buffer, so it is checkpointed), ``r_k = ‖g_k‖ / ‖g_k⁰‖``,
        ``α_k = r_k / Σ_j r_j``, ``C = Σ_k α_k ‖g_k‖`` and ``g̃_k = C · g_k / ‖g_k‖``;
      - ``pcgrad`` (Yu et al. 2020) on ``z``: if ``⟨g_s, g_f⟩ < 0``, each is projected onto the
        normal plane of the other's original gradient;
      - ``none``: ``g_s + g_f`` (the "no homogenization" ablation; same gradients as autograd).

    Cost: two extra ``autograd.grad`` calls that stop at ``z`` (each traverses only its
    projector and loss), then one backward through the student. The projectors keep the
    plain gradients of their own terms.
    """

    description = (
        "Two-in-one KD (Zhou et al. 2023): spatial + frequency projectors on one student "
        "feature, homogenized gradients, + logit KD"
    )

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "auto",
        spatial_feature: str = "auto",
        frequency_feature: str = "auto",
        frequency_loss: str = "dct",
        homogenize: str = "magnitude",
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
        temperature: float = 4.0,
        spatial_weight: float = 1.0,
        frequency_weight: float = 1.0,
        projector_channels: int = PROJECTOR_CHANNELS,
        burn_in: int = 20,
    ) -> None:
        """``auto`` features: the student's last stage and each teacher branch's last stage;
        ``student_feature`` may also be ``pooled``. ``projector_channels``: the width of the
        projectors' hidden layers. ``frequency_loss``: ``dct`` or ``mse`` (pixel domain).
        ``burn_in``: the step at which ``magnitude`` takes its reference norms ``‖g_k⁰‖``
        again (RotoGrad's burn-in period, 20 by default), so that they are not the norms of
        the projectors' random initialisation; 0 keeps the first step's."""
        super().__init__(
            ctx, student_feature, ce_weight, kd_weight, temperature, projector_channels
        )
        if homogenize not in HOMOGENIZERS:
            raise ValueError(unknown_message("homogenize mode", homogenize, HOMOGENIZERS))
        self.homogenize = homogenize
        self.burn_in = burn_in
        self.add_term(ctx, "spatial", spatial_feature, "spatial", "mse", spatial_weight)
        self.add_term(
            ctx, "frequency", frequency_feature, "frequency", frequency_loss, frequency_weight
        )
        self.register_buffer("initial_norms", torch.zeros(2))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.last_grads: dict[str, Tensor] = {}
        self.stats: dict[str, Tensor] = {}

    def backward(self, losses: dict[str, Tensor], s_out: Output) -> None:
        z = s_out.feature(self.student_feature)
        g_s, g_f = (self.term_gradient(losses[b], z, self.terms[b].projector) for b in BRANCHES)
        g_s, g_f = g_s.float(), g_f.float()
        h_s, h_f = self.homogenized(g_s, g_f)
        self.steps += 1
        self.last_grads = {"spatial": h_s.detach(), "frequency": h_f.detach()}
        rest = torch.stack([v for k, v in losses.items() if k not in self.terms]).sum()
        (g_rest,) = torch.autograd.grad(rest, z, retain_graph=True)
        self.stats = gradient_stats(g_s, g_f, g_rest.float())
        torch.autograd.backward([rest, z], [None, (h_s + h_f).to(z.dtype)])

    def step_stats(self) -> dict[str, Tensor]:
        """The last step's gradient norms on ``z``, before homogenization: of the spatial and
        the frequency term, of CE + KD, and the cosine between the two feature terms."""
        return self.stats

    def term_gradient(self, loss: Tensor, z: Tensor, projector: str) -> Tensor:
        """``∂loss/∂z``; the projector's own gradients are accumulated into its ``.grad``."""
        params = [p for p in self.projectors[projector].parameters() if p.requires_grad]
        g_z, *g_params = torch.autograd.grad(loss, [z, *params], retain_graph=True)
        for p, g in zip(params, g_params, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        return g_z

    def homogenized(self, g_s: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
        """The two term gradients on ``z`` after ``self.homogenize``."""
        if self.homogenize == "magnitude":
            return self.magnitude(g_s, g_f)
        if self.homogenize == "pcgrad":
            return pcgrad(g_s, g_f)
        return g_s, g_f

    def magnitude(self, g_s: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
        """RotoGrad's magnitude homogenization; the first call records ``‖g_k⁰‖``."""
        norms = torch.stack([g_s.norm(), g_f.norm()]).clamp_min(EPS)
        retake = self.steps == self.burn_in
        initial = torch.where((self.initial_norms > 0) & ~retake, self.initial_norms, norms)
        self.initial_norms.copy_(initial)
        ratios = norms / initial
        alphas = ratios / ratios.sum()
        common = (alphas * norms).sum()
        return g_s * (common / norms[0]), g_f * (common / norms[1])


def gradient_stats(g_s: Tensor, g_f: Tensor, g_rest: Tensor) -> dict[str, Tensor]:
    """Norms of each term's gradient on ``z`` and the cosine between the two feature terms."""
    norms = {"grad_spatial": g_s.norm(), "grad_frequency": g_f.norm(), "grad_ce_kd": g_rest.norm()}
    cosine = (g_s * g_f).sum() / (norms["grad_spatial"] * norms["grad_frequency"]).clamp_min(EPS)
    return {k: v.detach() for k, v in norms.items()} | {"cos_spatial_frequency": cosine.detach()}


def pcgrad(g_s: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
    """PCGrad for two gradients: on conflict (``⟨g_s, g_f⟩ < 0``) each loses its component
    along the other, ``g_s - ⟨g_s, g_f⟩/‖g_f‖² · g_f`` and symmetrically; else unchanged."""
    dot = torch.clamp((g_s * g_f).sum(), max=0.0)
    return (
        g_s - dot / g_f.pow(2).sum().clamp_min(EPS) * g_f,
        g_f - dot / g_s.pow(2).sum().clamp_min(EPS) * g_s,
    )
