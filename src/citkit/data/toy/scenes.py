"""Procedural scenes of the toy world and their rendering to small RGB images.

A scene is a 3 x 3 grid of cells, each empty or holding one object (a colour and a shape). Cells are
exactly one vision patch wide (16 px in a 48 px image with patch 16): an object never straddles two
patches, which lets a tiny vision tower read colour and shape from a single patch. The background
tint is a scene attribute so that a stream can mark its tasks by image style alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (165, 60, 210),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
COLUMNS: tuple[str, ...] = ("left", "center", "right")
POSITIONS: tuple[str, ...] = tuple(f"{r} {c}" for r in ROWS for c in COLUMNS)  # cell index = 3*row + col
# Background tints: index 0 is the default; the others mark tasks in the shared-instruction stream.
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (30, 30, 30), (70, 45, 25), (25, 55, 70), (55, 25, 60), (35, 65, 35), (85, 85, 85), (20, 20, 70),
)
CELL = 16
GRID = 3
IMAGE_SIZE = CELL * GRID


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    cell: int  # 0..8, row-major

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # sorted by cell (reading order)
    background: int = 0
    seed: int = 0  # seeds the pixel jitter, so rendering is a pure function of the scene

    def at(self, cell: int) -> SceneObject | None:
        return next((o for o in self.objects if o.cell == cell), None)


def random_scene(
    rng: np.random.Generator,
    n_objects: int,
    background: int = 0,
    colours: tuple[str, ...] | None = None,
    shapes: tuple[str, ...] | None = None,
) -> Scene:
    """A scene with `n_objects` objects in distinct random cells."""
    colours = colours or tuple(COLOURS)
    shapes = shapes or SHAPES
    cells = sorted(rng.choice(GRID * GRID, size=n_objects, replace=False).tolist())
    objects = tuple(
        SceneObject(str(rng.choice(colours)), str(rng.choice(shapes)), int(c)) for c in cells
    )
    return Scene(objects, background, int(rng.integers(2**31)))


@lru_cache(maxsize=64)
def _mask(shape: str, size: int) -> np.ndarray:
    """Boolean (CELL, CELL) mask of a centred shape whose bounding box is `size` pixels wide."""
    ys, xs = np.mgrid[0:CELL, 0:CELL].astype(np.float32) + 0.5
    centre = CELL / 2
    dx, dy = xs - centre, ys - centre
    half = size / 2
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        return (np.abs(dx) <= half * 0.85) & (np.abs(dy) <= half * 0.85)
    if shape == "triangle":  # apex up: width grows linearly from top to bottom
        t = (dy + half) / (2 * half)
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * half)
    if shape == "cross":
        arm = max(1.5, size / 6)
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
        return inside & ((np.abs(dx) <= arm) | (np.abs(dy) <= arm))
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def render(scene: Scene) -> np.ndarray:
    """Render a scene to a (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 array; deterministic in `scene.seed`."""
    rng = np.random.default_rng(scene.seed)
    base = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    image = base + rng.normal(0.0, 6.0, size=(IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    for obj in scene.objects:
        size = int(rng.integers(10, 15))
        shift_y, shift_x = (int(v) for v in rng.integers(-1, 2, size=2))
        mask = np.roll(_mask(obj.shape, size), (shift_y, shift_x), axis=(0, 1))
        colour = np.array(COLOURS[obj.colour], dtype=np.float32) + rng.normal(0.0, 12.0, size=3)
        row, col = divmod(obj.cell, GRID)
        patch = image[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL]
        patch[mask] = colour
    return np.clip(image, 0, 255).astype(np.uint8)
