"""SynthFF: a seeded, procedurally drawn face-forgery corpus that needs no download."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdbench.dataset import IMAGENET_MEAN, IMAGENET_STD, check_split
from kdbench.datasets.synthff_faces import render_all, sample_scenes
from kdbench.datasets.synthff_forgery import compress, forge
from kdbench.paths import cache_root
from kdbench.registry import DATASETS
from kdbench.results import write_atomic

QUALITIES = ("raw", "hq", "lq")
FAKE_KINDS = ("spatial", "frequency", "both")
FORMAT_VERSION = 2


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
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getbuffer())


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
