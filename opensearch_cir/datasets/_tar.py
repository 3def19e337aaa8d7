"""Streaming members out of a tar archive without extracting them to disk."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path


def iter_tar_files(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Yield (base name, bytes) for every regular file in the archive, in archive order."""
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            yield Path(member.name).name, handle.read()
