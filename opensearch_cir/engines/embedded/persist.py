"""Durable files of the embedded engine: atomic JSON writes, the framing of `docs.log` batches,
and snapshots of an index's in-memory state (numpy arrays + JSON, never pickle) so that opening
a large index replays only the log written since (see `store.py` for the on-disk format)."""

from __future__ import annotations

import json
import os
import zlib
from array import array
from pathlib import Path
from typing import Any

import numpy as np


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps_compact(obj: Any) -> str:
    """JSON without spaces, non-ASCII kept (the log and manifest format)."""
    return _COMPACT.encode(obj)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to `path` so that readers see either the old or the new content, durably."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps_compact(obj))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def frame_batch(body: bytes, docs: int, vectors_crc: int) -> bytes:
    """A batch of log lines (`body`) behind its header line: {"op":"batch","bytes","docs","crc","vcrc"}
    (`vcrc`: the CRC-32 of the batch's vector rows). A batch counts only when all of it and its
    vector rows are on disk (`scan_batches`), so a bulk is all or nothing."""
    header = dumps_compact({"op": "batch", "bytes": len(body), "docs": docs, "crc": zlib.crc32(body), "vcrc": vectors_crc})
    return header.encode("utf-8") + b"\n" + body


def scan_batches(path: Path, start: int, n_ords: int, vectors_crc) -> tuple[int, int]:
    """(end, document count) after the complete batches written from byte `start` on, whose vector
    rows match (`vectors_crc(first ordinal, count)`); bytes past `end` are a torn write of a writer
    that died before acknowledging it."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    pos = 0
    while True:
        newline = data.find(b"\n", pos)
        if newline < 0:
            break
        try:
            header = json.loads(data[pos:newline])
            body_end = newline + 1 + header["bytes"]
            complete = (header["op"] == "batch" and body_end <= len(data) and zlib.crc32(data[newline + 1:body_end]) == header["crc"]
                        and vectors_crc(n_ords, header["docs"]) == header["vcrc"])
        except (ValueError, TypeError, KeyError):
            complete = False
        if not complete:
            break
        pos = body_end
        n_ords += header["docs"]
    return start + pos, n_ords


def read_records(path: Path, start: int, end: int) -> list[tuple[dict, int, int]]:
    """(record, offset, length) of the log's records between two batch boundaries."""
    if end <= start:
        return []
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n")[:-1]  # JSON escapes newlines inside strings: each one ends a record
    out = []
    offset = start
    for record, line in zip(json.loads(b"[" + b",".join(lines) + b"]"), lines):  # one parse for all
        if record["op"] != "batch":
            out.append((record, offset, len(line) + 1))
        offset += len(line) + 1
    return out


class Snapshots:
    """Mixin of `IndexStore`: `snapshot.npz` of the documents, ids, versions and columns."""

    def _save_snapshot(self) -> None:
        """Write the state at the current view (numpy arrays + JSON, never pickle), atomically."""
        arrays = {
            "offsets": np.frombuffer(self.offsets, dtype=np.int64),
            "lengths": np.frombuffer(self.lengths, dtype=np.int64),
            "live": np.frombuffer(bytes(self.live_bytes), dtype=np.uint8),
        }
        columns = {}
        for i, (path, column) in enumerate(self.columns.items()):
            keys = list(column.postings)
            columns[path] = {"index": i, "keys": keys}
            arrays[f"c{i}_present"] = np.frombuffer(column.present, dtype=np.int64)
            arrays[f"c{i}_num_ords"] = np.frombuffer(column.num_ords, dtype=np.int64)
            arrays[f"c{i}_num_vals"] = np.frombuffer(column.num_vals, dtype=np.float64)
            postings = [column.postings[k] for k in keys]
            arrays[f"c{i}_sizes"] = np.array([len(p) for p in postings], dtype=np.int64)
            arrays[f"c{i}_ords"] = np.frombuffer(b"".join(p.tobytes() for p in postings), dtype=np.int64)
        header = {
            "generation": self.generation,
            "log_pos": self.log_pos,
            "n_ords": self.n_ords,
            "ids": self.ids,
            "versions": list(self.id_version.items()),
            "columns": columns,
        }
        arrays["header"] = np.frombuffer(dumps_compact(header).encode("utf-8"), dtype=np.uint8)
        target = self.folder / "snapshot.npz"
        tmp = self.folder / f".snapshot.{os.getpid()}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        self._snapshot_log_pos = self.log_pos

    def _load_snapshot(self) -> None:
        """Start from `snapshot.npz` when it is usable; any problem means a full log replay."""
        path = self.folder / "snapshot.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode("utf-8"))
                if header["log_pos"] > self.manifest_on_disk()["log_bytes"]:
                    return
                state = {name: data[name] for name in data.files if name != "header"}
        except (OSError, ValueError, KeyError, EOFError):
            return
        ids = header["ids"]
        live = state["live"].astype(bool)
        self.ids = ids
        self.id_version = dict(header["versions"])
        self.offsets = array("q", state["offsets"].tobytes())
        self.lengths = array("q", state["lengths"].tobytes())
        self.live_bytes = bytearray(state["live"].tobytes())
        self.id_to_ord = {ids[o]: int(o) for o in np.flatnonzero(live)}
        self.columns = {}
        for path, info in header["columns"].items():
            spec = self.mapping.fields.get(path)
            if spec is None:
                return self._reset_state()
            column = self.columns[path] = self._new_column(spec)
            i = info["index"]
            column.present = array("q", state[f"c{i}_present"].tobytes())
            column.num_ords = array("q", state[f"c{i}_num_ords"].tobytes())
            column.num_vals = array("d", state[f"c{i}_num_vals"].tobytes())
            ords, bounds = state[f"c{i}_ords"], np.cumsum(state[f"c{i}_sizes"])
            start = 0
            for key, end in zip(info["keys"], bounds):
                column.postings[key] = array("q", ords[start:end].tobytes())
                start = int(end)
        self.n_ords = header["n_ords"]
        self.log_pos = header["log_pos"]
        self._snapshot_log_pos = header["log_pos"]
