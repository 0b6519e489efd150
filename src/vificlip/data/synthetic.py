"""A procedural shape world: captioned images to pretrain a small CLIP, and action videos to fine-tune it on.

Everything is a pure function of a seed (NumPy ``default_rng`` streams keyed by what is drawn), so the benchmark
and the pretraining set are the same on every machine. Frames are drawn on a square canvas (36 px by default:
the data pipeline resizes the short side to int(256/224 · 32) = 36 and crops 32, like 256 → 224 for real data).

* Images: one object — shape × colour × size × position — on a background, captioned like
  "a small red circle at the top left" (a few caption forms, see :func:`caption`).
* Videos: an object doing an action. Most actions leave a trace that a frame average keeps (motion extent,
  blinking, colour change, spinning); "growing" and "shrinking" are the same frames in opposite order, so only
  frame order separates them — like SSv2, they show the known limit of frame averaging (ViFi-CLIP, paper §3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 235), "yellow": (235, 220, 40),
    "pink": (245, 120, 205), "orange": (245, 140, 20), "white": (240, 240, 240), "cyan": (40, 215, 225),
    "purple": (140, 50, 200),
}  # fmt: skip
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "bar", "star", "ring")
SIZES = {"small": 4.5, "large": 8.0}  # radius in pixels on the 36-px canvas
# name -> (x, y) as a fraction of the canvas
POSITIONS = {"top left": (0.3, 0.3), "top right": (0.7, 0.3), "bottom left": (0.3, 0.7),
             "bottom right": (0.7, 0.7), "centre": (0.5, 0.5)}  # fmt: skip
BACKGROUNDS = ("black", "navy", "grey", "striped", "noisy")
# (colour, shape) pairs never shown in pretraining: the held-out test of the small CLIP's compositionality.
HELD_OUT_OBJECTS = (("green", "star"), ("cyan", "triangle"), ("orange", "ring"), ("white", "circle"),
                    ("purple", "cross"), ("red", "bar"), ("pink", "square"), ("blue", "diamond"))  # fmt: skip

ACTIONS = ("standing still", "sliding sideways", "bouncing up and down", "blinking", "changing colour",
           "spinning", "growing", "shrinking")  # fmt: skip
ORDER_ONLY_ACTIONS = ("growing", "shrinking")  # identical frame sets in opposite order
CANVAS = 36
SUPERSAMPLE = 2


@dataclasses.dataclass(frozen=True)
class ObjectTrack:
    """Per-frame parameters of one object, arrays of length N (frames or images). Coordinates in pixels."""

    shape: np.ndarray  # int index into SHAPES
    colour: np.ndarray  # [N, 3] float RGB 0..255
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray  # radians
    alpha: np.ndarray  # 0 = invisible, 1 = opaque


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in the object's unit frame (radius 1), ``v`` pointing down."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":  # equilateral, apex up
        return (v <= 0.5) & (-v <= 1.0 - np.sqrt(3.0) * np.abs(u))
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.35)
    if shape == "star":
        r, phi = np.hypot(u, v), np.arctan2(v, u)
        return r <= 0.45 + 0.55 * ((np.cos(5 * (phi + np.pi / 2)) + 1) / 2) ** 1.5
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw_objects(backgrounds: np.ndarray, track: ObjectTrack) -> np.ndarray:
    """Composite one object per image onto float backgrounds [N,H,W,3] → uint8 [N,H,W,3] (2× supersampled)."""
    n, h, w, _ = backgrounds.shape
    s = SUPERSAMPLE
    ys = (np.arange(h * s) + 0.5) / s  # [H·s] pixel-centre coordinates
    xs = (np.arange(w * s) + 0.5) / s
    dx = xs[None, None, :] - track.x[:, None, None]  # [N, 1, W·s]
    dy = ys[None, :, None] - track.y[:, None, None]  # [N, H·s, 1]
    cos, sin = np.cos(track.angle)[:, None, None], np.sin(track.angle)[:, None, None]
    radius = np.maximum(track.radius, 1e-3)[:, None, None]
    u = (cos * dx + sin * dy) / radius  # [N, H·s, W·s] rotated into the object's frame
    v = (-sin * dx + cos * dy) / radius
    inside = np.zeros((n, h * s, w * s), dtype=bool)
    for index in np.unique(track.shape):
        rows = track.shape == index
        inside[rows] = _shape_mask(SHAPES[index], u[rows], v[rows])
    cover = inside.reshape(n, h, s, w, s).mean(axis=(2, 4)) * track.alpha[:, None, None]  # [N, H, W]
    cover = cover[..., None]
    out = backgrounds * (1.0 - cover) + track.colour[:, None, None, :] * cover
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def background(name: str, rng: np.random.Generator, size: int = CANVAS) -> np.ndarray:
    """A float [H,W,3] background with mild sensor noise."""
    if name == "black":
        base = np.full((size, size, 3), 12.0)
    elif name == "navy":
        base = np.broadcast_to(np.array([20.0, 30.0, 85.0]), (size, size, 3)).copy()
    elif name == "grey":
        base = np.full((size, size, 3), 110.0)
    elif name == "striped":
        period, phase = rng.integers(6, 10), rng.integers(0, 10)
        diag = (np.arange(size)[:, None] + np.arange(size)[None, :] + phase) // (period // 2) % 2
        base = np.repeat((70.0 + 60.0 * diag)[..., None], 3, axis=2)
    elif name == "noisy":
        coarse = rng.uniform(40, 140, size=(size // 4 + 1, size // 4 + 1, 1))
        base = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)[:size, :size].repeat(3, axis=2)
    else:
        raise ValueError(f"unknown background {name!r}; expected one of {BACKGROUNDS}")
    return base + rng.normal(0.0, 4.0, size=base.shape)


# ---- captioned images -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What one image shows; the caption is derived from it."""

    size: str
    colour: str
    shape: str
    position: str
    background: str


