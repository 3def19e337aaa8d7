"""A pristine copy of an earlier commit of this repository, to measure old against new in one run.

    from baseline import baseline_tree
    old_root = baseline_tree("a9ffe89")   # run `PYTHONPATH=old_root python ...` for the old code
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from corpus import cache_dir

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "a9ffe89"  # the commit before issue 14's work


def baseline_tree(commit: str = DEFAULT_BASELINE) -> Path:
    """`git archive` of `commit` unpacked under the benchmark cache (once); returns its root."""
    target = cache_dir() / f"baseline-{commit}"
    if not (target / "opensearch_cir").is_dir():
        data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                              check=True, capture_output=True).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(target, filter="data")
    return target
