"""shapes-captions: the embedded image–caption retrieval demo set, rendered on first use, no download.

**Synthetic**: each image is a 64×64 scene of one to three coloured shapes (circle, square, triangle,
diamond; six colours; small or large; one of nine places on a 3×3 grid) on a jittered background
with pixel noise. Each image gets five generated captions of different kinds, most of them
describing only part of the scene, so one caption fits several images and Recall@1 stays well
below 1:

* the whole scene ("a large red circle and a small blue square"),
* one shape and its place ("a blue square at the bottom right"),
* a relation between two shapes ("a red circle above a yellow triangle"),
* the count ("three shapes: a circle, a square and a triangle"),
* a partial description ("something green" / "a small diamond").

The build is deterministic for a given :class:`ShapesCaptionsSpec` and cached under
``$XMODAL_DATA`` (or ``~/.cache/xmodal``) in xmodal's retrieval format (docs/data_format.md).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from xmodal.data.cache import BuildSpec, cached_build, spec_from_config
from xmodal.data.retrieval import RetrievalDataset, write_retrieval_dataset
from xmodal.data.splits import random_splits
from xmodal.registry import DATASETS
from xmodal.version import __version__

FORMAT_VERSION = "1"
COLOURS = {
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (45, 85, 215),
    "yellow": (225, 200, 35), "purple": (145, 60, 185), "orange": (240, 130, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.09, "large": 0.16}  # half-extent as a fraction of the canvas
ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")
NUMBERS = ("zero", "one", "two", "three")


@dataclasses.dataclass(frozen=True)
class ShapesCaptionsSpec(BuildSpec):
    """Everything a build depends on; its hash names the cache directory."""

    format_version: ClassVar[str] = FORMAT_VERSION
    num_images: int = 1500
    image_size: int = 64
    max_shapes: int = 3
    captions_per_image: int = 5
    noise_std: float = 8.0  # pixel noise, in 0-255 units
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)



@dataclasses.dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str
    row: int
    col: int

    def phrase(self, size: bool = True, colour: bool = True) -> str:
        words = ([self.size] if size else []) + ([self.colour] if colour else []) + [self.kind]
        return _article(words[0]) + " " + " ".join(words)

    @property
    def place(self) -> str:
        if (self.row, self.col) == (1, 1):
            return "in the centre"
        if self.row == 1:
            return f"on the {COLS[self.col]}"
        if self.col == 1:
            return f"at the {ROWS[self.row]}"
        return f"at the {ROWS[self.row]} {COLS[self.col]}"


def _scene(rng: np.random.Generator, spec: ShapesCaptionsSpec) -> list[Shape]:
    count = int(rng.integers(1, spec.max_shapes + 1))
    cells = rng.choice(9, size=count, replace=False)
    return [Shape(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(list(SIZES))),
                  int(c) // 3, int(c) % 3) for c in cells]


def _render(shapes: list[Shape], rng: np.random.Generator, spec: ShapesCaptionsSpec) -> bytes:
    s = spec.image_size
    background = tuple(int(v) for v in rng.integers(200, 245, size=3))
    image = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(image)
    cell = s / 3
    for shape in shapes:
        cx = (shape.col + 0.5 + rng.uniform(-0.12, 0.12)) * cell
        cy = (shape.row + 0.5 + rng.uniform(-0.12, 0.12)) * cell
        r = SIZES[shape.size] * s * rng.uniform(0.9, 1.1)
        colour = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in COLOURS[shape.colour])
        if shape.kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif shape.kind == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif shape.kind == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, spec.noise_std, size=(s, s, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _relation(a: Shape, b: Shape) -> str:
    if a.row != b.row:
        return "above" if a.row < b.row else "below"
    return "to the left of" if a.col < b.col else "to the right of"


def _captions(shapes: list[Shape], rng: np.random.Generator, count: int) -> list[str]:
    """One caption of each kind (in a random order), then more partial ones if ``count`` > 5."""
    one = shapes[int(rng.integers(len(shapes)))]
    whole = _join([s.phrase() for s in shapes])
    placed = f"{one.phrase(size=bool(rng.integers(2)))} {one.place}"
    if len(shapes) > 1:
        a, b = (shapes[i] for i in rng.choice(len(shapes), size=2, replace=False))
        related = f"{a.phrase(size=False)} {_relation(a, b)} {b.phrase(size=False)}"
    else:
        related = f"a single {one.colour} {one.kind} {one.place}"  # one shape: no relation to state
    counted = (f"{NUMBERS[len(shapes)]} shapes: " + _join([f"{_article(s.kind)} {s.kind}" for s in shapes])
               if len(shapes) > 1 else f"only one shape, {one.phrase(size=False)}")

    def partial() -> str:
        pick = shapes[int(rng.integers(len(shapes)))]
        return f"something {pick.colour}" if rng.integers(2) else pick.phrase(colour=False)

    captions = [whole, placed, related, counted, partial()]
    rng.shuffle(captions)
    while len(captions) < count:
        captions.append(partial())
    return captions[:count]


def _write(out: Path, spec: ShapesCaptionsSpec) -> Path:
    rng = np.random.default_rng(spec.seed)
    images, captions = [], []
    for i in range(spec.num_images):
        shapes = _scene(rng, spec)
        images.append((f"{i:06d}.png", _render(shapes, rng, spec)))
        captions += [(i, c) for c in _captions(shapes, rng, spec.captions_per_image)]
    splits = random_splits(spec.num_images, spec.split_fractions, rng)
    source = ("SYNTHETIC: rendered scenes of coloured shapes with generated captions "
              "(xmodal.data.shapes_captions); not a real image-caption corpus")
    extra = {"build": {**dataclasses.asdict(spec), "xmodal_version": __version__}}
    return write_retrieval_dataset(out, images, captions, splits, name="shapes-captions", source=source,
                                   force=True, extra_meta=extra)


def build_shapes_captions(root: str | Path | None = None, spec: ShapesCaptionsSpec | None = None,
                          force: bool = False) -> Path:
    """Build shapes-captions (or reuse the cached build) and return its directory."""
    spec = spec or ShapesCaptionsSpec()
    return cached_build("shapes_captions", spec.key(), lambda target: _write(target, spec), root, force)


@DATASETS.register_module()
class ShapesCaptionsDataset(RetrievalDataset):
    """A shapes-captions split, built into the cache on first use; ``data_root`` overrides the cache."""

    def __init__(self, split: str = "train", mode: str = "pairs", image_size: int = 64, data_root: str | None = None,
                 seed: int = 0, **spec_overrides) -> None:
        if data_root is None:
            spec = spec_from_config(ShapesCaptionsSpec, seed, spec_overrides)
            data_root = build_shapes_captions(spec=spec)
        super().__init__(data_root, split=split, mode=mode, image_size=image_size)
