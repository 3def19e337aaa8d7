"""A lane of the ingestion pipeline: one batch of read images decoded, preprocessed and encoded on
the calling thread (`Ingestor` runs one lane per core). Failures are returned, not raised, so that
the calling thread reports them in order and one bad image never fails its batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import numpy as np

from .documents import EncodedImage
from .reading import ReadImage
from .records import Record


@dataclass
class LaneFailure:
    """An image the lane could not decode or encode, with the stage and the error."""
    record: Record
    content_hash: str
    stage: str
    error: Exception


@dataclass
class _Prepared:
    record: Record
    content_hash: str
    pixels: np.ndarray


class Lane:
    """`run(items)` -> (the encoded images, the failures), all on the calling thread."""

    def __init__(self, encoder: Any, max_pixels: int, timer: Callable[[str], ContextManager]):
        self.encoder = encoder
        self.max_pixels = max_pixels
        self.timer = timer

    def run(self, items: list[ReadImage]) -> tuple[list[EncodedImage], list[LaneFailure]]:
        prepared, failures = [], []
        for item in items:
            try:
                with self.timer("decode"):
                    prepared.append(_Prepared(item.record, item.content_hash, self.encoder.preprocess.load(item.data, self.max_pixels)))
            except Exception as exc:
                failures.append(LaneFailure(item.record, item.content_hash, "decode", exc))
        return self._encode_each_if_needed(prepared, failures), failures

    def _encode_each_if_needed(self, batch: list[_Prepared], failures: list[LaneFailure]) -> list[EncodedImage]:
        """The batch's images encoded; when the encoder refuses the batch, each image is encoded
        alone so that only the images it refuses fail, each with its own reason."""
        if not batch:
            return []
        try:
            with self.timer("encode_images"):
                vectors = self.encoder.encode_pixels(np.stack([item.pixels for item in batch]), side_by_side=False)
        except Exception as exc:
            if len(batch) == 1:
                failures.append(LaneFailure(batch[0].record, batch[0].content_hash, "encode", exc))
                return []
            return [encoded for item in batch for encoded in self._encode_each_if_needed([item], failures)]
        return [EncodedImage(item.record, item.content_hash, vector) for item, vector in zip(batch, vectors)]
