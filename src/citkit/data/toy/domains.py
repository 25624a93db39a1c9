"""Six visual domains of the second-generation toy world, each drawn from a seed and rendered to 48 px.

Every domain has its own look (background, palette, layout), so an image encoder can tell them apart,
as it can tell ImageNet-R renditions from arXiv charts in UCIT. A drawing returns the picture and what
is in it: `cells`, one label per 16 px patch (what the vision warm-up teaches each patch feature to
carry), `summary`, a whole-image label (what the CLS feature carries), and `facts`, the structured
content the instruction tasks ask about.

- shapes: the grid scenes of the first world (coloured shapes on a dark background);
- bars: a bar chart of three coloured bars on a white background, heights 1-5;
- digits: one to three handwritten-style digits on lined paper;
- clock: a dial with an hour hand pointing at one of 12 hours;
- texture: a two-colour pattern (stripes, dots, checks or waves) over the whole image;
- map: a 3 x 3 tile map (water, forest, sand, rock) with a red marker on one tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from citkit.data.toy.scenes import CELL, COLOURS, GRID, IMAGE_SIZE, POSITIONS, random_scene, render

DOMAINS = ("shapes", "bars", "digits", "clock", "texture", "map")
BAR_COLOURS = ("red", "green", "blue", "yellow", "purple")
MAX_BAR = 5
PATTERNS = ("stripes", "dots", "checks", "waves")
TERRAINS: dict[str, tuple[int, int, int]] = {
    "water": (40, 90, 200), "forest": (30, 120, 40), "sand": (220, 200, 120), "rock": (120, 110, 100),
}
# A 3 x 5 bitmap font of the ten digits, drawn at 2x inside a 16 px cell.
_FONT = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
}


@dataclass(frozen=True)
class Picture:
    """A drawn image and what is in it."""

    image: np.ndarray  # (IMAGE_SIZE, IMAGE_SIZE, 3) uint8
    domain: str
    cells: tuple[str, ...]  # one label per patch, row-major
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)


def _noise(rng: np.random.Generator, base: tuple[int, int, int], sd: float = 5.0) -> np.ndarray:
    return np.array(base, np.float32) + rng.normal(0.0, sd, size=(IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_shapes(rng: np.random.Generator, n_objects: int | None = None) -> Picture:
    n = int(rng.integers(0, 6)) if n_objects is None else n_objects
    scene = random_scene(rng, n)
    cells = tuple(f"{o.label}" if (o := scene.at(c)) else "empty" for c in range(GRID * GRID))
    return Picture(render(scene), "shapes", cells, f"{len(scene.objects)} objects",
                   {"objects": [(o.colour, o.shape, o.position) for o in scene.objects]})


def draw_bars(rng: np.random.Generator) -> Picture:
    """Three bars, one per column; a unit of height is 8 px, so a cell is empty, half or full."""
    colours = [str(c) for c in rng.choice(BAR_COLOURS, size=GRID, replace=False)]
    heights = [int(h) for h in rng.integers(1, MAX_BAR + 1, size=GRID)]
    image = _noise(rng, (245, 245, 240), 3.0)
    image[IMAGE_SIZE - 2:, :] = (60, 60, 60)  # axis
    cells = ["empty"] * (GRID * GRID)
    for column, (colour, height) in enumerate(zip(colours, heights, strict=True)):
        top = IMAGE_SIZE - 2 - 8 * height
        left = column * CELL + 3 + int(rng.integers(0, 2))
        image[top:IMAGE_SIZE - 2, left:left + 9] = np.array(COLOURS[colour], np.float32) + rng.normal(0, 8, 3)
        for row in range(GRID):
            covered = max(0, min((row + 1) * CELL, IMAGE_SIZE - 2) - max(row * CELL, top))
            fill = "full" if covered >= 12 else "half" if covered >= 4 else ""
            cells[row * GRID + column] = f"{colour} bar {fill}" if fill else "empty"
    return Picture(_finish(image), "bars", tuple(cells), "bar chart",
                   {"bars": list(zip(colours, heights, strict=True))})


def draw_digits(rng: np.random.Generator, count: int | None = None) -> Picture:
    """`count` digits written left to right in the middle row, on lined paper."""
    count = int(rng.integers(1, 4)) if count is None else count
    digits = [str(int(d)) for d in rng.integers(0, 10, size=count)]
    image = _noise(rng, (250, 248, 225), 3.0)
    for y in range(6, IMAGE_SIZE, 8):
        image[y, :] = (170, 190, 230)  # ruled lines
    ink = np.array((20, 30, 110), np.float32) + rng.normal(0, 10, 3)
    first = (GRID - count) // 2
    cells = ["paper"] * (GRID * GRID)
    for k, digit in enumerate(digits):
        column = first + k
        oy, ox = CELL + 3 + int(rng.integers(-1, 2)), column * CELL + 5 + int(rng.integers(-1, 2))
        for r, line in enumerate(_FONT[digit]):
            for c, bit in enumerate(line):
                if bit == "1":
                    image[oy + 2 * r: oy + 2 * r + 2, ox + 2 * c: ox + 2 * c + 2] = ink
        cells[GRID + column] = f"digit {digit}"
    return Picture(_finish(image), "digits", tuple(cells), f"{count} digits", {"digits": digits})


def draw_clock(rng: np.random.Generator) -> Picture:
    """A round dial with twelve ticks and one hour hand."""
    hour = int(rng.integers(1, 13))
    image = _noise(rng, (200, 170, 130), 4.0)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
    cy = cx = IMAGE_SIZE / 2
    radius = np.hypot(ys - cy, xs - cx)
    image[radius <= 21] = (250, 250, 245)
    image[(radius > 21) & (radius <= 23)] = (40, 40, 40)
    for tick in range(12):
        angle = 2 * np.pi * tick / 12
        ty, tx = cy - 18 * np.cos(angle), cx + 18 * np.sin(angle)
        image[np.hypot(ys - ty, xs - tx) <= 1.2] = (40, 40, 40)
    angle = 2 * np.pi * hour / 12 + rng.normal(0, 0.05)
    along = (xs - cx) * np.sin(angle) - (ys - cy) * np.cos(angle)  # distance along the hand
    across = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    image[(along >= 0) & (along <= 15) & (np.abs(across) <= 1.6)] = (180, 20, 20)
    image[radius <= 2] = (20, 20, 20)
    return Picture(_finish(image), "clock", ("clock",) * (GRID * GRID), f"hour {hour}", {"hour": hour})


def draw_texture(rng: np.random.Generator) -> Picture:
    pattern = str(rng.choice(PATTERNS))
    fg, bg = (str(c) for c in rng.choice(list(COLOURS), size=2, replace=False))
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    period, phase = int(rng.integers(6, 9)), int(rng.integers(0, 8))
    if pattern == "stripes":
        mask = ((xs + ys + phase) // (period // 2)) % 2 == 0
    elif pattern == "dots":
        mask = np.hypot((xs + phase) % period - period / 2, (ys + phase) % period - period / 2) <= period / 4
    elif pattern == "checks":
        mask = ((xs + phase) // period + (ys + phase) // period) % 2 == 0
    else:  # waves
        mask = np.abs(((ys + 2.5 * np.sin((xs + phase) / 3.0)) % period) - period / 2) <= 1.2
    image = _noise(rng, COLOURS[bg], 6.0) * 0.55 + 20
    image[mask] = np.array(COLOURS[fg], np.float32) + rng.normal(0, 6, 3)
    return Picture(_finish(image), "texture", (pattern,) * (GRID * GRID), f"{fg} on {bg}",
                   {"pattern": pattern, "colours": (fg, bg)})


def draw_map(rng: np.random.Generator) -> Picture:
    tiles = [str(t) for t in rng.choice(list(TERRAINS), size=GRID * GRID)]
    marker = int(rng.integers(GRID * GRID))
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    for cell, terrain in enumerate(tiles):
        row, col = divmod(cell, GRID)
        tile = np.array(TERRAINS[terrain], np.float32) + rng.normal(0, 10, size=(CELL, CELL, 3))
        image[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = tile
    image[::CELL, :] = image[:, ::CELL] = (30, 30, 30)  # tile borders
    row, col = divmod(marker, GRID)
    ys, xs = np.mgrid[0:CELL, 0:CELL]
    dot = np.hypot(ys - 7.5, xs - 7.5) <= 3.5
    image[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL][dot] = (230, 20, 20)
    cells = tuple(f"{t} marker" if c == marker else t for c, t in enumerate(tiles))
    return Picture(_finish(image), "map", cells, "map", {"tiles": tiles, "marker": marker,
                                                         "marker_position": POSITIONS[marker]})


DRAWERS: dict[str, Callable[[np.random.Generator], Picture]] = {
    "shapes": draw_shapes, "bars": draw_bars, "digits": draw_digits, "clock": draw_clock,
    "texture": draw_texture, "map": draw_map,
}


def draw(domain: str, rng: np.random.Generator) -> Picture:
    return DRAWERS[domain](rng)
