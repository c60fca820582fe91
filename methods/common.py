"""Helpers shared by distillation methods: the KD term, logit standardisation, stage lookup and
feature matching."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context
from kdbench.output import Output


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton's soft-target term: T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Sun et al. (2024)'s z-score of each row: ``(z − mean) / (eps + std)``, with the unbiased
    std as in their code and torchdistill's ``LogitStdKDLoss``. On two classes every row becomes
    ``±(1/√2, −1/√2)``: only the sign of the logit gap survives, and the gradient through it is
    of the order of ``eps``."""
    mean = logits.mean(dim=1, keepdim=True)
    return (logits - mean) / (eps + logits.std(dim=1, keepdim=True))


def kd_term(weight: float, s_out: Output, t_out: Output, temperature: float) -> dict[str, Tensor]:
    """``{"kd": weight · kd_loss}`` for a feature method's optional logit-KD term; ``{}`` at
    weight 0 (RepDistiller's ``-a 0``), so its rows train without one."""
    if not weight:
        return {}
    return {"kd": weight * kd_loss(s_out.logits, t_out.logits.detach(), temperature)}


def stage_names(out: Output) -> list[str]:
    """The stage features of ``out`` in depth order, as its layout declares them
    (``Output.stages``: ``spatial.stage1..`` for the dual-branch teacher, else ``stageK``)."""
    return out.stage_names()


def relative_stage(position: int, count: int, stages: list[str]) -> str:
    """The name in ``stages`` at the relative depth of stage ``position`` (1-based) of ``count``."""
    k = (2 * position * len(stages) + count) // (2 * count)  # round half up
    return stages[min(max(k, 1), len(stages)) - 1]


def feature_map(out: Output, name: str) -> Tensor:
    """Feature ``name`` as ``[B, C, H, W]``; a vector ``[B, D]`` becomes ``[B, D, 1, 1]``."""
    x = out.feature(name)
    if x.dim() == 2:
        return x[:, :, None, None]
    if x.dim() != 4:
        raise ValueError(
            f"feature {name!r} has shape {tuple(x.shape)}; expected [B,C,H,W] or [B,D]"
        )
    return x


def conv_projector(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """A ``kernel``×``kernel`` convolution (same padding, no bias) followed by batch norm."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"projector kernel must be odd (1, 3, ...) to keep the size, got {kernel}")
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


def match_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool both maps to the smaller height and width of the two."""
    size = (min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3]))
    if student.shape[2:] != size:
        student = F.adaptive_avg_pool2d(student, size)
    if teacher.shape[2:] != size:
        teacher = F.adaptive_avg_pool2d(teacher, size)
    return student, teacher


def teacher_output(ctx: Context, method: str) -> Output:
    """The teacher's dry-forward output, or a clear error when the run has no teacher."""
    if ctx.teacher is None:
        raise ValueError(f"method {method!r} needs a teacher, and this run has none")
    return ctx.teacher
