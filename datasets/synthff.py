"""SynthFF: a seeded, procedurally drawn face-forgery corpus that needs no download."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from kdbench.dataset import check_split
from kdbench.registry import DATASETS
from kdbench.results import cache_root

QUALITIES = ("raw", "hq", "lq")
FAKE_KINDS = ("spatial", "frequency", "both")
FORMAT_VERSION = 2
CONTOUR_POINTS = 17
# landmark order: left eye, right eye, nose tip, left and right mouth corner, then CONTOUR_POINTS
# points on the face oval from the upper left, down round the chin, to the upper right
NUM_LANDMARKS = 5 + CONTOUR_POINTS
RENDER_CHUNK = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JPEG_LUMA = (0.299, 0.587, 0.114)
# The spatial artifact is a colour shift of the blended face along the one RGB direction that
# changes neither JPEG's luma nor the grey image LFS reads (the mean of the ImageNet-normalised
# channels): no frequency statistic of the grey image sees it, only colour (pixels) does.
CHROMA_AXIS = np.cross(1 / np.array(IMAGENET_STD), np.array(JPEG_LUMA))
CHROMA_AXIS = CHROMA_AXIS / np.linalg.norm(CHROMA_AXIS)

SKIN_LIGHT = np.array([236.0, 198.0, 170.0])
SKIN_DARK = np.array([105.0, 70.0, 50.0])
HAIR_COLOURS = np.array(
    [[25, 20, 18], [70, 45, 28], [120, 80, 45], [200, 165, 100], [150, 60, 30], [160, 160, 160]],
    dtype=np.float64,
)
IRIS_COLOURS = np.array([[60, 40, 25], [70, 110, 150], [80, 110, 70], [40, 30, 25]], np.float64)


@dataclass(frozen=True)
class SynthFFSpec:
    """Everything that determines a SynthFF corpus; equal specs give identical corpora."""

    videos: int = 800  # total videos, half real and half fake (fewer: nets memorise identities)
    frames: int = 2  # frames per video
    size: int = 64  # image side in pixels (even)
    quality: str = "hq"  # "raw" (no JPEG) | "hq" | "lq"
    seed: int = 0
    jpeg_hq: int = 90
    jpeg_lq: int = 45
    spatial_color: float = 0.15  # max chroma shift of the blend copy (fraction of 255)
    blend_sigma: tuple[float, float] = (0.6, 1.4)  # mask blur range, pixels at size 64
    freq_strength: float = 0.06  # phase-gain mismatch of the 2x up-sampling kernel
    freq_blur: float = 0.1  # share of fine detail the frequency re-synthesis loses
    train_frac: float = 0.7
    val_frac: float = 0.1  # the test split takes the remaining videos

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"unknown quality {self.quality!r}; valid values: {QUALITIES}")
        if self.videos < 2 or self.frames < 1:
            raise ValueError("SynthFF needs videos >= 2 and frames >= 1")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16, got {self.size}")
        if self.train_frac <= 0 or self.val_frac < 0 or self.train_frac + self.val_frac >= 1:
            raise ValueError("need 0 < train_frac, 0 <= val_frac and train_frac + val_frac < 1")

    @property
    def jpeg_quality(self) -> int | None:
        return {"raw": None, "hq": self.jpeg_hq, "lq": self.jpeg_lq}[self.quality]

    def digest(self) -> str:
        fields = {"format": FORMAT_VERSION, **dataclasses.asdict(self)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SynthFFCorpus:
    """All frames of one corpus, frame-major; every per-frame array has length N."""

    images: np.ndarray  # uint8 [N, H, W, 3] RGB
    labels: np.ndarray  # int64 [N], 1 = fake
    videos: list[str]  # e.g. "real/v0003", "fake/both/v0201"
    artifacts: np.ndarray  # str [N]: "none" | "spatial" | "frequency" | "both"
    masks: np.ndarray  # float32 [N, H, W], blend weight of the manipulated region
    landmarks: np.ndarray  # float32 [N, K, 2] (x, y), pixel centres at integer coordinates
    splits: np.ndarray  # str [N]: "train" | "val" | "test"


def generate(spec: SynthFFSpec) -> SynthFFCorpus:
    """Draws, forges, compresses and splits a corpus; deterministic given ``spec``."""
    kinds, images, landmarks = draw(spec)
    frame_kinds = np.repeat(kinds, spec.frames)
    masks = forge(images, landmarks, frame_kinds, spec, np.random.default_rng([spec.seed, 4]))
    images = compress(images, spec.jpeg_quality)
    video_splits = assign_splits(kinds, spec, np.random.default_rng([spec.seed, 5]))
    names = [video_name(i, kind) for i, kind in enumerate(kinds)]
    return SynthFFCorpus(
        images=images,
        labels=(frame_kinds != "none").astype(np.int64),
        videos=[name for name in names for _ in range(spec.frames)],
        artifacts=frame_kinds,
        masks=masks,
        landmarks=landmarks,
        splits=np.repeat(video_splits, spec.frames),
    )


def draw(spec: SynthFFSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pristine frames before forging and compression: per-video artifact kinds [V],
    float32 RGB images [N, H, W, 3] in 0..255 and their exact landmarks [N, K, 2]."""
    kinds = video_kinds(spec.videos, np.random.default_rng([spec.seed, 1]))
    scene = sample_scenes(spec, np.random.default_rng([spec.seed, 2]))
    images, landmarks = render_all(scene, spec.size, np.random.default_rng([spec.seed, 3]))
    return kinds, images, landmarks


