"""OpenAI CLIP's BPE tokenizer files (`vocab.json`, `merges.txt`) from the vocabulary open_clip ships.

Used to build Hugging Face-format CLIP checkpoints offline (tests, benchmarks, training) with the
real CLIP tokenizer: `bpe_simple_vocab_16e6.txt.gz` in the `open_clip_torch` wheel holds the merge
list; the vocabulary is the 256 byte symbols, the same with `</w>`, one token per merge, then
`<|startoftext|>` and `<|endoftext|>` (49408 tokens with all merges: the ids CLIP uses).
A shorter merge prefix gives a smaller, still consistent vocabulary; none (byte-level tokens only)
needs no open_clip.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from ..errors import CIRError

ALL_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte → printable character table, in CLIP's vocabulary order."""
    byte_values = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    code_points = byte_values[:]
    unprintable = [byte for byte in range(256) if byte not in byte_values]
    byte_values += unprintable
    code_points += [256 + offset for offset in range(len(unprintable))]
    return dict(zip(byte_values, map(chr, code_points)))


def open_clip_vocab_file() -> Path:
    """Path of `bpe_simple_vocab_16e6.txt.gz` inside the installed open_clip package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise CIRError("open_clip is not installed (pip install --no-deps open_clip_torch): it ships CLIP's BPE vocabulary")
    return Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_bpe_files(folder: str | Path, num_merges: int = ALL_MERGES) -> tuple[Path, Path]:
    """Write `vocab.json` and `merges.txt` (Hugging Face CLIPTokenizer format) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(open_clip_vocab_file()).read().decode("utf-8").split("\n")[1:num_merges + 1] if num_merges else []
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    merges_path.write_text("#version: 0.2\n" + "".join(merge + "\n" for merge in merges))
    return vocab_path, merges_path
