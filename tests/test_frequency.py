"""FAD (DCT band decomposition) and the dual-branch teacher."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import Tensor, nn

from kdbench.models import build_model
from kdbench.models.dual_branch import DualBranch
from kdbench.models.frequency import BANDS, FAD, LFS, band_masks, dct2, dct_matrix, idct2

SIZE = 32  # the dual-branch tests' image size
BACKBONES = {"spatial": "resnet10t", "frequency": "mobilenetv3_small_050"}
POOLED = {"spatial": 512, "frequency": 1024}


def test_dct_matrix_is_orthonormal():
    basis = dct_matrix(13)
    assert torch.allclose(basis @ basis.T, torch.eye(13), atol=1e-6)


def test_idct2_inverts_dct2():
    x = torch.randn(2, 3, 17, 17)
    assert torch.allclose(idct2(dct2(x)), x, atol=1e-5)


def test_dct2_of_a_constant_has_only_dc():
    spectrum = dct2(torch.full((1, 1, 8, 8), 0.5))[0, 0]
    assert spectrum[0, 0].item() == pytest.approx(0.5 * 8)
    spectrum[0, 0] = 0
    assert spectrum.abs().max() < 1e-6


def test_dct2_matches_opencv():
    x = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    expected = torch.from_numpy(cv2.dct(x))
    assert torch.allclose(dct2(torch.from_numpy(x)), expected, atol=1e-5)


def test_band_masks_follow_f3net():
    low, middle, high, everything = band_masks(64)  # bounds on i + j: 22 and 32 (inclusive)
    assert low[0, 0] == low[11, 11] == low[22, 0] == 1 and low[11, 12] == 0
    assert middle[0, 22] == middle[16, 16] == 1 and middle[0, 21] == middle[16, 17] == 0
    assert high[16, 16] == high[63, 63] == 1 and high[0, 31] == 0
    assert everything.all() and (low + middle + high).clamp(max=1).all()


def test_fad_all_band_is_the_input_without_residual():
    x = torch.randn(2, 3, 16, 16)
    for fad in (FAD(16, learnable=False), FAD(16, init_std=0.0)):
        assert torch.allclose(fad(x)[:, 9:], x, atol=1e-5)


def test_fad_splits_a_constant_image_into_its_low_band():
    x = torch.rand(1, 3, 1, 1).expand(1, 3, 16, 16)
    bands = FAD(16, learnable=False)(x).unflatten(1, (len(BANDS), 3))
    assert torch.allclose(bands[:, 0], x, atol=1e-5)
    assert bands[:, 1:3].abs().max() < 1e-5


def test_fad_shape_and_gradients():
    fad = FAD(16)
    out = fad(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 12, 16, 16)
    out.square().sum().backward()
    assert fad.weight.grad is not None and fad.weight.grad.abs().sum() > 0


def test_fad_residual_stays_in_its_band_unless_unconfined():
    outside = band_masks(16) == 0
    assert (FAD(16, init_std=1.0).filters()[outside] == 0).all()
    assert (FAD(16, init_std=1.0, confine=False).filters()[outside] != 0).any()


def test_fad_rejects_another_image_size():
    with pytest.raises(ValueError, match="image_size=16"):
        FAD(16)(torch.randn(1, 3, 32, 32))


def test_lfs_of_a_constant_image_by_hand():
    stats = LFS(window=8, stride=2, bands=6, eps=1e-3, init_std=0.0)(
        torch.full((1, 3, 32, 32), 0.5)
    )
    assert stats.shape == (1, 6, 16, 16)
    # an interior 8x8 patch of a constant c has one non-zero DCT coefficient, DC = 8c; band 0
    # (i + j <= 2) averages it with 5 zeros, every other band holds zeros only
    dc_band = (np.log10(8 * 0.5 + 1e-3) + 5 * np.log10(1e-3)) / 6
    assert torch.allclose(stats[0, 0, 4:12, 4:12], torch.tensor(dc_band, dtype=torch.float32))
    assert torch.allclose(stats[0, 1:, 4:12, 4:12], torch.tensor(-3.0))


def test_lfs_top_band_sees_a_checkerboard_the_pixels_hide():
    smooth = torch.linspace(-1, 1, 32).expand(1, 3, 32, 32)
    checker = smooth + 0.05 * (-1.0) ** (torch.arange(32)[:, None] + torch.arange(32))
    lfs = LFS(init_std=0.0)
    gap = lfs(checker)[0, :, 4:12, 4:12].mean((1, 2)) - lfs(smooth)[0, :, 4:12, 4:12].mean((1, 2))
    assert gap[-1] > 1.0  # the top band (i + j >= 13.3) holds the (7, 7) coefficient
    assert gap[-1] == gap.max()


def test_dual_branch_with_lfs_feeds_18_channels():
    net = DualBranch(num_classes=2, image_size=SIZE, branch="frequency", lfs=True, **BACKBONES)
    assert net.frequency_input(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 18, SIZE, SIZE)
    assert net(torch.randn(2, 3, SIZE, SIZE)).logits.shape == (2, 2)


def test_grey_fad_makes_the_frequency_branch_colour_blind():
    net = DualBranch(num_classes=2, image_size=SIZE, lfs=True, fad_grey=True, **BACKBONES)
    x = torch.randn(2, 3, SIZE, SIZE)
    recoloured = x + torch.tensor([0.5, -0.5, 0.0]).view(1, 3, 1, 1)  # same channel mean
    assert net.frequency_input(x).shape == (2, 4 + 6, SIZE, SIZE)
    assert torch.allclose(net.frequency_input(recoloured), net.frequency_input(x), atol=1e-5)
    rgb = DualBranch(num_classes=2, image_size=SIZE, lfs=True, **BACKBONES)
    assert not torch.allclose(rgb.frequency_input(recoloured), rgb.frequency_input(x), atol=1e-2)


def test_dual_branch_aux_heads_classify_each_branch_alone():
    net = DualBranch(num_classes=2, image_size=SIZE, aux_heads=True, **BACKBONES).eval()
    out = net(torch.randn(2, 3, SIZE, SIZE))
    for branch in ("spatial", "frequency"):
        head = net.aux_heads[branch]
        expected = head(out.features[f"{branch}.pooled"])
        assert torch.allclose(out.features[f"{branch}.logits"], expected)
    assert set(net.aux_heads) == {"spatial", "frequency"}


@pytest.fixture(scope="module")
def teachers() -> dict[str, DualBranch]:
    return {
        branch: DualBranch(num_classes=2, image_size=SIZE, branch=branch, **BACKBONES).eval()
        for branch in ("both", "spatial", "frequency")
    }


@pytest.mark.parametrize("branch", ["both", "spatial", "frequency"])
def test_dual_branch_features(teachers, branch):
    out = teachers[branch](torch.randn(2, 3, SIZE, SIZE))
    present = ["spatial", "frequency"] if branch == "both" else [branch]
    expected = {f"{b}.stage{k}" for b in present for k in range(1, 6)}
    expected |= {f"{b}.pooled" for b in present} | {"fused"}
    assert set(out.features) == expected
    assert out.logits.shape == (2, 2)
    assert out.features["fused"].shape == (2, sum(POOLED[b] for b in present))
    assert out.features[f"{present[0]}.stage1"].shape[0] == 2


def test_dual_branch_counts_both_branches_parameters(teachers):
    count = {branch: _params(net) for branch, net in teachers.items()}
    # the single-branch heads' biases (one per class) are one bias in the fused head
    assert count["both"] == count["spatial"] + count["frequency"] - 2


def test_dual_branch_flops_include_fad(teachers):
    x = torch.randn(1, 3, SIZE, SIZE)
    both, spatial = (_flops(teachers[b], x) for b in ("both", "spatial"))
    assert both.total() > spatial.total()
    # one DCT of 3 channels and four inverse DCTs, two S×S×S matmuls each
    assert both.by_module()["net.fad"] == 2 * (3 + 12) * SIZE**3


def test_dual_branch_is_registered():
    assert isinstance(build_model("dual-branch", 2, image_size=SIZE, **BACKBONES), DualBranch)


def test_dual_branch_errors(teachers):
    with pytest.raises(ValueError, match="image_size"):
        teachers["both"](torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown branch 'rgb'"):
        DualBranch(num_classes=2, branch="rgb")


class _Logits(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).logits


def _flops(net: nn.Module, x: Tensor) -> FlopCountAnalysis:
    analysis = FlopCountAnalysis(_Logits(net), x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
