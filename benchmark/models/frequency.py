"""F3-Net's frequency-aware decomposition (FAD): DCT band filters with learnable residuals."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BANDS = ("low", "middle", "high", "all")


def dct_matrix(size: int) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``[size, size]``): ``D @ v`` is the DCT of ``v``."""
    k = torch.arange(size, dtype=torch.float64)[:, None]
    n = torch.arange(size, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi * (n + 0.5) * k / size) * math.sqrt(2.0 / size)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def _sandwich(x: Tensor, m: Tensor) -> Tensor:
    """``m @ x @ m.T`` over the last two axes, with the batched operand on the left of each
    matmul so that fvcore counts every multiply-add (it sizes a matmul by its first operand)."""
    return ((x @ m.T).transpose(-1, -2) @ m.T).transpose(-1, -2)


def _basis_for(x: Tensor, basis: Tensor | None) -> Tensor:
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dct2/idct2 need square images, got {tuple(x.shape[-2:])}")
    return dct_matrix(x.shape[-1]).to(x) if basis is None else basis


def dct2(x: Tensor, basis: Tensor | None = None) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two axes (``basis``: a cached ``dct_matrix``)."""
    return _sandwich(x, _basis_for(x, basis))


def idct2(x: Tensor, basis: Tensor | None = None) -> Tensor:
    """The inverse of ``dct2`` (the DCT matrix is orthonormal, so its transpose)."""
    return _sandwich(x, _basis_for(x, basis).T)


def band_bounds(size: int) -> dict[str, tuple[float, float]]:
    """F3-Net's bands as inclusive ranges of ``i + j`` (yyk-wew/F3Net ``FAD_Head``): the low
    band holds the first 1/16 of the spectrum's area (``i + j <= size / 2√2``), the middle
    band up to 1/8 (``size / 2``), the high band the rest; neighbouring bands share their
    boundary diagonal, as in that code."""
    low, middle = size // 2.82, size // 2
    return {
        "low": (0, low),
        "middle": (low, middle),
        "high": (middle, 2 * size),
        "all": (0, 2 * size),
    }


def band_masks(size: int) -> Tensor:
    """Binary masks ``[4, size, size]`` on the DCT index, in the order of ``BANDS``."""
    index = torch.arange(size)
    diagonal = index[:, None] + index[None, :]
    bounds = band_bounds(size)
    return torch.stack(
        [(diagonal >= bounds[b][0]) & (diagonal <= bounds[b][1]) for b in BANDS]
    ).float()


def residual_filters(masks: Tensor, weight: Tensor | None, confine: bool = True) -> Tensor:
    """F3-Net's learnable band filters: ``mask + σ(w)·mask`` with ``σ(w) = 2·sigmoid(w) − 1``
    (``confine=False``: ``mask + σ(w)`` over the whole spectrum); the masks without ``w``."""
    if weight is None:
        return masks
    residual = 2 * torch.sigmoid(weight) - 1
    return masks + residual * (masks if confine else 1)


class FAD(nn.Module):
    """Frequency-aware decomposition: each channel's DCT is filtered by four bands (low, middle,
    high, all), each transformed back; output ``[B, 4·C, S, S]``, band-major.

    Each band's filter is ``mask + σ(w)·mask`` with ``σ(w) = 2·sigmoid(w) − 1`` and ``w``
    learnable (``init_std``: its normal init; 0 gives exactly the mask at init). With
    ``confine=False`` the residual is F3-Net's ``mask + σ(w)`` over the whole spectrum.
    """

    def __init__(
        self, size: int, learnable: bool = True, init_std: float = 0.1, confine: bool = True
    ) -> None:
        super().__init__()
        self.size = size
        self.confine = confine
        self.register_buffer("basis", dct_matrix(size), persistent=False)
        self.register_buffer("masks", band_masks(size), persistent=False)
        self.weight = (
            nn.Parameter(torch.randn(len(BANDS), size, size) * init_std) if learnable else None
        )

    def filters(self) -> Tensor:
        """The effective band filters ``[4, S, S]``."""
        return residual_filters(self.masks, self.weight, self.confine)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(
                f"FAD was built for {self.size}×{self.size} images (image_size={self.size}), "
                f"got {x.shape[-2]}×{x.shape[-1]}; set image_size to the dataset's image size"
            )
        spectrum = dct2(x, self.basis).unsqueeze(1)  # [B, 1, C, S, S]
        bands = idct2(spectrum * self.filters()[:, None], self.basis)  # [B, 4, C, S, S]
        return bands.flatten(1, 2)


class LFS(nn.Module):
    """F3-Net's local frequency statistics: the DCT of every ``window``×``window`` patch of the
    grey image (stride ``stride``), as ``log10(|DCT| + eps)``, averaged over ``bands`` bands of
    ``i + j`` (equal widths over ``[0, 2·window)``), each band weighted by a learnable residual
    filter like FAD's; output ``[B, bands, H/stride, W/stride]``.

    A spectral peak left by up-sampling raises one band's statistic in every patch it covers:
    a map a CNN reads at once, where in pixels it is a faint periodic texture.
    """

    def __init__(
        self,
        window: int = 8,
        stride: int = 2,
        bands: int = 6,
        eps: float = 1e-3,
        learnable: bool = True,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if window <= stride or (window - stride) % 2:
            raise ValueError(
                f"LFS needs window > stride and an even window - stride, got {window}, {stride}"
            )
        self.window, self.stride, self.eps = window, stride, eps
        self.register_buffer("basis", dct_matrix(window), persistent=False)
        index = torch.arange(window)
        diagonal = index[:, None] + index[None, :]
        width = 2 * window / bands
        masks = torch.stack(
            [(diagonal >= width * i) & (diagonal < width * (i + 1)) for i in range(bands)]
        ).float()
        self.register_buffer("masks", masks, persistent=False)
        self.weight = (
            nn.Parameter(torch.randn(bands, window, window) * init_std) if learnable else None
        )

    def filters(self) -> Tensor:
        """Band filters ``[bands, w, w]``, each normalised to mean over its own band."""
        filters = residual_filters(self.masks, self.weight)
        return filters / self.masks.sum(dim=(1, 2), keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        grey = x.mean(dim=1, keepdim=True)
        b, _, h, w = grey.shape
        pad = (self.window - self.stride) // 2
        patches = F.unfold(grey, self.window, padding=pad, stride=self.stride)
        patches = patches.transpose(1, 2).reshape(b, -1, self.window, self.window)
        spectrum = torch.log10(dct2(patches, self.basis).abs() + self.eps)  # [B, L, w, w]
        stats = torch.einsum("blij,mij->bml", spectrum, self.filters())
        return stats.reshape(b, -1, h // self.stride, w // self.stride)
