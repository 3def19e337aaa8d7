"""Conformance suite: cases written by us from upstream tests (OpenSearch rest-api-spec YAML,
k-NN and neural-search ITs, Lucene itself through ../shared/tools/lucene_oracle). Each case
cites the upstream file and test. A case marked `unsupported(reason)` checks that the embedded
engine refuses the request clearly (UnsupportedQueryError) instead of answering differently.
The terminal summary prints cases / passing / unsupported by upstream source."""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CIR_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))

_RESULTS: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def pytest_configure(config):
    config.addinivalue_line("markers", "upstream(source): the upstream project/file a conformance case encodes")
    config.addinivalue_line("markers", "unsupported(reason): a case the embedded engine refuses on purpose")


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    source = dict(report.user_properties).get("upstream")
    if source is None:
        return
    tally = _RESULTS[source]
    tally["cases"] += 1
    if report.outcome == "skipped":
        tally["skipped"] += 1
    elif dict(report.user_properties).get("unsupported"):
        tally["unsupported"] += 1 if report.passed else 0
        tally["failed"] += 0 if report.passed else 1
    else:
        tally["passed" if report.passed else "failed"] += 1


@pytest.fixture(autouse=True)
def _record_upstream(request):
    marker = request.node.get_closest_marker("upstream")
    if marker is not None:
        request.node.user_properties.append(("upstream", marker.args[0]))
    unsupported = request.node.get_closest_marker("unsupported")
    if unsupported is not None:
        request.node.user_properties.append(("unsupported", unsupported.args[0]))


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    terminalreporter.section("conformance by upstream source")
    terminalreporter.write_line(f"{'source':<48} cases  pass  unsupported  fail  skip")
    for source in sorted(_RESULTS):
        t = _RESULTS[source]
        terminalreporter.write_line(
            f"{source:<48} {t['cases']:>5} {t['passed']:>5} {t['unsupported']:>12} {t['failed']:>5} {t['skipped']:>5}"
        )


@pytest.fixture(scope="session")
def lucene():
    """`lucene_scores(spec)` from ../shared/tools/lucene_oracle (real Lucene 9.9.1); skips when the
    oracle or a JDK is absent."""
    folder = SHARED / "tools" / "lucene_oracle"
    if not (folder / "oracle.py").exists() or not shutil.which("java") or not shutil.which("javac"):
        pytest.skip("lucene oracle or JDK not available")
    sys.path.insert(0, str(folder))
    try:
        from oracle import lucene_scores
    finally:
        sys.path.remove(str(folder))
    return lucene_scores