def caption(facts: ImageFacts, form: int) -> str:
    """Caption forms: 0 full, 1 full + background, 2 "a photo of a …", 3 colour + shape, 4 size + colour + shape."""
    obj = f"{facts.colour} {facts.shape}"
    where = "in the centre" if facts.position == "centre" else f"at the {facts.position}"
    full = f"a {facts.size} {obj} {where}"
    forms = (full, f"{full} on a {facts.background} background", f"a photo of a {obj}.", f"a {obj}",
             f"a {facts.size} {obj}")  # fmt: skip
    return forms[form]


CAPTION_FORM_WEIGHTS = (0.45, 0.2, 0.1, 0.1, 0.15)


def pretraining_objects(held_out: Sequence[tuple[str, str]] = HELD_OUT_OBJECTS) -> list[tuple[str, str]]:
    """(colour, shape) pairs the small CLIP sees in pretraining: all pairs except the held-out ones."""
    skip = set(held_out)
    return [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in skip]


def sample_facts(rng: np.random.Generator, objects: Sequence[tuple[str, str]]) -> ImageFacts:
    colour, shape = objects[rng.integers(len(objects))]
    return ImageFacts(
        size=list(SIZES)[rng.integers(len(SIZES))],
        colour=colour,
        shape=shape,
        position=list(POSITIONS)[rng.integers(len(POSITIONS))],
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
    )


def render_images(facts: Sequence[ImageFacts], rng: np.random.Generator, size: int = CANVAS) -> np.ndarray:
    """uint8 [N,size,size,3] images of ``facts`` (positions jittered ±1.5 px, random rotation, same rng order)."""
    n = len(facts)
    track = ObjectTrack(
        shape=np.array([SHAPES.index(f.shape) for f in facts]),
        colour=np.array([COLOURS[f.colour] for f in facts], dtype=float),
        x=np.array([POSITIONS[f.position][0] * size for f in facts]) + rng.uniform(-1.5, 1.5, n),
        y=np.array([POSITIONS[f.position][1] * size for f in facts]) + rng.uniform(-1.5, 1.5, n),
        radius=np.array([SIZES[f.size] for f in facts]) * rng.uniform(0.9, 1.1, n),
        angle=rng.uniform(-0.35, 0.35, n),
        alpha=np.ones(n),
    )
    backgrounds = np.stack([background(f.background, rng, size) for f in facts])
    return draw_objects(backgrounds, track)


