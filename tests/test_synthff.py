"""Tests for the SynthFF procedural face-forgery corpus."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kdbench.dataset import IMAGENET_MEAN, IMAGENET_STD, SPLITS
from kdbench.datasets import synthff, synthff_faces, synthff_forgery
from kdbench.datasets.synthff import SynthFF, SynthFFSpec, generate, load
from kdbench.registry import DATASETS

SMALL = {"videos": 120, "frames": 2}


@pytest.fixture(scope="module")
def corpora() -> dict[str, synthff.SynthFFCorpus]:
    return {q: generate(SynthFFSpec(quality=q, **SMALL)) for q in ("hq", "lq")}


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path))
    return tmp_path


def frames_by_video(corpus: synthff.SynthFFCorpus) -> dict[str, np.ndarray]:
    names = np.array(corpus.videos)
    return {name: np.flatnonzero(names == name) for name in np.unique(names)}


def test_generate_is_deterministic() -> None:
    spec = SynthFFSpec(videos=12, frames=2, quality="lq")
    first, second = generate(spec), generate(spec)
    for field in ("images", "labels", "artifacts", "masks", "landmarks", "splits"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert first.videos == second.videos
    other = generate(SynthFFSpec(videos=12, frames=2, quality="lq", seed=1))
    assert np.abs(first.images.astype(int) - other.images.astype(int)).mean() > 10


def test_qualities_share_the_scenes(corpora) -> None:
    hq, lq = corpora["hq"], corpora["lq"]
    np.testing.assert_array_equal(hq.landmarks, lq.landmarks)
    np.testing.assert_array_equal(hq.masks, lq.masks)
    assert 0 < np.abs(hq.images.astype(int) - lq.images.astype(int)).mean() < 10


def test_shapes_dtypes_and_ranges(corpora) -> None:
    corpus, n = corpora["hq"], SMALL["videos"] * SMALL["frames"]
    assert corpus.images.shape == (n, 64, 64, 3) and corpus.images.dtype == np.uint8
    assert corpus.labels.shape == (n,) and corpus.labels.dtype == np.int64
    assert corpus.masks.shape == (n, 64, 64) and corpus.masks.dtype == np.float32
    assert corpus.landmarks.shape == (n, synthff_faces.NUM_LANDMARKS, 2)
    assert corpus.landmarks.dtype == np.float32
    assert len(corpus.videos) == len(corpus.artifacts) == len(corpus.splits) == n
    assert corpus.images.std() > 30
    assert corpus.masks.min() >= 0 and corpus.masks.max() <= 1
    assert (corpus.landmarks > 2).all() and (corpus.landmarks < 62).all()


def test_labels_artifacts_masks_agree(corpora) -> None:
    corpus = corpora["hq"]
    fake = corpus.labels == 1
    assert fake.mean() == 0.5
    assert set(corpus.artifacts[fake]) == {"spatial", "frequency", "both"}
    assert set(corpus.artifacts[~fake]) == {"none"}
    assert not corpus.masks[~fake].any()
    assert (corpus.masks[fake].max(axis=(1, 2)) > 0.59).all()
    for name, kind in zip(corpus.videos, corpus.artifacts, strict=True):
        expected = "real/" if kind == "none" else f"fake/{kind}/"
        assert name.startswith(expected)


def test_fake_kinds_have_equal_shares(corpora) -> None:
    corpus = corpora["hq"]
    per_video = [corpus.artifacts[idx[0]] for idx in frames_by_video(corpus).values()]
    counts = [per_video.count(kind) for kind in synthff.FAKE_KINDS]
    assert sum(counts) == SMALL["videos"] // 2
    assert max(counts) - min(counts) <= 1


def test_videos_are_consistent_and_split_whole(corpora) -> None:
    corpus = corpora["hq"]
    videos = frames_by_video(corpus)
    assert len(videos) == SMALL["videos"]
    for idx in videos.values():
        assert len(idx) == SMALL["frames"]
        for field in (corpus.labels, corpus.artifacts, corpus.splits):
            assert len(set(field[idx])) == 1
    video_split = {name: corpus.splits[idx[0]] for name, idx in videos.items()}
    shares = {s: list(video_split.values()).count(s) / len(videos) for s in SPLITS}
    assert shares["train"] == pytest.approx(0.7, abs=0.05)
    assert shares["val"] == pytest.approx(0.1, abs=0.05)
    assert shares["test"] == pytest.approx(0.2, abs=0.05)
    for split in SPLITS:
        assert corpus.labels[corpus.splits == split].mean() == pytest.approx(0.5, abs=0.1)


def test_frames_of_a_video_jitter_slightly(corpora) -> None:
    corpus = corpora["hq"]
    for idx in list(frames_by_video(corpus).values())[:20]:
        shift = np.abs(corpus.landmarks[idx[1]] - corpus.landmarks[idx[0]]).mean()
        assert 0 < shift < 5


def test_landmarks_sit_on_the_drawn_features() -> None:
    corpus = generate(SynthFFSpec(videos=40, frames=2, quality="raw"))
    grey = corpus.images.astype(np.float32).mean(-1)
    rows = np.arange(len(grey))

    def grey_at(points: np.ndarray) -> np.ndarray:
        x, y = np.rint(points).astype(int).T
        return grey[rows, y, x]

    eyes = (grey_at(corpus.landmarks[:, 0]) + grey_at(corpus.landmarks[:, 1])) / 2
    cheeks = grey_at((corpus.landmarks[:, 0] + corpus.landmarks[:, 3]) / 2)
    assert (eyes < cheeks).mean() > 0.9
    assert eyes.mean() < cheeks.mean() - 40


def dct_features(images: np.ndarray) -> np.ndarray:
    """Mean log-|DCT| spectrum of each grey image, pooled into 8x8 frequency bins."""
    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    spectra = [np.log1p(np.abs(cv2.dct(image))) for image in grey]
    return np.stack([s.reshape(8, 8, 8, 8).mean(axis=(1, 3)).ravel() for s in spectra])


def held_out_auc(corpus: synthff.SynthFFCorpus, features: np.ndarray, kind: str) -> float:
    """Video-grouped 5-fold AUC of a logistic regression telling ``kind`` fakes from reals."""
    rows = np.isin(corpus.artifacts, ["none", kind])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
    scores = cross_val_predict(
        model,
        features[rows],
        corpus.labels[rows],
        groups=np.array(corpus.videos)[rows],
        cv=GroupKFold(5),
        method="decision_function",
    )
    return roc_auc_score(corpus.labels[rows], scores)


def test_frequency_fakes_carry_spectral_peaks(corpora) -> None:
    hq = held_out_auc(corpora["hq"], dct_features(corpora["hq"].images), "frequency")
    lq = held_out_auc(corpora["lq"], dct_features(corpora["lq"].images), "frequency")
    print(f"DCT logistic regression AUC, frequency fakes vs reals: hq {hq:.3f}, lq {lq:.3f}")
    assert hq > 0.9
    assert lq > 0.7


def upsampling_peak(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Energy of the period-2 patterns (-1)^x, (-1)^y, (-1)^(x+y) inside the mask, relative to
    the squared masked mean brightness."""
    grey = images.astype(np.float32).mean(-1) * masks
    sx, sy = (-1.0) ** np.arange(64), (-1.0) ** np.arange(64)[:, None]
    patterns = [sx * np.ones((64, 1)), sy * np.ones((1, 64)), sx * sy]
    energy = sum((grey * pattern).sum(axis=(1, 2)) ** 2 for pattern in patterns)
    return energy / (grey.sum(axis=(1, 2)) ** 2 + 1)


