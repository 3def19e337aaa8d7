"""Run an exported model folder on ONNX Runtime: one session per tower, batched, normalised output."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .. import resources
from ..errors import CIRError, InputError
from .manifest import Manifest, TextSpec
from .preprocess import DEFAULT_MAX_PIXELS, ImagePreprocessor, ImageSource
from .batches import BatchRunner, available_cores, even_batches, length_sorted_batches, trim_padding

logger = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def load_encoder(
    model: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    precision: str | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    spin_wait: bool = False,
) -> "Encoder":
    """Load an exported model: a name under `onnx_models/`, a folder path, or None for the default model.

    device: `auto` (CUDA when onnxruntime-gpu sees a GPU, else CPU), `cuda` or `cpu`.
    precision: `fp32`, `fp16` or `int8`; None picks fp16 on CUDA when exported, else fp32.
    threads: cores one call may use (None: all this process may run on); see `Encoder`.
    spin_wait: let ONNX Runtime's idle pool threads spin (see `Encoder`).
    """
    return Encoder(resources.resolve_model_dir(model), device=device, precision=precision,
                   threads=threads, batch_size=batch_size, spin_wait=spin_wait)


class Encoder:
    """Image and text towers of one model; every `encode_*` returns float32 L2-normalised `[N, D]`.

    threads: on the CPU, each graph call runs on one thread, and `encode_pixels` / `encode_texts`
    run up to this many batches side by side (`batches`; None: one per core this process may use).
    Several threads calling the encoder at once each run on their own thread too. On CUDA batches
    run one by one.

    spin_wait: ONNX Runtime's intra-op threads busy-wait between operators by default. Off here:
    on a few cores the spinning threads take the CPU from numpy's BLAS, the engine and the HTTP
    server running beside the encoder (docs/speed.md measures it); turn it on for a machine that
    does nothing but encode.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        device: str = "auto",
        precision: str | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        spin_wait: bool = False,
    ):
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.manifest = Manifest.load(self.model_dir)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        spin = "1" if spin_wait else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.device = _pick_device(device, ort.get_available_providers())
        self._open_sessions(ort, options, precision)
        if self.device == "cuda" and any(CUDA_PROVIDER not in s.get_providers() for s in self._sessions.values()):
            if device == "cuda":
                raise CIRError("ONNX Runtime could not start its CUDA provider (no usable GPU or CUDA libraries)")
            logger.warning("CUDA provider unavailable at run time; running %s on CPU", self.model_dir)
            self.device = "cpu"
            self._open_sessions(ort, options, precision)
        self._runner = BatchRunner(1 if self.device == "cuda" else threads or available_cores())
        self._input_names = {tower: [i.name for i in session.get_inputs()] for tower, session in self._sessions.items()}
        self.preprocess = ImagePreprocessor(self.manifest.image)
        self.tokenizer = load_tokenizer(self.model_dir / self.manifest.text.tokenizer, self.manifest.text)
        self.phi = self._open_phi(ort, options)

    # -- public API --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    def encode_images(self, items: Iterable[ImageSource]) -> np.ndarray:
        """Embed images given as paths, bytes or PIL images; bad items raise ImageDecodeError/ImageTooLargeError."""
        pixels = [self.preprocess.load(item, self.max_pixels) for item in items]
        if not pixels:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(np.stack(pixels))

    def encode_pixels(self, batch: np.ndarray, *, side_by_side: bool = True) -> np.ndarray:
        """Embed already preprocessed pixels `float32[N, 3, H, W]` (see `preprocess`), in batches of at
        most `batch_size` run side by side (see `threads`); `side_by_side=False` runs them one after
        another on the calling thread (for callers that run several calls at once, as ingestion does)."""
        batch = np.asarray(batch, dtype=np.float32)
        size = self.manifest.image.size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise InputError(f"pixel batch must have shape [N, 3, {size}, {size}], got {list(batch.shape)}")
        if not len(batch):
            return np.zeros((0, self.dim), np.float32)

        def run(rows: np.ndarray) -> np.ndarray:
            return self._run("image", {"pixel_values": batch[rows[0]:rows[-1] + 1]})

        parts = even_batches(np.arange(len(batch)), self.batch_size, self._runner.workers if side_by_side else 1)
        outputs = self._runner.map(run, parts) if side_by_side else [run(rows) for rows in parts]
        return _normalize(np.concatenate(outputs))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed strings; texts longer than the context are truncated (logged at debug level).

        Each distinct string is encoded once, in batches of texts sorted by token count, each padded
        to its own longest text, run side by side on the CPU's cores (`batches`); the rows come
        back in the order of `texts`.
        """
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise InputError(f"texts must be strings, got {type(text).__name__}")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        position = {text: i for i, text in enumerate(dict.fromkeys(texts))}
        tokens = self.tokenize(list(position))
        batches = length_sorted_batches(tokens["attention_mask"].sum(axis=1), self.batch_size,
                                        workers=self._runner.workers)
        inputs = [trim_padding(tokens, rows, self.manifest.text.pad_to_context) for rows in batches]
        outputs = self._runner.map(lambda batch: self._run("text", batch), inputs)
        embeddings = np.empty((len(position), self.dim), np.float32)
        embeddings[np.concatenate(batches)] = _normalize(np.concatenate(outputs))
        return embeddings[[position[text] for text in texts]]

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids and attention mask (`int64[N, L]`) as fed to the text graph."""
        return tokenize_texts(self.tokenizer, self.manifest.text, texts)

    # -- internals ---------------------------------------------------------------------------

    def _open_sessions(self, ort, options, precision: str | None) -> None:
        """One session per tower at `precision` (None: fp16 on CUDA when exported, else fp32)."""
        self.precision = precision or ("fp16" if self.device == "cuda" and "fp16" in self.manifest.variants else "fp32")
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if self.device == "cuda" else [CPU_PROVIDER]
        tower_options = options
        if self.device == "cpu":  # batches run side by side, one thread each (see `Encoder`)
            tower_options = _copy_options(ort, options)
            tower_options.intra_op_num_threads = 1
        self._sessions = {
            tower: ort.InferenceSession(str(self.model_dir / self.manifest.graph(tower, self.precision)),
                                        sess_options=tower_options, providers=providers)
            for tower in ("image", "text")
        }

    def _open_phi(self, ort, options):
        """φ and the pseudo-token text graph (`encoders.phi.PhiComposer`) when the model has a φ, else None."""
        if self.manifest.phi is None or not self.manifest.phi.graph:
            return None
        from .phi import PhiComposer

        providers = [CUDA_PROVIDER, CPU_PROVIDER] if self.device == "cuda" else [CPU_PROVIDER]
        return PhiComposer(self.model_dir, self.manifest, self.tokenizer,
                           lambda path: ort.InferenceSession(str(path), sess_options=options, providers=providers))

    def _run(self, tower: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        session = self._sessions[tower]
        inputs = {name: inputs[name] for name in self._input_names[tower]}  # SigLIP's text graph has no mask
        if self.device != "cuda":
            return session.run(["embedding"], inputs)[0]
        binding = session.io_binding()
        for name, value in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        binding.bind_output("embedding", "cuda")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def __repr__(self) -> str:
        return f"Encoder({self.model_id!r}, dim={self.dim}, device={self.device!r}, precision={self.precision!r})"


def load_tokenizer(path: str | os.PathLike, spec: TextSpec):
    """A `tokenizers.Tokenizer` truncating and padding as the manifest's TextSpec says."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    # tokenizers truncates before adding special tokens, so the end token is always kept
    tokenizer.enable_truncation(max_length=spec.context_length)
    tokenizer.enable_padding(pad_id=spec.pad_id, length=spec.context_length if spec.pad_to_context else None)
    return tokenizer


def tokenize_texts(tokenizer, spec: TextSpec, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """`input_ids` and `attention_mask` (`int64[N, L]`); truncations are logged at debug level."""
    encodings = tokenizer.encode_batch([text.lower() if spec.lowercase else text for text in texts])
    for index, encoding in enumerate(encodings):
        if encoding.overflowing:
            logger.debug("text %d truncated to the %d-token context: %r", index, spec.context_length, texts[index][:80])
    return {
        "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
    }


def _copy_options(ort, options):
    """A copy of `options` (threads, optimisation level and the spin-wait entries set above)."""
    copy = ort.SessionOptions()
    copy.graph_optimization_level = options.graph_optimization_level
    copy.inter_op_num_threads = options.inter_op_num_threads
    copy.intra_op_num_threads = options.intra_op_num_threads
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        copy.add_session_config_entry(key, options.get_session_config_entry(key))
    return copy


def _normalize(embeddings: np.ndarray) -> np.ndarray:
    """float32 rows of unit L2 norm (re-normalised: fp16/int8 graphs drift slightly off 1)."""
    embeddings = embeddings.astype(np.float32, copy=False)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def _pick_device(device: str, available: list[str]) -> str:
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    has_cuda = CUDA_PROVIDER in available
    if device == "cuda" and not has_cuda:
        raise CIRError(
            "device='cuda' requested but ONNX Runtime has no CUDA provider: "
            "install `pip install 'opensearch-cir[gpu]'` (onnxruntime-gpu) on a machine with a GPU"
        )
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"
