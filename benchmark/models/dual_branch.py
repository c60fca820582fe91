"""The dual-branch teacher: a spatial (RGB) and a frequency (FAD) timm backbone, fused late."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.models.frequency import BANDS, FAD, LFS
from kdbench.models.timm_net import TimmNet
from kdbench.output import Head, Output
from kdbench.registry import MODELS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "aab081060501"

BRANCHES = ("both", "spatial", "frequency")


@MODELS.register("dual-branch")
class DualBranch(nn.Module):
    """Spatial branch ``spatial`` on RGB, frequency branch ``frequency`` on ``FAD(x)``
    (``3·4`` channels); the pooled vectors are concatenated (``fused``) into a linear head.

    ``branch``: ``"both"``, or ``"spatial"`` / ``"frequency"`` alone (the ablation teachers).
    ``image_size``: the (square) input size, fixed by FAD's DCT matrix.
    ``lfs``: also feed the frequency branch F3-Net's local frequency statistics (``LFS``: 6
    log-DCT band maps of sliding windows, up-sampled to the image size), so it takes
    ``12 + 6`` channels; F3-Net gives LFS a backbone of its own, we concatenate.
    ``fusion``: only ``"late"``; a mid-level exchange would need stage-by-stage execution,
    which timm does not offer for an arbitrary backbone.
    ``fad_grey``: decompose the grey image (the channel mean, as LFS reads it) instead of each
    RGB channel, so the frequency branch takes ``4 (+ 6)`` channels and sees no colour; F3-Net
    and the default decompose each channel.
    ``aux_heads``: give each branch its own linear head on its pooled vector, exposed as the
    features ``spatial.logits`` and ``frequency.logits``; ``vanilla`` trains them with
    cross-entropy next to the fused head (deep supervision), so neither branch can lean on the
    other (the "modality laziness" of joint training; Wang et al., CVPR 2020).
    """

    def __init__(
        self,
        num_classes: int,
        spatial: str = "resnet18",
        frequency: str = "resnet18",
        image_size: int = 64,
        branch: str = "both",
        fusion: str = "late",
        lfs: bool = False,
        aux_heads: bool = False,
        fad_grey: bool = False,
    ) -> None:
        super().__init__()
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch {branch!r}; choose one of {', '.join(BRANCHES)}")
        if fusion != "late":
            raise ValueError(f"unknown fusion {fusion!r}; only 'late' is implemented")
        self.branches = nn.ModuleDict()
        if branch in ("both", "spatial"):
            self.branches["spatial"] = TimmNet(spatial, num_classes=0)
        if branch in ("both", "frequency"):
            self.fad = FAD(image_size)
            self.lfs = LFS() if lfs else None
            self.fad_grey = fad_grey
            channels = (1 if fad_grey else 3) * len(BANDS) + (self.lfs.masks.shape[0] if lfs else 0)
            self.branches["frequency"] = TimmNet(frequency, num_classes=0, in_chans=channels)
        widths = {name: _pooled_width(net) for name, net in self.branches.items()}
        self.head = nn.Linear(sum(widths.values()), num_classes)
        self.aux_heads = nn.ModuleDict(
            {name: nn.Linear(width, num_classes) for name, width in widths.items()}
            if aux_heads
            else {}
        )

    def forward(self, x: Tensor) -> Output:
        """Each branch's features as ``<branch>.<feature>``, plus ``fused`` (the pooled
        vectors concatenated, which the head reads). The main path is the first branch
        (``spatial`` when there is one)."""
        features, pooled, stages = {}, [], {}
        for name, net in self.branches.items():
            out = net(self.frequency_input(x) if name == "frequency" else x)
            features.update({f"{name}.{key}": value for key, value in out.features.items()})
            stages[name] = tuple(f"{name}.{stage}" for stage in out.stage_names())
            pooled.append(out.features["pooled"])
            if name in self.aux_heads:
                features[f"{name}.logits"] = self.aux_heads[name](out.features["pooled"])
        features["fused"] = torch.cat(pooled, dim=1)
        main = next(iter(stages.values()))
        return Output(self.head(features["fused"]), features, main, "fused", stages)

    def enable_preact(self) -> None:
        for net in self.branches.values():
            net.enable_preact()

    def preact_norms(self) -> dict[str, nn.BatchNorm2d]:
        return {
            f"{name}.{key}": norm
            for name, net in self.branches.items()
            for key, norm in net.preact_norms().items()
        }

    def classifier_head(self) -> Head:
        """The fused linear head on the two branches' last maps, concatenated and averaged (the
        fused vector wherever each branch's pooled vector is the average of its last map)."""
        maps = tuple(
            f"{name}.stage{len(net.body.feature_info)}" for name, net in self.branches.items()
        )
        return Head(maps, PooledLinear(self.head))

    def frequency_input(self, x: Tensor) -> Tensor:
        """FAD's band images (12 for RGB, 4 for grey), plus the LFS maps (nearest up-sampled)
        when enabled. LFS and grey FAD read the same grey image, the channel mean."""
        grey = x.mean(dim=1, keepdim=True) if self.fad_grey or self.lfs is not None else None
        bands = self.fad(grey if self.fad_grey else x)
        if self.lfs is None:
            return bands
        stats = F.interpolate(self.lfs(grey), size=x.shape[-2:], mode="nearest")
        return torch.cat([bands, stats], dim=1)


class PooledLinear(nn.Module):
    """Global average pooling, then ``linear``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.mean((2, 3)))


def _pooled_width(net: TimmNet) -> int:
    """The width of ``net``'s pre-logits vector (``head_hidden_size`` where timm has one)."""
    return getattr(net.body, "head_hidden_size", None) or net.body.num_features