def test_frequency_artifact_is_periodic_only_in_frequency_fakes() -> None:
    spec = SynthFFSpec(quality="raw", **SMALL)
    corpus = generate(spec)
    _, pristine, _ = synthff.draw(spec)
    pristine = synthff_forgery.compress(pristine, None)
    for kind, should_peak in (("frequency", True), ("both", True), ("spatial", False)):
        rows = corpus.artifacts == kind
        fake = upsampling_peak(corpus.images[rows], corpus.masks[rows])
        real = upsampling_peak(pristine[rows], corpus.masks[rows])
        assert ((fake > 10 * real).mean() > 0.9) == should_peak, kind


def test_spatial_artifact_is_a_colour_shift_that_grey_and_luma_do_not_show() -> None:
    """Before compression, a spatial fake differs from its pristine frame only along the
    chroma axis: LFS's grey (mean of the normalised channels) and JPEG's luma stay put."""
    spec = SynthFFSpec(quality="raw", **SMALL)
    corpus = generate(spec)
    _, pristine, _ = synthff.draw(spec)
    rows = corpus.artifacts == "spatial"
    diff = corpus.images[rows].astype(np.float32) - np.rint(np.clip(pristine[rows], 0, 255))
    inside = corpus.masks[rows] > 0.5
    grey_axis = 1 / np.array(IMAGENET_STD, np.float32)  # LFS: mean of normalised RGB
    luma_axis = np.array(synthff_forgery.JPEG_LUMA, np.float32)
    grey = diff @ (grey_axis / np.linalg.norm(grey_axis))  # all three in grey levels
    luma = diff @ (luma_axis / np.linalg.norm(luma_axis))
    chroma = diff @ synthff_forgery.CHROMA_AXIS.astype(np.float32)
    # rounding to uint8 (and clipping a few saturated pixels) is all that grey and luma see
    assert np.abs(grey[inside]).mean() < 1 and np.abs(luma[inside]).mean() < 1
    assert np.abs(chroma[inside]).mean() > 15
    shifts = np.array([np.abs(c[m]).mean() for c, m in zip(chroma, inside, strict=True)])
    assert (shifts > 0.5 * 0.5 * 0.15 * 255).mean() > 0.9  # signed(): |shift| >= half the max