def captioned_images(
    num_images: int, seed: int, objects: Sequence[tuple[str, str]] | None = None, size: int = CANVAS
) -> tuple[np.ndarray, list[str], list[ImageFacts]]:
    """``num_images`` images, their captions and facts; a pure function of its arguments."""
    rng = np.random.default_rng([seed, 0x1A6E])
    objects = list(objects) if objects is not None else pretraining_objects()
    facts = [sample_facts(rng, objects) for _ in range(num_images)]
    forms = rng.choice(len(CAPTION_FORM_WEIGHTS), size=num_images, p=CAPTION_FORM_WEIGHTS)
    images = render_images(facts, rng, size)
    return images, [caption(f, int(k)) for f, k in zip(facts, forms)], facts


# ---- action videos ----------------------------------------------------------------------------------------
def class_name(colour: str, shape: str, action: str) -> str:
    """'blue square sliding sideways' — action and object, as in Kinetics-style class lists."""
    return f"{colour} {shape} {action}"


def action_track(
    action: str, colour: str, shape: str, num_frames: int, rng: np.random.Generator, size: int = CANVAS
) -> ObjectTrack:
    """Per-frame object parameters for one video of ``action`` (randomised start, direction and speed)."""
    t = np.linspace(0.0, 1.0, num_frames)
    ones = np.ones(num_frames)
    radius = rng.uniform(5.5, 7.0) * ones
    margin = 9.0
    x = rng.uniform(margin, size - margin) * ones
    y = rng.uniform(margin, size - margin) * ones
    angle = rng.uniform(-0.3, 0.3) * ones
    rgb = np.tile(np.array(COLOURS[colour], dtype=float), (num_frames, 1))
    alpha = ones.copy()
    phase = int(rng.integers(0, 4))
    if action == "sliding sideways":
        start, end = (7.0, size - 7.0) if rng.random() < 0.5 else (size - 7.0, 7.0)
        x = start + (end - start) * t
    elif action == "bouncing up and down":
        y = size - 7.0 - (size - 14.0) * np.abs(np.sin(np.pi * (t * rng.uniform(1.0, 1.5))))
    elif action == "blinking":
        alpha = (((np.arange(num_frames) + phase) // 2) % 2 == 0).astype(float)
    elif action == "changing colour":
        other = [c for c in COLOURS if c != colour and c != "white"][rng.integers(len(COLOURS) - 2)]
        switch = ((np.arange(num_frames) + phase) // 4) % 2 == 1
        rgb[switch] = COLOURS[other]
    elif action == "spinning":
        direction = 1.0 if rng.random() < 0.5 else -1.0
        angle = angle + direction * np.pi * rng.uniform(1.2, 1.8) * t
    elif action in ("growing", "shrinking"):
        small, large = rng.uniform(2.5, 3.5), rng.uniform(10.0, 11.5)
        radius = small + (large - small) * (t if action == "growing" else 1.0 - t)
        x, y = (
            np.full(num_frames, size / 2) + rng.uniform(-2, 2),
            np.full(num_frames, size / 2) + rng.uniform(-2, 2),
        )
    elif action != "standing still":
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    index = np.full(num_frames, SHAPES.index(shape))
    return ObjectTrack(shape=index, colour=rgb, x=x, y=y, radius=radius, angle=angle, alpha=alpha)


def render_video(
    action: str,
    colour: str,
    shape: str,
    background_name: str,
    rng: np.random.Generator,
    num_frames: int = 16,
    size: int = CANVAS,
) -> np.ndarray:
    """uint8 [T,H,W,3] frames: fixed background (fresh sensor noise per frame) and one acting object."""
    base = background(background_name, rng, size)
    noise = rng.normal(0.0, 3.0, size=(num_frames, size, size, 3))
    track = action_track(action, colour, shape, num_frames, rng, size)
    return draw_objects(base[None] + noise, track)
