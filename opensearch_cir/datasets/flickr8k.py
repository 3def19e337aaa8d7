"""Flickr8k in the layout of `../shared/data/flickr8k`.

A data folder holds, per split name SPLIT (any name, e.g. `train`, `dev`):

    images-SPLIT.tar     JPEG files named by their original Flickr8k file names
    captions-SPLIT.txt   `IMAGE#N<TAB>caption` lines (Flickr8k.token.txt format), 5 per image
    split-SPLIT.txt      one image file name per line: the images of the split, in order
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ._tar import iter_tar_files


def available_splits(root: str | Path) -> list[str]:
    """Split names for which `root` has the images tar, the captions file and the split list."""
    root = Path(root)
    names = []
    for tar_path in sorted(root.glob("images-*.tar")):
        split = tar_path.name[len("images-") : -len(".tar")]
        if (root / f"captions-{split}.txt").is_file() and (root / f"split-{split}.txt").is_file():
            names.append(split)
    return names


def read_captions(path: str | Path) -> dict[str, list[str]]:
    """Captions per image name from a Flickr8k token file, in caption-number order."""
    numbered: dict[str, list[tuple[int, str]]] = {}
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        name, hash_sign, number = key.partition("#")
        if not sep or not hash_sign or not number.strip().isdigit():
            raise InputError(f"{path}:{line_no}: expected 'IMAGE#N<TAB>caption', got {line[:80]!r}")
        numbered.setdefault(name, []).append((int(number), caption.strip()))
    return {name: [text for _, text in sorted(items)] for name, items in numbered.items()}


@dataclass
class Flickr8k:
    """One split of Flickr8k: image names (split order), their captions, and the image bytes."""

    root: Path
    split: str
    names: list[str] = field(init=False)
    captions: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        missing = [p.name for p in (self.images_tar, self.captions_file, self.split_file) if not p.is_file()]
        if missing:
            raise InputError(
                f"{self.root} has no Flickr8k split {self.split!r} (missing {', '.join(missing)}); "
                f"available splits: {available_splits(self.root) or 'none'}"
            )
        self.names = [n.strip() for n in self.split_file.read_text(encoding="utf-8").splitlines() if n.strip()]
        all_captions = read_captions(self.captions_file)
        self.captions = {name: all_captions.get(name, []) for name in self.names}

    @property
    def images_tar(self) -> Path:
        return self.root / f"images-{self.split}.tar"

    @property
    def captions_file(self) -> Path:
        return self.root / f"captions-{self.split}.txt"

    @property
    def split_file(self) -> Path:
        return self.root / f"split-{self.split}.txt"

    def __len__(self) -> int:
        return len(self.names)

    def iter_images(self) -> Iterator[tuple[str, bytes]]:
        """Yield (image name, JPEG bytes) for the images of the split list, in archive order."""
        wanted = set(self.names)
        for name, data in iter_tar_files(self.images_tar):
            if name in wanted:
                yield name, data

    def caption_pairs(self) -> list[tuple[str, str]]:
        """(image name, caption) for every caption of the split, images in split order."""
        return [(name, text) for name in self.names for text in self.captions[name]]
