"""SynthFF's faces: per-frame scene parameters (identity and pose per video, jitter per frame),
drawn with numpy, vectorised over frames, with their exact landmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kdbench.datasets.synthff import SynthFFSpec

CONTOUR_POINTS = 17
# landmark order: left eye, right eye, nose tip, left and right mouth corner, then CONTOUR_POINTS
# points on the face oval from the upper left, down round the chin, to the upper right
NUM_LANDMARKS = 5 + CONTOUR_POINTS
RENDER_CHUNK = 256

SKIN_LIGHT = np.array([236.0, 198.0, 170.0])
SKIN_DARK = np.array([105.0, 70.0, 50.0])
HAIR_COLOURS = np.array(
    [[25, 20, 18], [70, 45, 28], [120, 80, 45], [200, 165, 100], [150, 60, 30], [160, 160, 160]],
    dtype=np.float64,
)
IRIS_COLOURS = np.array([[60, 40, 25], [70, 110, 150], [80, 110, 70], [40, 30, 25]], np.float64)


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
