"""The official protocols of CIRR, FashionIQ and CIRCO: which reference handling, which metrics, and
the test-server submission files. Pure functions over ranked image-id lists.

Checked against the official code:
- CIRR: the reference is removed from the ranking, then Recall@1/5/10/50; Recall_subset@1/2/3 ranks
  the query's `img_set` members (reference removed) by their order in the *full* ranking
  (SEARLE `src/validate.py` `cirr_compute_val_metrics`, CIReVL `src/compute_results.py` `cirr`).
  Submissions: `{"version": "rc2", "metric": "recall", "<pairid>": [50 ids]}` and the
  `recall_subset` file with 3 ids (CIRR `Test-split_server.md`, SEARLE `generate_test_submission.py`).
- FashionIQ: the reference is kept; Recall@10/50 per category over the category's split gallery;
  papers add the average over the three categories and the overall ((R@10 + R@50) / 2)
  (SEARLE `fiq_compute_val_metrics`, CIReVL `fiq`, Pic2Word `get_metrics_fashion`). No test server;
  the start kit's prediction file (`start_kit/eval.py`: each caption entry plus `ranking`).
- CIRCO: the reference is kept; mAP@5/10/25/50 over every `gt_img_ids` (AP@K divided by
  min(K, |GT|)), Recall@K over `target_img_id` only (CIRCO `src/evaluation.py` `compute_metrics`).
  Submission: `{"<query id>": [50 image ids]}` for every query id 0..n-1 (CIRCO README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError
from . import metrics
from .formats import Benchmark

DEPTH = 50  # ids per query in rankings and submissions
CIRR_SUBSET_KS = (1, 2, 3)
CIRR_VERSION = "rc2"


@dataclass(frozen=True)
class Protocol:
    """What the official code does for one dataset."""

    remove_reference: bool
    recall_ks: tuple[int, ...]
    map_ks: tuple[int, ...] = ()
    subset_ks: tuple[int, ...] = ()
    tuning_metric: str = "recall@10"


PROTOCOLS = {
    "cirr": Protocol(remove_reference=True, recall_ks=(1, 5, 10, 50), subset_ks=CIRR_SUBSET_KS),
    "fashioniq": Protocol(remove_reference=False, recall_ks=(10, 50)),
    "circo": Protocol(remove_reference=False, recall_ks=(5, 10, 25, 50), map_ks=(5, 10, 25, 50), tuning_metric="map@10"),
}


def subset_of(members: Sequence[str], reference: str, remove_reference: bool) -> list[str]:
    """The images Recall_subset ranks: the img_set members, without the reference when it is removed."""
    return [m for m in dict.fromkeys(members) if not (remove_reference and m == reference)]


def score(benchmark: Benchmark, rankings: Sequence[Sequence[str]], subset_rankings: Sequence[Sequence[str]] | None,
          protocol: Protocol) -> dict[str, float]:
    """The official metrics (fractions) of `rankings` (each query's top ids, reference already
    handled); `subset_rankings` are the img_set members in full-ranking order (CIRR only)."""
    queries = benchmark.queries
    if not benchmark.has_targets:
        raise InputError(f"{benchmark.name} has no public targets: it can only be submitted, not scored")
    targets = [{q.target} for q in queries]
    result = {f"recall@{k}": metrics.recall_at_k(rankings, targets, k) for k in protocol.recall_ks}
    for k in protocol.map_ks:
        result[f"map@{k}"] = metrics.map_at_k(rankings, [set(q.relevant or ()) for q in queries], k)
    if protocol.subset_ks:
        if subset_rankings is None:
            raise ValueError("CIRR needs the subset rankings")
        for k in protocol.subset_ks:
            result[f"recall_subset@{k}"] = metrics.recall_subset_at_k(
                subset_rankings, [q.target for q in queries], [set(r) for r in subset_rankings], k)
    result["queries"] = len(queries)
    return result


def circo_semantic_map(benchmark: Benchmark, rankings: Sequence[Sequence[str]], k: int = 10) -> dict[str, dict[str, float]]:
    """mAP@10 per CIRCO semantic aspect (`semantic_aspects` of each query), as `evaluation.py` prints
    and the server reports; a query counts for each of its aspects."""
    by_aspect: dict[str, list[float]] = {}
    for query, ranking in zip(benchmark.queries, rankings):
        for aspect in query.annotation.get("semantic_aspects", []):
            by_aspect.setdefault(aspect, []).append(metrics.average_precision_at_k(ranking, set(query.relevant or ()), k))
    return {aspect: {f"map@{k}": sum(aps) / len(aps), "queries": len(aps)} for aspect, aps in sorted(by_aspect.items())}


def fashioniq_summary(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """The papers' FashionIQ columns: R@10 and R@50 averaged over the categories, and their mean."""
    average = {f"recall@{k}": sum(r[f"recall@{k}"] for r in per_category.values()) / len(per_category) for k in (10, 50)}
    average["overall"] = (average["recall@10"] + average["recall@50"]) / 2
    average["queries"] = sum(r.get("queries", 0) for r in per_category.values())
    return average


