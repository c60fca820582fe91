"""BatchNorm over the global batch when a run trains on several processes (``train.sync_bn``),
so that N processes compute what one process does with the whole batch.

On CUDA this is timm's ``convert_sync_batchnorm`` (``torch.nn.SyncBatchNorm``, which also
converts timm's fused ``BatchNormAct2d``). PyTorch's SyncBatchNorm has no CPU kernels, so on CPU
(gloo) ``GlobalBatchNorm`` computes the statistics with differentiable all-reduces: two per
layer (the mean, then the centred sum of squares), and autograd carries the gradient of the
statistics back across the processes. Both keep the state-dict keys of the layer they replace:
checkpoints and weights move freely between 1 and N processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from kdbench.config import ConfigError

PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over the run's processes; its gradient is summed the same way
    (each process's input feeds every process's output)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def all_reduce(tensor: Tensor) -> Tensor:
    return SumOverProcesses.apply(tensor)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``BatchNorm{1,2,3}d`` whose training statistics are those of the batch of every process
    of the run (CPU, gloo); in eval mode, and in a single process, it is the plain layer."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and torch.distributed.is_initialized()):
            return super().forward(x)
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        x32 = x if x.dtype in (torch.float32, torch.float64) else x.float()  # bf16 autocast
        count = all_reduce(torch.tensor([x.numel() / x.shape[1]], device=x.device))
        mean = all_reduce(x32.sum(dims)) / count
        centred = x32 - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            self.update_running_stats(mean.detach(), var.detach(), count.item())
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)

    @torch.no_grad()
    def update_running_stats(self, mean: Tensor, var: Tensor, count: float) -> None:
        """As ``F.batch_norm`` does: the unbiased variance, ``momentum`` (or the cumulative
        average when it is None)."""
        self.num_batches_tracked += 1
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased, momentum)


def synchronise_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm layer computing global-batch statistics."""
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(module)
    return replace_plain(module, "")


def replace_plain(module: nn.Module, name: str) -> nn.Module:
    if type(module) in PLAIN:
        return global_copy(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        raise ConfigError(
            f"train.sync_bn on CPU: {name or 'the model'} is a {type(module).__name__}, which "
            "kdbench cannot synchronise over gloo (plain BatchNorm1d/2d/3d only); set "
            "train.sync_bn=false (per-process statistics) or train on CUDA"
        )
    for child_name, child in module.named_children():
        setattr(module, child_name, replace_plain(child, f"{name}.{child_name}".lstrip(".")))
    return module


def global_copy(bn: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
    """A ``GlobalBatchNorm`` with ``bn``'s settings, parameters and buffers (shared, not
    copied: the optimiser's parameters stay the model's)."""
    out = GlobalBatchNorm(
        bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats
    ).to(device=bn.weight.device if bn.affine else None)
    if bn.affine:
        out.weight, out.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        out.running_mean, out.running_var = bn.running_mean, bn.running_var
        out.num_batches_tracked = bn.num_batches_tracked
    out.train(bn.training)
    return out
