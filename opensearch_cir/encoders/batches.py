"""How inputs go through a graph together on the CPU: in batches run side by side, one ONNX Runtime
thread each, on a small thread pool (`BatchRunner`). A CNN's or a transformer's small matrices
parallelise poorly inside one call, and whole batches side by side waste no time joining threads
(nor wait on a thread that another stage, such as image decoding, has taken the core from).

Texts are distinct strings sorted by token count, in batches padded only to their own longest text.
Sorting by token count (not characters) leaves almost no padding in a batch: on Flickr8k captions
in groups of 160, batches of 32 sorted by characters carry 1.30 token positions per real token,
sorted by tokens 1.20, and 1.03 in groups of 1,280 (docs/ingest-speed.md). Images keep their order.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

Inputs = dict[str, np.ndarray]


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def even_batches(order: np.ndarray, batch_size: int, workers: int = 1) -> list[np.ndarray]:
    """`order` (positions) cut into consecutive batches of at most `batch_size`.

    The number of batches is rounded up to a multiple of `workers` (while there are items enough),
    so that no worker idles in the last round; batch sizes differ by at most one.
    """
    count = len(order)
    if count == 0:
        return []
    rounds = math.ceil(math.ceil(count / batch_size) / workers)
    return np.array_split(order, min(count, rounds * workers))


def length_sorted_batches(lengths: Sequence[int], batch_size: int, workers: int = 1) -> list[np.ndarray]:
    """Positions of the texts grouped into `even_batches`, shortest texts first."""
    return even_batches(np.argsort(np.asarray(lengths), kind="stable"), batch_size, workers)


def trim_padding(tokens: Inputs, rows: np.ndarray, pad_to_context: bool) -> Inputs:
    """The rows `rows` of right-padded token arrays, cut to their longest text (unless the graph
    needs the full context)."""
    if pad_to_context:
        return {name: value[rows] for name, value in tokens.items()}
    width = max(1, int(tokens["attention_mask"][rows].sum(axis=1).max()))
    return {name: np.ascontiguousarray(value[rows, :width]) for name, value in tokens.items()}


class BatchRunner:
    """Runs `run(inputs)` over batches, `workers` at a time (in the calling thread when one)."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cir-encode") if self.workers > 1 else None

    def map(self, run: Callable[[Inputs], np.ndarray], batches: list[Inputs]) -> list[np.ndarray]:
        if self._pool is None or len(batches) == 1:
            return [run(batch) for batch in batches]
        return list(self._pool.map(run, batches))