# -- submissions ---------------------------------------------------------------------------------


def cirr_submissions(benchmark: Benchmark, rankings: Sequence[Sequence[str]],
                     subset_rankings: Sequence[Sequence[str]]) -> dict[str, dict]:
    """The two CIRR server files: `recall` (50 ids per pairid) and `recall_subset` (3 ids)."""
    recall: dict = {"version": CIRR_VERSION, "metric": "recall"}
    subset: dict = {"version": CIRR_VERSION, "metric": "recall_subset"}
    for query, ranking, members in zip(benchmark.queries, rankings, subset_rankings):
        recall[str(query.id)] = list(ranking[:DEPTH])
        subset[str(query.id)] = list(members[:CIRR_SUBSET_KS[-1]])
    return {"recall": recall, "recall_subset": subset}


def circo_submission(benchmark: Benchmark, rankings: Sequence[Sequence[str]]) -> dict[str, list[int]]:
    """The CIRCO server file: query id -> the top 50 image ids (integers, as the README's example)."""
    return {str(query.id): [int(i) for i in ranking[:DEPTH]] for query, ranking in zip(benchmark.queries, rankings)}


def fashioniq_predictions(benchmark: Benchmark, rankings: Sequence[Sequence[str]]) -> list[dict]:
    """The start kit's `CATEGORY.SPLIT.pred.json`: each caption entry with its top-50 `ranking`."""
    return [{**query.annotation, "ranking": list(ranking[:DEPTH])} for query, ranking in zip(benchmark.queries, rankings)]


def validate_cirr_submission(document: dict, benchmark: Benchmark, metric: str) -> None:
    """InputError unless `document` is a complete CIRR `metric` file for `benchmark`'s queries."""
    problems = []
    if document.get("version") != CIRR_VERSION or document.get("metric") != metric:
        problems.append(f'needs "version": "{CIRR_VERSION}" and "metric": "{metric}"')
    expected = {str(q.id): q for q in benchmark.queries}
    keys = set(document) - {"version", "metric"}
    if keys != set(expected):
        problems.append(f"pairids differ: {len(set(expected) - keys)} missing, {len(keys - set(expected))} unknown")
    size = DEPTH if metric == "recall" else CIRR_SUBSET_KS[-1]
    for key in sorted(keys & set(expected)):
        ids, query = document[key], expected[key]
        allowed = benchmark.gallery if metric == "recall" else set(query.members or ())
        wanted = min(size, len(benchmark.gallery) - 1 if metric == "recall" else len(subset_of(query.members or [], query.reference, True)))
        if not isinstance(ids, list) or len(ids) != wanted or len(set(ids)) != len(ids):
            problems.append(f"pairid {key}: needs {wanted} distinct ids, got {ids!r:.80}")
        elif any(not isinstance(i, str) or i not in allowed for i in ids):
            problems.append(f"pairid {key}: ids outside the {'split' if metric == 'recall' else 'img_set'}")
        elif query.reference in ids:
            problems.append(f"pairid {key}: lists its reference image")
        if len(problems) > 5:
            break
    if problems:
        raise InputError(f"CIRR {metric} submission invalid: " + "; ".join(problems[:5]))


def validate_circo_submission(document: dict, benchmark: Benchmark) -> None:
    """InputError unless `document` is a complete CIRCO file: every query id 0..n-1 (CIRCO
    `evaluation.py` asserts this), 50 distinct gallery image ids each, as integers."""
    problems = []
    try:
        ids = sorted(int(key) for key in document)
    except ValueError:
        ids = []
        problems.append("keys must be query ids")
    if ids != list(range(len(benchmark.queries))) or {str(q.id) for q in benchmark.queries} != set(document):
        problems.append(f"keys must be all query ids 0..{len(benchmark.queries) - 1}")
    wanted = min(DEPTH, len(benchmark.gallery))
    for key, values in document.items():
        if not isinstance(values, list) or len(values) != wanted or len(set(values)) != len(values):
            problems.append(f"query {key}: needs {wanted} distinct ids")
        elif any(not isinstance(v, int) or str(v) not in benchmark.gallery for v in values):
            problems.append(f"query {key}: ids must be integers of gallery images")
        if len(problems) > 5:
            break
    if problems:
        raise InputError("CIRCO submission invalid: " + "; ".join(problems[:5]))
