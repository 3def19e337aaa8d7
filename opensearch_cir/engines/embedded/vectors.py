"""Vector storage and k-NN search for one `knn_vector` field.

Rows live in an append-only file of the data type's values (row i = document ordinal i, zeros where
a document has no vector; float32, int8, or packed bits: see `data_types`), memory-mapped for exact
search. Above `hnsw_threshold` rows a faiss
HNSW graph (the mapping's m / ef_construction) serves unfiltered and non-selective filtered queries;
it is cached beside the rows as `<field>.<rows>.hnsw` and extended with rows added since. All new
rows go to faiss in one `add`: faiss then inserts them highest HNSW level first, which gives a
better graph than inserting in slices (each slice's upper-level nodes would land after the
previous slice's level-0 nodes).

With `compression_level` above 1x (or `mode: on_disk`, 32x by default as in k-NN) the field keeps
compact codes in memory (see `quantize`), scans them for a first pass of `first_pass_k`
candidates, and rescores those with the float32 rows read from the file: no graph is built over
the codes here (k-NN builds one; the recall reported by benchmarks/compression.py is the codes'
own, without a graph's approximation on top). The knn clause decides the first-pass size
(`quantize.first_pass_size`: the query's `rescore`, else the field's default).

Byte fields build faiss `HNSW,SQ8_direct_signed` as k-NN does (a normalised float graph for
cosinesimil), binary fields faiss `IndexBinaryHNSW` (k-NN's `BHNSW`), scored by Hamming distance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...scoring import knn_score, raw_similarity
from . import data_types
from .mapping import FieldSpec
from .quantize import TRAINING_SAMPLE, Codebook

# Efficient filtering (k-NN faiss): exact search when the filter matches <= k documents or when
# matches x dimension <= this many values (the default when the index setting is unset).
EXACT_SEARCH_MAX_VALUES = 2_048_000


class VectorField:
    """Rows of one knn_vector field and its optional HNSW graph."""

    def __init__(self, folder: Path, spec: FieldSpec):
        self.spec = spec
        self.dim = spec.dimension
        self.space = spec.space_type
        self.data_type = spec.data_type
        self.width = data_types.width(self.data_type, self.dim)  # stored values per row
        self.dtype, suffix = data_types.STORAGE[self.data_type]
        self.row_bytes = self.width * np.dtype(self.dtype).itemsize
        self.path = folder / f"{spec.path}.{suffix}"
        self._rows: np.ndarray | None = None
        self._hnsw = None
        self._hnsw_rows = 0
        self._mapped = False  # the graph's vectors are a read-only map of its cache file
        mode = spec.params.get("mode", "in_memory")
        self.mode = mode
        self.compression = spec.params.get("compression_level") or ("32x" if mode == "on_disk" else "1x")
        self._codebook: Codebook | None = None
        self._codes: np.ndarray | None = None

    # --- writing ---------------------------------------------------------------------------------
    def truncate(self, n_rows: int) -> None:
        """Drop rows past `n_rows` (left by a crash before the manifest was written)."""
        if self.path.exists() and self.path.stat().st_size > n_rows * self.row_bytes:
            with open(self.path, "r+b") as f:
                f.truncate(n_rows * self.row_bytes)
                os.fsync(f.fileno())

    def append(self, rows: np.ndarray, *, sync: bool = True) -> None:
        """Append parsed rows [m, width] (`data_types.parse` values); durably (fsync before
        returning) unless `sync` is False."""
        with open(self.path, "ab") as f:
            f.write(data_types.to_storage(rows, self.data_type).data)
            f.flush()
            if sync:
                os.fsync(f.fileno())

    # --- reading ---------------------------------------------------------------------------------
    def rows(self, n_rows: int) -> np.ndarray:
        """A read-only [n_rows, width] memory map of the committed rows."""
        if self._rows is None or self._rows.shape[0] != n_rows:
            if n_rows == 0 or not self.path.exists():
                self._rows = np.zeros((0, self.width), dtype=self.dtype)
            else:
                self._rows = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(n_rows, self.width))
        return self._rows

    def rows_at(self, ordinals: np.ndarray) -> np.ndarray:
        """Rows at sorted `ordinals`, read with pread: rescoring a few hundred scattered rows through
        the memory map would fault in the kernel's readahead around each one (at 1M rows, most of
        the file ends up resident after a few hundred queries)."""
        out = np.empty((len(ordinals), self.width), dtype=self.dtype)
        buffer = out.view(np.uint8).reshape(len(ordinals), self.row_bytes)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, ordinal in enumerate(ordinals.tolist()):
                buffer[i] = np.frombuffer(os.pread(fd, self.row_bytes, ordinal * self.row_bytes), dtype=np.uint8)
        finally:
            os.close(fd)
        return out

    def vector(self, ordinal: int, n_rows: int) -> list:
        return data_types.to_source(self.rows(n_rows)[ordinal], self.data_type)

    def search(
        self,
        query: np.ndarray,
        k: int,
        candidates: np.ndarray,
        *,
        n_rows: int,
        ef_search: int,
        hnsw_threshold: int,
        filtered: bool,
        first_pass: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ordinals, scores) among `candidates` (a bool mask over ordinals), best first.

        Mirrors k-NN's faiss path: exact search below the HNSW threshold or when a filter is
        selective (matches <= k, or matches x dim <= 2,048,000); otherwise HNSW with the filter
        as an ID selector, falling back to exact search when it returns fewer than k. With
        `first_pass` (k-NN `RescoreContext.getFirstPassK`) the approximate pass keeps that many
        candidates and exact scores pick the k best (NativeEngineKnnVectorQuery).
        """
        matches = int(candidates.sum())
        if matches == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        selective = filtered and (matches <= k or matches * self.dim <= EXACT_SEARCH_MAX_VALUES)
        if self.compression != "1x" and not selective:
            return self._compressed_search(query, k, candidates, n_rows, first_pass or k, ef_search=ef_search,
                                           use_graph=n_rows >= hnsw_threshold)
        if n_rows >= hnsw_threshold and not selective:
            wanted = max(k, first_pass or k)
            ords, raw = self._hnsw_search(query, wanted, candidates, n_rows, ef_search, restricted=matches < n_rows)
            if len(ords) >= min(k, matches):
                if wanted > k:  # rescoring: exact scores of the first pass
                    raw = self._raw(query, self.rows_at(np.sort(ords)))
                    ords = np.sort(ords)
                return self._ranked(ords, raw, k)
        return self.exact(query, k, candidates, n_rows)

    def exact(self, query: np.ndarray, k: int, candidates: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows(n_rows)
        idx = np.flatnonzero(candidates)
        if len(idx) * 4 >= n_rows:
            raw = self._raw(query, rows)[idx]
        else:
            raw = self._raw(query, rows[idx])
        return self._ranked(idx, raw, k)

    def _raw(self, query: np.ndarray, rows: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """The space's raw similarity of a parsed query to stored rows (byte rows widened by chunks)."""
        if self.data_type == "binary":
            return data_types.hamming(data_types.to_storage(query[None, :], "binary")[0], rows)
        if self.data_type == "float":
            return raw_similarity(query, rows, self.space)
        return np.concatenate([raw_similarity(query, rows[b:b + chunk].astype(np.float32), self.space)
                               for b in range(0, len(rows), chunk)] or [np.empty(0, np.float32)])

    def _ranked(self, ords: np.ndarray, raw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = knn_score(raw, self.space)
        if len(ords) > k:
            part = np.argpartition(-scores, k - 1)[:k]
            # keep every document tied with the k-th score so the ordinal tie-break below is exact
            kth = scores[part].min()
            part = np.flatnonzero(scores >= kth)
            ords, scores = ords[part], scores[part]
        order = np.lexsort((ords, -scores))[:k]
        return ords[order].astype(np.int64), scores[order]

    # --- compressed codes --------------------------------------------------------------------------
    def ensure_codes(self, n_rows: int, chunk: int = 65_536) -> np.ndarray:
        """The codes of rows [0, n_rows), memory-mapped from `<field>.<level>.codes.npy`: the codebook
        is trained once on the first rows and kept beside them (`.codebook.npz`); rows added since
        are read from the file in chunks, encoded, and the codes file replaced atomically."""
        if self._codes is not None and len(self._codes) >= n_rows:
            return self._codes[:n_rows]
        stem = self.path.parent / f"{self.spec.path}.{self.compression}"
        book_path, codes_path = stem.with_name(stem.name + ".codebook.npz"), stem.with_name(stem.name + ".codes.npy")
        if self._codebook is None:
            if book_path.exists():
                self._codebook = Codebook.load(self.compression, book_path)
            else:
                sample = self._read(0, min(n_rows, TRAINING_SAMPLE))  # the first rows: no full copy in memory
                self._codebook = Codebook.train(self.compression, self._index_rows(sample)).save(book_path)
        codes = np.load(codes_path, mmap_mode="r") if codes_path.exists() else None
        if codes is None or len(codes) < n_rows:
            coded = 0 if codes is None else len(codes)
            parts = [] if codes is None else [np.asarray(codes)]
            for begin in range(coded, n_rows, chunk):
                parts.append(self._codebook.encode(self._index_rows(self._read(begin, min(begin + chunk, n_rows)))))
            tmp = codes_path.with_name(f".{codes_path.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, np.concatenate(parts))
            del parts
            os.replace(tmp, codes_path)
            codes = np.load(codes_path, mmap_mode="r")
        self._codes = codes
        return codes[:n_rows]

    def _read(self, begin: int, end: int) -> np.ndarray:
        """Rows [begin, end) read from the file (not through the memory map, so they stay out of RSS)."""
        with open(self.path, "rb") as f:
            f.seek(begin * self.row_bytes)
            data = f.read((end - begin) * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(-1, self.width)

    def _graph_over_codes(self) -> bool:
        """Bit codes (8x-32x) get a faiss binary HNSW graph, as k-NN builds over quantized vectors."""
        return self.compression in ("8x", "16x", "32x")

    def _compressed_search(self, query, k, candidates, n_rows, m: int, *, ef_search: int,
                           use_graph: bool) -> tuple[np.ndarray, np.ndarray]:
        """A first pass keeping `m` candidates (the graph over the codes, else a scan of the codes),
        rescored with the float rows."""
        idx = np.flatnonzero(candidates[:n_rows])
        found = None
        if use_graph and self._graph_over_codes():
            ords, _ = self._hnsw_search(query, m, candidates, n_rows, ef_search, restricted=len(idx) < n_rows)
            if len(ords) >= min(m, len(idx)):
                found = np.sort(ords)
        if found is None:
            codes = self.ensure_codes(n_rows)
            q = self._index_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
            scanned = codes if len(idx) == n_rows else codes[idx]  # unfiltered: the codes themselves, no copy
            approx = self._codebook.first_pass(q, scanned, self.space)
            found = np.sort(idx[np.argpartition(-approx, m - 1)[:m]]) if len(idx) > m else idx
        return self._ranked(found, raw_similarity(query, self.rows_at(found), self.space), k)

    # --- HNSW ------------------------------------------------------------------------------------
    def _index_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows as the graph takes them: packed bits as they are, else float32 (unit length for cosinesimil)."""
        if self.data_type == "binary":
            return np.ascontiguousarray(rows, dtype=np.uint8)
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if self.space == "cosinesimil":
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
        return rows

    def ensure_hnsw(self, n_rows: int):
        """Load, build or extend the HNSW graph so that it covers `n_rows` rows (compressed fields:
        their codes, and for bit codes a binary graph over them)."""
        import faiss

        if self.compression != "1x" and not self._graph_over_codes():
            self.ensure_codes(n_rows)
            return None

        if self._hnsw is None or (self._mapped and self._hnsw_rows < n_rows):  # a mapped graph cannot grow
            self._hnsw, self._hnsw_rows = self._load_cached(n_rows, mapped=self._hnsw is None)
        if self._hnsw is None:
            self._hnsw = self._new_graph(faiss)
            self._hnsw_rows = 0
        if self._hnsw_rows < n_rows:
            if self.compression != "1x":
                self._hnsw.add(np.ascontiguousarray(self.ensure_codes(n_rows)[self._hnsw_rows:]))
            else:
                self._hnsw.add(self._index_rows(self.rows(n_rows)[self._hnsw_rows:]))
            self._hnsw_rows = n_rows
            self._save_cached(faiss)
        return self._hnsw

    def _binary_graph(self) -> bool:
        return self.data_type == "binary" or self.compression != "1x"

    def _new_graph(self, faiss):
        """An empty faiss HNSW index with the mapping's m / ef_construction, for the data type."""
        method = self.spec.params.get("method", {}).get("parameters", {})
        m, ef_construction = int(method.get("m", 16)), int(method.get("ef_construction", 100))
        if self.compression != "1x":  # k-NN's faiss BHNSW over the quantized bits
            graph = faiss.IndexBinaryHNSW(self.ensure_codes(1).shape[1] * 8, m)
        elif self.data_type == "binary":
            graph = faiss.IndexBinaryHNSW(self.dim, m)
        else:
            metric = faiss.METRIC_L2 if self.space == "l2" else faiss.METRIC_INNER_PRODUCT
            if self.data_type == "byte" and self.space != "cosinesimil":
                graph = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit_direct_signed, m, metric)
            else:
                graph = faiss.IndexHNSWFlat(self.dim, m, metric)
        graph.hnsw.efConstruction = ef_construction
        return graph

    def _cache_files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.path.parent.glob(f"{self.spec.path}.*.hnsw"):
            try:
                found.append((int(path.name[len(self.spec.path) + 1 : -len(".hnsw")]), path))
            except ValueError:
                continue
        return sorted(found)

    def _load_cached(self, n_rows: int, *, mapped: bool):
        """The newest cached graph covering at most `n_rows` rows; `mapped`: a float graph's vectors
        memory-mapped from the file (faiss IO_FLAG_MMAP_IFC: only the pages searches touch are
        resident), when it already covers every row (faiss cannot add to a mapped graph)."""
        import faiss

        self._mapped = False
        usable = [(rows, path) for rows, path in self._cache_files() if rows <= n_rows]
        if not usable:
            return None, 0
        rows, path = usable[-1]
        try:
            if self._binary_graph():
                return faiss.read_index_binary(str(path)), rows
            self._mapped = mapped and rows == n_rows
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if self._mapped else 0), rows
        except RuntimeError:  # a partly written cache from a crashed process: rebuild
            self._mapped = False
            return None, 0

    def _save_cached(self, faiss) -> None:
        target = self.path.parent / f"{self.spec.path}.{self._hnsw_rows}.hnsw"
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        (faiss.write_index_binary if self._binary_graph() else faiss.write_index)(self._hnsw, str(tmp))
        os.replace(tmp, target)
        for rows, path in self._cache_files():
            if rows < self._hnsw_rows:
                path.unlink(missing_ok=True)

    def _hnsw_search(self, query, k, candidates, n_rows, ef_search, *, restricted: bool):
        import faiss

        index = self.ensure_hnsw(n_rows)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(ef_search), k)
        if restricted:
            bits = np.packbits(candidates[:n_rows], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(n_rows, faiss.swig_ptr(bits))
        q = self._index_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if self.data_type == "binary":
            q = data_types.to_storage(q, "binary")
        elif self.compression != "1x":
            self.ensure_codes(1)
            q = self._codebook.encode(q)
        distances, labels = index.search(q, k, params=params)
        keep = labels[0] >= 0
        ords = labels[0][keep].astype(np.int64)
        raw = distances[0][keep].astype(np.float32)  # inner product (cosine on unit rows), squared L2, or bits
        return ords, raw
