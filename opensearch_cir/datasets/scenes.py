"""Deterministic synthetic 2-D scenes for composed retrieval, in the spirit of CSS (TIRG).

A scene is a set of objects on a plain background; each object has a shape, a colour, a size and
a cell of a 3x3 grid (at most one object per cell). Rendering draws the scene with PIL (a small
deterministic jitter inside the cell keeps images of equal scenes from being pixel-identical
across draws, but it never changes the scene graph). Captions are generated from the graph, and a
modification adds, removes or changes one attribute of one object, giving a
(reference scene, modification text, target scene) triple. The text is chosen among several
phrasings and names only the change.

Everything is a pure function of the seed (`random.Random(seed)`), so any seed reproduces the same
scenes, texts and pixels. Seed ranges: evaluation uses seeds below `TRAINING_SEED_MIN` (1000);
training uses seeds >= 1000, so the default model never sees an evaluation scene by seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Literal

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 170),
    "orange": (250, 130, 10),
    "gray": (128, 128, 128),
    "cyan": (20, 200, 210),
}
SIZES = ("small", "large")
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
BACKGROUND = (255, 255, 255)
MAX_OBJECTS = 5
TRAINING_SEED_MIN = 1000

ModificationKind = Literal["add", "remove", "colour", "shape", "size"]


@dataclass(frozen=True)
class SceneObject:
    """One object; `cell` indexes POSITIONS. `jitter` only moves pixels, it is not part of the graph."""

    shape: str
    colour: str
    size: str
    cell: int
    jitter: tuple[float, float] = field(default=(0.0, 0.0), compare=False, hash=False)

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    def phrase(self, with_position: bool = True) -> str:
        """"a large red circle at the top left" (or without the position)."""
        text = f"a {self.size} {self.colour} {self.shape}"
        return f"{text} {_at(self.cell)}" if with_position else text


@dataclass(frozen=True)
class Scene:
    """A scene graph: objects sorted by cell."""

    objects: tuple[SceneObject, ...]

    @property
    def key(self) -> str:
        """Canonical identity of the scene graph; equal scenes have equal keys."""
        return ";".join(f"{o.cell}:{o.size}:{o.colour}:{o.shape}" for o in self.objects) or "empty"

    @property
    def caption(self) -> str:
        if not self.objects:
            return "an empty white canvas"
        return ", ".join(o.phrase() for o in self.objects)

    def with_objects(self, objects) -> "Scene":
        return Scene(tuple(sorted(objects, key=lambda o: o.cell)))


@dataclass(frozen=True)
class Modification:
    """What changed: `kind`, the object before/after (None for add/remove), and the text."""

    kind: ModificationKind
    before: SceneObject | None
    after: SceneObject | None
    text: str


@dataclass(frozen=True)
class SceneQuery:
    """A composed query: the reference scene, the modification, and the target scene."""

    query_id: str
    reference: Scene
    modification: Modification
    target: Scene

    @property
    def text(self) -> str:
        return self.modification.text


@dataclass(frozen=True)
class SceneRecord:
    """A catalog entry: a stable id and the scene (render it with `render`)."""

    scene_id: str
    scene: Scene

    @property
    def caption(self) -> str:
        return self.scene.caption


def _at(cell: int) -> str:
    return "in the center" if POSITIONS[cell] == "center" else f"at the {POSITIONS[cell]}"


def random_object(rng: random.Random, cell: int) -> SceneObject:
    return SceneObject(
        shape=rng.choice(SHAPES),
        colour=rng.choice(sorted(COLOURS)),
        size=rng.choice(SIZES),
        cell=cell,
        jitter=(rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12)),
    )


def random_scene(rng: random.Random, min_objects: int = 1, max_objects: int = MAX_OBJECTS) -> Scene:
    count = rng.randint(min_objects, max_objects)
    cells = rng.sample(range(len(POSITIONS)), count)
    return Scene(()).with_objects(random_object(rng, cell) for cell in cells)


def render(scene: Scene, size: int = 64, supersample: int = 3) -> Image.Image:
    """Draw the scene as an RGB image of `size`x`size` pixels (anti-aliased by supersampling)."""
    big = size * supersample
    image = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cell_size = big / 3
    for obj in scene.objects:
        row, col = divmod(obj.cell, 3)
        cx = (col + 0.5 + obj.jitter[0]) * cell_size
        cy = (row + 0.5 + obj.jitter[1]) * cell_size
        r = cell_size * (0.42 if obj.size == "large" else 0.22)
        colour = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif obj.shape == "square":
            s = r * 0.88
            draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=colour)
        elif obj.shape == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=colour)
        else:  # diamond
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS) if supersample > 1 else image


def _refer(obj: SceneObject, scene: Scene, rng: random.Random) -> str:
    """A unique reference to an object: "the red circle", with the position when needed."""
    same = [o for o in scene.objects if (o.colour, o.shape) == (obj.colour, obj.shape)]
    if len(same) > 1 or rng.random() < 0.3:
        return f"the {obj.colour} {obj.shape} {_at(obj.cell)}"
    return f"the {obj.colour} {obj.shape}"


def _modification_text(kind: ModificationKind, before, after, reference: Scene, rng: random.Random) -> str:
    if kind == "add":
        what = after.phrase()
        return rng.choice([f"add {what}", f"put {what}", f"place {what}", f"also show {what}", f"insert {what}"])
    the = _refer(before, reference, rng)
    if kind == "remove":
        return rng.choice([f"remove {the}", f"take away {the}", f"delete {the}", f"without {the}", f"get rid of {the}"])
    if kind == "colour":
        c = after.colour
        return rng.choice([f"make {the} {c}", f"change {the} to {c}", f"paint {the} {c}", f"{the} should be {c}",
                           f"{c} instead of {before.colour} for {the}"])  # fmt: skip
    if kind == "shape":
        s = after.shape
        return rng.choice([f"turn {the} into a {s}", f"replace {the} with a {after.colour} {s}",
                           f"make {the} a {s}", f"change {the} to a {s}"])  # fmt: skip
    bigger = after.size == "large"
    return rng.choice(
        [f"make {the} {after.size}", f"make {the} {'bigger' if bigger else 'smaller'}",
         f"{'enlarge' if bigger else 'shrink'} {the}", f"{the} should be {after.size}"]
    )  # fmt: skip


def modify(scene: Scene, rng: random.Random, kind: ModificationKind | None = None) -> tuple[Scene, Modification]:
    """Apply one random modification (of `kind`, or a random feasible kind) to `scene`."""
    free = [c for c in range(len(POSITIONS)) if c not in {o.cell for o in scene.objects}]
    kinds: list[ModificationKind] = []
    if free and len(scene.objects) < MAX_OBJECTS:
        kinds.append("add")
    if len(scene.objects) > 1:
        kinds.append("remove")
    if scene.objects:
        kinds += ["colour", "shape", "size"]
    if kind is None:
        kind = rng.choice(kinds)
    elif kind not in kinds:
        raise ValueError(f"cannot apply a {kind!r} modification to scene {scene.key!r}")
    objects = list(scene.objects)
    before = after = None
    if kind == "add":
        after = random_object(rng, rng.choice(free))
        objects.append(after)
    else:
        before = rng.choice(objects)
        objects.remove(before)
        if kind == "colour":
            after = replace(before, colour=rng.choice([c for c in sorted(COLOURS) if c != before.colour]))
        elif kind == "shape":
            after = replace(before, shape=rng.choice([s for s in SHAPES if s != before.shape]))
        elif kind == "size":
            after = replace(before, size="small" if before.size == "large" else "large")
        if after is not None:
            objects.append(after)
    text = _modification_text(kind, before, after, scene, rng)
    return scene.with_objects(objects), Modification(kind, before, after, text)


def generate_catalog(seed: int, n: int) -> list[SceneRecord]:
    """`n` random scenes from `seed`; ids are "s{seed}-{i}". Same seed, same catalog."""
    rng = random.Random(f"catalog-{seed}")
    return [SceneRecord(f"s{seed}-{i}", random_scene(rng)) for i in range(n)]


def generate_queries(seed: int, n: int) -> list[SceneQuery]:
    """`n` composed queries from `seed`: random reference scenes, one modification each.

    An evaluation gallery should contain every reference and target (matched by `Scene.key`;
    a target may equal another query's scene, which counts as a hit too) plus distractors from
    `generate_catalog`. Same seed, same queries.
    """
    rng = random.Random(f"queries-{seed}")
    queries = []
    for i in range(n):
        reference = random_scene(rng, min_objects=1, max_objects=MAX_OBJECTS - 1)
        target, modification = modify(reference, rng)
        queries.append(SceneQuery(f"q{seed}-{i}", reference, modification, target))
    return queries
