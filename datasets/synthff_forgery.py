"""SynthFF's forgeries and compression: a blended face region with a colour shift (the spatial
artifact), a GAN-style up-sampling copy (the frequency artifact), or both; then JPEG."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from kdbench.dataset import IMAGENET_STD

if TYPE_CHECKING:
    from kdbench.datasets.synthff import SynthFFSpec

JPEG_LUMA = (0.299, 0.587, 0.114)
# The spatial artifact is a colour shift of the blended face along the one RGB direction that
# changes neither JPEG's luma nor the grey image LFS reads (the mean of the ImageNet-normalised
# channels): no frequency statistic of the grey image sees it, only colour (pixels) does.
CHROMA_AXIS = np.cross(1 / np.array(IMAGENET_STD), np.array(JPEG_LUMA))
CHROMA_AXIS = CHROMA_AXIS / np.linalg.norm(CHROMA_AXIS)


def face_mask(landmarks: np.ndarray, size: int, grow: int = 0, sigma: float = 2.0) -> np.ndarray:
    """Soft face mask [H, W]: landmark convex hull, dilated (grow > 0) or eroded, then blurred."""
    mask = np.zeros((size, size), np.float32)
    hull = cv2.convexHull(np.round(landmarks * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    if grow:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1,) * 2)
        mask = (cv2.dilate if grow > 0 else cv2.erode)(mask, kernel)
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma), 0, 1) if sigma > 0 else mask


def forge(
    images: np.ndarray,
    landmarks: np.ndarray,
    kinds: np.ndarray,
    spec: SynthFFSpec,
    rng: np.random.Generator,
) -> np.ndarray:
    """Manipulates the fake frames of ``images`` in place; returns the blend masks."""
    n, size = len(images), spec.size
    masks = np.zeros((n, size, size), np.float32)
    for video in range(n // spec.frames):
        kind = kinds[video * spec.frames]
        if kind == "none":
            continue
        params = forgery_params(kind, spec, rng)
        for i in range(video * spec.frames, (video + 1) * spec.frames):
            images[i], masks[i] = manipulate(images[i], landmarks[i], kind, params, spec)
    return masks


def forgery_params(kind: str, spec: SynthFFSpec, rng: np.random.Generator) -> dict:
    """Video-level forgery settings, so every frame of a fake video is manipulated alike."""
    unit = spec.size / 64
    spatial = kind in ("spatial", "both")
    return {
        "grow": round(rng.uniform(-1.5, 1.5) * unit),
        "sigma": rng.uniform(spec.blend_sigma[0], spec.blend_sigma[1]) * unit,
        "ratio": rng.choice([0.6, 0.8, 1.0, 1.0]) if spatial else 1.0,
        "chroma": signed(rng) * spec.spatial_color * 255,
        "phase": rng.integers(0, 2, 2),
    }


def signed(rng: np.random.Generator, size: int | None = None) -> np.ndarray | float:
    """Random sign times a magnitude in [0.5, 1]: a jitter that is never negligible."""
    return rng.choice([-1.0, 1.0], size) * rng.uniform(0.5, 1, size)


def manipulate(
    image: np.ndarray, landmarks: np.ndarray, kind: str, params: dict, spec: SynthFFSpec
) -> tuple[np.ndarray, np.ndarray]:
    source = image
    if kind in ("spatial", "both"):
        source = source + params["chroma"] * CHROMA_AXIS
    if kind in ("frequency", "both"):
        source = upsampled_copy(source, spec, params["phase"])
    mask = face_mask(landmarks, spec.size, params["grow"], params["sigma"]) * params["ratio"]
    return image + mask[..., None] * (source - image), mask


def upsampled_copy(image: np.ndarray, spec: SynthFFSpec, phase: np.ndarray) -> np.ndarray:
    """Re-synthesises the frame GAN-style: down-sample by 2, up-sample by zero insertion and a
    kernel that gives the two output phases unequal gains (period-2 spectral peaks), then put
    back the fine detail the round trip lost, all but a ``freq_blur`` share of it."""
    h, w, ch = image.shape
    small = image.reshape(h // 2, 2, w // 2, 2, ch).mean(axis=(1, 3))
    peaked = upsample(small, spec.freq_strength, phase)
    return peaked + (1 - spec.freq_blur) * (image - upsample(small, 0.0, phase))


def upsample(small: np.ndarray, strength: float, phase: np.ndarray) -> np.ndarray:
    return upsample_axis(upsample_axis(small, 0, strength, phase[0]), 1, strength, phase[1])


def upsample_axis(x: np.ndarray, axis: int, strength: float, phase: int) -> np.ndarray:
    shape = list(x.shape)
    shape[axis] *= 2
    zeros = np.zeros(shape, x.dtype)
    index = [slice(None)] * x.ndim
    index[axis] = slice(phase, None, 2)
    zeros[tuple(index)] = x
    padded = np.pad(zeros, [(1, 1) if a == axis else (0, 0) for a in range(x.ndim)], mode="reflect")
    before = np.take(padded, range(0, shape[axis]), axis=axis)
    after = np.take(padded, range(2, shape[axis] + 2), axis=axis)
    tap = 0.5 * (1 - strength)
    return (zeros + tap * (before + after)) * (2 / (2 - strength))


def compress(images: np.ndarray, quality: int | None) -> np.ndarray:
    """Rounds to uint8 and, unless ``quality`` is None, JPEG re-encodes every frame."""
    out = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    if quality is None:
        return out
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for i, image in enumerate(out):
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return out