def load(spec: SynthFFSpec, cache: bool = True) -> SynthFFCorpus:
    """``generate(spec)`` memoised in ``$KDBENCH_CACHE/synthff/`` (default ``~/.cache/kdbench``)."""
    if not cache:
        return generate(spec)
    path = cache_dir() / f"{spec.digest()}.npz"
    if path.exists():
        return read_corpus(path)
    corpus = generate(spec)
    write_corpus(corpus, path)
    return corpus


def cache_dir() -> Path:
    return cache_root() / "synthff"


def write_corpus(corpus: SynthFFCorpus, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dataclasses.asdict(corpus)
    arrays["videos"] = np.array(corpus.videos)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        np.savez_compressed(tmp, **arrays)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it private
    os.replace(tmp.name, path)


def read_corpus(path: Path) -> SynthFFCorpus:
    with np.load(path) as data:
        fields = {name: data[name] for name in data.files}
    fields["videos"] = fields["videos"].tolist()
    return SynthFFCorpus(**fields)


def video_kinds(videos: int, rng: np.random.Generator) -> np.ndarray:
    """Reals first, then fakes with the three artifact families in (near) equal shares."""
    reals = videos // 2
    fakes = [FAKE_KINDS[i % len(FAKE_KINDS)] for i in range(videos - reals)]
    return np.array(["none"] * reals + list(rng.permutation(fakes)))


def video_name(index: int, kind: str) -> str:
    return f"real/v{index:04d}" if kind == "none" else f"fake/{kind}/v{index:04d}"


def assign_splits(kinds: np.ndarray, spec: SynthFFSpec, rng: np.random.Generator) -> np.ndarray:
    """Per-video split, stratified by artifact kind (so by label too)."""
    splits = np.empty(len(kinds), dtype="<U5")
    for kind in np.unique(kinds):
        members = rng.permutation(np.flatnonzero(kinds == kind))
        n_train = round(spec.train_frac * len(members))
        n_val = round(spec.val_frac * len(members))
        splits[members[:n_train]] = "train"
        splits[members[n_train : n_train + n_val]] = "val"
        splits[members[n_train + n_val :]] = "test"
    return splits


def sample_scenes(spec: SynthFFSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame drawing parameters: identity and pose per video plus small per-frame jitter."""
    videos, frames, size = spec.videos, spec.frames, spec.size

    def per_video(low: float, high: float, dims: tuple[int, ...] = ()) -> np.ndarray:
        return np.repeat(rng.uniform(low, high, (videos, *dims)), frames, axis=0)

    def jitter(scale: float, dims: tuple[int, ...] = ()) -> np.ndarray:
        return rng.normal(0.0, scale, (videos * frames, *dims))

    skin_t = per_video(0, 1, (1,))
    hair = np.repeat(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS), size=videos)], frames, axis=0)
    iris = np.repeat(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS), size=videos)], frames, axis=0)
    skin = SKIN_LIGHT * (1 - skin_t) + SKIN_DARK * skin_t + per_video(-12, 12, (3,))
    return {
        "cx": size * (0.5 + per_video(-0.07, 0.07) + jitter(0.012)),
        "cy": size * (0.54 + per_video(-0.05, 0.05) + jitter(0.012)),
        "scale": size * 0.26 * per_video(0.85, 1.1) * (1 + jitter(0.025)),
        "angle": per_video(-0.2, 0.2) + jitter(0.03),
        "head_w": per_video(0.9, 1.1),
        "head_h": per_video(1.2, 1.4),
        "yaw": per_video(-0.12, 0.12) + jitter(0.015),
        "eye_x": per_video(0.33, 0.42),
        "eye_y": per_video(-0.28, -0.16),
        "eye_size": per_video(0.85, 1.1),
        "nose_y": per_video(0.22, 0.36),
        "mouth_y": per_video(0.58, 0.72),
        "mouth_w": per_video(0.22, 0.34),
        "hairline": per_video(-1.15, -0.85),
        "light_x": per_video(-0.2, 0.2) + jitter(0.02),
        "light_y": per_video(-0.15, 0.15) + jitter(0.02),
        "gain": per_video(0.85, 1.1) * (1 + jitter(0.02)),
        "bg_dir": per_video(0, 2 * np.pi),
        "skin": skin,
        "lips": skin * per_video(0.7, 0.85, (1,)) * np.array([1.0, 0.7, 0.72]),
        "hair": hair + per_video(-10, 10, (3,)),
        "iris": iris,
        "bg0": per_video(20, 235, (3,)),
        "bg1": per_video(20, 235, (3,)),
    }


def render_all(
    scene: dict[str, np.ndarray], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 RGB images [N, H, W, 3] in 0..255 and their exact landmarks [N, K, 2]."""
    n = len(scene["cx"])
    images = np.empty((n, size, size, 3), np.float32)
    for start in range(0, n, RENDER_CHUNK):
        part = {k: v[start : start + RENDER_CHUNK] for k, v in scene.items()}
        images[start : start + RENDER_CHUNK] = render(part, size, rng)
    return images, landmarks_of(scene)


def canonical_landmarks(p: dict[str, np.ndarray]) -> np.ndarray:
    """Landmarks [N, K, 2] in the face frame (u right, v down, head ellipse at the origin)."""
    yaw, mouth_w = p["yaw"], p["mouth_w"]
    points = [
        (yaw - p["eye_x"], p["eye_y"]),
        (yaw + p["eye_x"], p["eye_y"]),
        (1.3 * yaw, p["nose_y"]),
        (yaw - mouth_w, p["mouth_y"]),
        (yaw + mouth_w, p["mouth_y"]),
    ]
    angles = np.linspace(np.radians(-50), np.radians(230), CONTOUR_POINTS)
    contour_u = 0.5 * yaw[:, None] + 0.72 * p["head_w"][:, None] * np.cos(angles)
    contour_v = 0.72 * p["head_h"][:, None] * np.sin(angles)
    inner = np.stack([np.stack(pt, axis=-1) for pt in points], axis=1)
    return np.concatenate([inner, np.stack([contour_u, contour_v], axis=-1)], axis=1)


def landmarks_of(p: dict[str, np.ndarray]) -> np.ndarray:
    canon = canonical_landmarks(p)
    cos, sin = np.cos(p["angle"])[:, None], np.sin(p["angle"])[:, None]
    u, v = canon[..., 0] * p["scale"][:, None], canon[..., 1] * p["scale"][:, None]
    x = p["cx"][:, None] + cos * u - sin * v
    y = p["cy"][:, None] + sin * u + cos * v
    return np.stack([x, y], axis=-1).astype(np.float32)


def ellipse(u: np.ndarray, v: np.ndarray, cu, cv, au, av, px) -> np.ndarray:
    """Anti-aliased coverage of an axis-aligned ellipse in face coordinates."""
    d = np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2)
    return np.clip(0.5 + (1 - d) * np.minimum(au, av) * px, 0, 1)


def paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return image * (1 - a) + colour[:, None, None, :] * a


def render(p: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws one chunk of frames with numpy, vectorised over frames."""
    c = {k: (v[:, None, None] if v.ndim == 1 else v) for k, v in p.items()}
    grid = np.arange(size, dtype=np.float32)
    dx, dy = grid[None, None, :] - c["cx"], grid[None, :, None] - c["cy"]
    cos, sin = np.cos(c["angle"]), np.sin(c["angle"])
    u, v = (cos * dx + sin * dy) / c["scale"], (cos * dy - sin * dx) / c["scale"]
    ramp = np.clip(0.5 + (dx * np.cos(c["bg_dir"]) + dy * np.sin(c["bg_dir"])) / size, 0, 1)
    image = paint(np.broadcast_to(c["bg0"][:, None, None], (*u.shape, 3)), ramp, c["bg1"])
    image, head = draw_head(image, u, v, c)
    image = draw_features(image, u, v, c)
    shade = c["gain"] * (1 + 0.6 * (c["light_x"] * u + c["light_y"] * v))
    return add_texture(image * shade[..., None], head, rng)


def draw_head(
    image: np.ndarray, u: np.ndarray, v: np.ndarray, c: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Hair, neck and the shaded head ellipse; returns the image and the head coverage."""
    hw, hh, px = c["head_w"], c["head_h"], c["scale"]
    below = np.clip(0.5 + (0.3 - v) * px, 0, 1)
    image = paint(image, ellipse(u, v, 0, -0.1, 1.12 * hw, 1.05 * hh, px) * below, c["hair"])
    neck = np.clip(0.5 + (0.45 * hw - np.abs(u)) * px, 0, 1) * np.clip(0.5 + (v - 0.5) * px, 0, 1)
    image = paint(image, neck, 0.8 * c["skin"])
    head = ellipse(u, v, 0, 0, hw, hh, px)
    rim = np.clip(np.sqrt((u / hw) ** 2 + (v / hh) ** 2) - 0.55, 0, None)
    skin = c["skin"][:, None, None] * (1 - 0.5 * rim**2)[..., None]
    image = image + head[..., None] * (skin - image)
    above = np.clip(0.5 + (c["hairline"] + 0.35 * u**2 - v) * px, 0, 1)
    return paint(image, ellipse(u, v, 0, 0, 1.04 * hw, 1.04 * hh, px) * above, c["hair"]), head


def draw_features(
    image: np.ndarray, u: np.ndarray, v: np.ndarray, c: dict[str, np.ndarray]
) -> np.ndarray:
    """Brows, eyes, nose and mouth; their anchor points are the landmarks."""
    ex, ey, es, yaw, px, skin = (
        c["eye_x"],
        c["eye_y"],
        c["eye_size"],
        c["yaw"],
        c["scale"],
        c["skin"],
    )
    white, black = np.full_like(skin, 235.0), np.full_like(skin, 15.0)
    for side in (-1.0, 1.0):
        eu = yaw + side * ex
        image = paint(image, ellipse(u, v, eu, ey - 0.19, 0.15, 0.045, px), 0.9 * c["hair"])
        image = paint(image, ellipse(u, v, eu, ey, 0.17 * es, 0.085 * es, px), white)
        image = paint(image, ellipse(u, v, eu, ey, 0.075 * es, 0.075 * es, px), c["iris"])
        image = paint(image, ellipse(u, v, eu, ey, 0.035 * es, 0.035 * es, px), black)
    bridge = ellipse(u, v, 1.2 * yaw + 0.05, c["nose_y"] - 0.18, 0.06, 0.22, px)
    image = paint(image, 0.5 * bridge, 0.75 * skin)
    for side in (-1.0, 1.0):
        nostril = ellipse(u, v, 1.3 * yaw + 0.07 * side, c["nose_y"], 0.04, 0.025, px)
        image = paint(image, nostril, 0.45 * skin)
    mouth = ellipse(u, v, yaw, c["mouth_y"], c["mouth_w"], 0.065, px)
    return paint(image, mouth, c["lips"])


def add_texture(image: np.ndarray, head: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Skin-pore texture on the head plus sensor noise everywhere."""
    n, h, w, _ = image.shape
    pores = rng.standard_normal((n, h + 1, w + 1)).astype(np.float32)
    pores = (pores[:, 1:, 1:] + pores[:, :-1, 1:] + pores[:, 1:, :-1] + pores[:, :-1, :-1]) / 2
    sensor = rng.standard_normal(image.shape).astype(np.float32)
    return (image + (6.0 * pores * head)[..., None] + 1.5 * sensor).astype(np.float32)


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


@DATASETS.register("synthff")
class SynthFF(Dataset):
    """One split of a SynthFF corpus.

    Each item: ``{"image": float32 [3, H, W] ImageNet-normalised, "label": int64 scalar tensor,
    "video": str, "index": int, "view": int}``. ``augment`` gives train images two views, as is
    and flipped horizontally: key ``(index, view)`` picks one, a plain index picks at random.
    """

    num_classes = 2
    format_version = FORMAT_VERSION  # part of every run id (kdbench.identity)

    def __init__(
        self,
        split: str = "train",
        *,
        videos: int = 800,
        frames: int = 2,
        size: int = 64,
        quality: str = "hq",
        seed: int = 0,
        augment: bool = True,
        cache: bool = True,
    ) -> None:
        check_split(split)
        self.spec = SynthFFSpec(videos=videos, frames=frames, size=size, quality=quality, seed=seed)
        corpus = load(self.spec, cache=cache)
        keep = np.flatnonzero(corpus.splits == split)
        self.split = split
        self.augment = augment and split == "train"
        self.images = torch.from_numpy(corpus.images[keep]).permute(0, 3, 1, 2).contiguous()
        self.labels = corpus.labels[keep]
        self.artifacts = corpus.artifacts[keep]
        self.kinds = self.artifacts  # per-kind test AUC: spatial / frequency / both
        self.videos = [corpus.videos[i] for i in keep]
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        self.num_views = 2 if self.augment else 1

    @property
    def fingerprint(self) -> str:
        """Changes whenever the items do (corpus, split, views): keys cached teacher outputs."""
        return f"synthff-{self.spec.digest()}-{self.split}-views{self.num_views}"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, view = key if isinstance(key, tuple) else (key, None)
        if view is None:
            view = int(torch.randint(self.num_views, ()))
        image = (self.images[index].float() / 255 - self.mean) / self.std
        return {
            "image": image.flip(-1) if view == 1 else image,
            "label": torch.tensor(self.labels[index], dtype=torch.int64),
            "video": self.videos[index],
            "index": index,
            "view": view,
        }