def gradient(image: np.ndarray) -> np.ndarray:
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    dx, dy = cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1)
    return np.sqrt(dx**2 + dy**2).sum(-1)


def boundary_ratios(quality: str, kind: str) -> np.ndarray:
    """Per fake frame: gradient on its blend-mask ring (0.1 < mask < 0.9) over the gradient on
    the same ring of the real frame it was made from (rendered alike, same JPEG quality)."""
    spec = SynthFFSpec(quality=quality, **SMALL)
    corpus = generate(spec)
    _, pristine, _ = synthff.draw(spec)
    pristine = synthff_forgery.compress(pristine, spec.jpeg_quality)
    ratios = []
    for i in np.flatnonzero(corpus.artifacts == kind):
        mask = corpus.masks[i] / corpus.masks[i].max()
        ring = (mask > 0.1) & (mask < 0.9)
        ratios.append(gradient(corpus.images[i])[ring].mean() / gradient(pristine[i])[ring].mean())
    return np.array(ratios)


def test_spatial_fakes_show_a_blend_boundary_weakened_by_jpeg() -> None:
    hq, lq = boundary_ratios("hq", "spatial"), boundary_ratios("lq", "spatial")
    control = boundary_ratios("hq", "frequency")
    print(
        f"ring gradient fake/real: spatial hq {hq.mean():.3f}, spatial lq {lq.mean():.3f}, "
        f"frequency hq {control.mean():.3f}"
    )
    assert hq.mean() > 1.1 and (hq > 1).mean() > 0.7
    assert 1 < lq.mean() < hq.mean() and (lq > 1).mean() < (hq > 1).mean()
    assert abs(control.mean() - 1) < 0.05


def test_dataset_items(cache_root) -> None:
    data = SynthFF("test", videos=12, frames=2, augment=True)
    corpus = load(data.spec)
    rows = np.flatnonzero(corpus.splits == "test")
    assert len(data) == len(rows) == len(data.videos) == len(data.labels)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for position, row in enumerate(rows):
        item = data[position]
        assert set(item) == {"image", "label", "video", "index", "view"} and item["view"] == 0
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
        assert item["label"].item() == corpus.labels[row] == data.labels[position]
        assert item["video"] == corpus.videos[row] == data.videos[position]
        assert item["index"] == position
        pixels = (item["image"] * std + mean) * 255  # test split: never flipped
        expected = torch.from_numpy(corpus.images[row]).permute(2, 0, 1).float()
        assert torch.allclose(pixels, expected, atol=1e-3)
    assert SynthFF.num_classes == 2 and DATASETS.get("synthff") is SynthFF


def test_train_split_flips_at_random(cache_root) -> None:
    torch.manual_seed(0)
    data = SynthFF("train", videos=12, frames=2)
    plain = SynthFF("train", videos=12, frames=2, augment=False)
    original = plain[0]["image"]
    seen = {torch.equal(data[0]["image"], original) for _ in range(20)}
    flips = {torch.equal(data[0]["image"], original.flip(-1)) for _ in range(20)}
    assert seen == {True, False} and True in flips
    assert all(torch.equal(plain[0]["image"], original) for _ in range(5))


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [({"split": "training"}, "'train', 'val', 'test'"), ({"quality": "c23"}, "'raw', 'hq', 'lq'")],
)
def test_bad_split_or_quality_is_rejected(cache_root, kwargs, names) -> None:
    with pytest.raises(ValueError, match=names):
        SynthFF(**kwargs, videos=4, frames=1)


def test_load_caches_one_file(cache_root) -> None:
    spec = SynthFFSpec(videos=8, frames=2, quality="lq")
    first, second = load(spec), load(spec)
    files = list(cache_root.rglob("*"))
    assert [f.name for f in files if f.is_file()] == [f"{spec.digest()}.npz"]
    assert (cache_root / "synthff" / f"{spec.digest()}.npz").exists()
    for field in ("images", "labels", "artifacts", "masks", "landmarks", "splits"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert first.videos == second.videos and isinstance(second.videos[0], str)
    np.testing.assert_array_equal(second.images, generate(spec).images)


def test_load_without_cache_writes_nothing(cache_root) -> None:
    load(SynthFFSpec(videos=4, frames=1), cache=False)
    assert not any(cache_root.iterdir())


def test_spec_digest_tracks_every_field() -> None:
    base = SynthFFSpec()
    changed = [SynthFFSpec(seed=1), SynthFFSpec(quality="lq"), SynthFFSpec(freq_strength=0.1)]
    assert len({base.digest(), *(spec.digest() for spec in changed)}) == 4
    assert base.digest() == SynthFFSpec().digest()
