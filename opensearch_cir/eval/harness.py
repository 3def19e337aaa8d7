"""What every benchmark shares: an index built through `setup_index` + `Ingestor` in the embedded
engine, composed queries run through `compose` (the path users get), the dev/test split of the
queries, metric tables, and parameter tuning on the dev half.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tqdm import tqdm

from ..compose.execute import execute
from ..compose.prepare import prepare
from ..compose.query import PHI_STRATEGIES, CompositeQuery, PreparedQuery, Weights
from ..errors import CIRError
from . import metrics

log = logging.getLogger(__name__)

RECALL_KS = (1, 5, 10, 50)
MAP_KS = (10, 50)
TUNING_K = 10
TUNING_METRIC = f"recall@{TUNING_K}"
GRID = tuple(round(0.1 * i, 1) for i in range(11))


def is_dev_query(query_id: str) -> bool:
    """Deterministic half split of a benchmark's queries: dev (tuning) vs test (reported)."""
    return hashlib.sha256(f"cir-eval-split:{query_id}".encode()).digest()[0] % 2 == 0


def build_index(client: Any, index: str, encoder: Any, records: Iterable[Any], *, expected: int) -> None:
    """Create `index` for `encoder`'s model and ingest `records` (`opensearch_cir.ingest.Record`),
    unless the index already holds `expected` documents of this model (cached between runs)."""
    from ..admin import setup_index
    from ..ingest import Ingestor

    if reuse_index(client, index, encoder, expected):
        return
    setup_index(client, index, encoder.manifest)
    ingestor = Ingestor(client, index, encoder, progress=True, total=expected)
    for record in records:
        ingestor.add(record)
    report = ingestor.close()
    client.indices.refresh(index=index)
    count = client.count(index=index)["count"]
    if count != expected:
        raise CIRError(f"{index}: expected {expected} documents after ingestion, found {count} ({report})")


def reuse_index(client: Any, index: str, encoder: Any, expected: int) -> bool:
    """True when `index` already holds `expected` documents of `encoder`'s model (kept between
    runs); otherwise a stale `index` is deleted and False returned."""
    if not client.indices.exists(index=index):
        return False
    count = client.count(index=index)["count"]
    meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {}).get("cir", {})
    if count == expected and meta.get("model_id") == encoder.model_id:
        log.info("reusing %s (%d documents)", index, count)
        return True
    client.indices.delete(index=index)
    return False


@dataclass
class Case:
    """One composed query of a benchmark: reference doc id, modification, the relevant doc ids."""

    id: str
    reference: str
    text: str
    relevant: frozenset[str]
    group: str = "all"
    caption: str | None = None
    extra: dict = field(default_factory=dict)


def prepare_cases(client: Any, index: str, encoder: Any, cases: Sequence[Case], k: int, desc: str) -> list[PreparedQuery]:
    """Resolve and encode every query once (re-rendered for each strategy and weight)."""
    return [
        prepare(client, index, CompositeQuery(doc_ids=[c.reference], text=c.text, caption=c.caption, k=k), encoder)
        for c in tqdm(cases, desc=f"{desc}: encoding queries", unit="q", leave=False)
    ]


def rank(client: Any, index: str, prepared: Sequence[PreparedQuery], strategy: str, weights: Weights, k: int) -> list[list[str]]:
    """The ranked ids of every prepared query under one strategy and its weights."""
    return [[r.id for r in execute(client, index, p.render(strategy, weights, k, source=False))] for p in prepared]


def composed_metrics(rankings: Sequence[Sequence[str]], relevants: Sequence[frozenset[str]]) -> dict[str, float]:
    """Recall@1/5/10/50 and mAP@10/50 (fractions) plus the query count."""
    result = {f"recall@{k}": metrics.recall_at_k(rankings, relevants, k) for k in RECALL_KS}
    result.update({f"map@{k}": metrics.map_at_k(rankings, relevants, k) for k in MAP_KS})
    result["queries"] = len(rankings)
    return result


def tune_scalar(
    evaluate: Callable[[Weights], float], base: Weights, name: str, values: Sequence[float] = GRID
) -> tuple[Weights, list[tuple[float, float]]]:
    """Grid search of one weight on dev: the best `Weights` and the curve [(value, metric)]."""
    curve = [(float(v), evaluate(replace(base, **{name: v}))) for v in values]
    best = max(curve, key=lambda point: point[1])[0]
    return replace(base, **{name: best}), curve


def hybrid_weight_grid(step: float = 0.2) -> list[tuple[float, float, float]]:
    """(bm25, image, caption) weights on the simplex with `step`, each sub-query weight > 0 somewhere."""
    n = round(1 / step)
    return [(round(a * step, 2), round(b * step, 2), round((n - a - b) * step, 2))
            for a in range(n + 1) for b in range(n + 1 - a)]


def run_composed(
    client: Any,
    index: str,
    encoder: Any,
    cases: Sequence[Case],
    *,
    name: str,
    strategies: Sequence[str],
    tune_subset: int = 200,
    test_subset: int | None = None,
    base: Weights | None = None,
    extra_metrics: Callable[[list[list[str]], list[Case]], dict[str, float]] | None = None,
) -> dict:
    """Tune each strategy's parameters on the dev half, then score every strategy on the test half.

    tune_subset / test_subset cap how many dev / test queries are used (None: all of the half).

    Returns the JSON document of a composed benchmark: `strategies` (test half, overall),
    `groups` (test half, per `Case.group`), `tuned` (the chosen weights), `tuning` (the curves),
    and `queries` (dev/test counts). `extra_metrics(rankings, cases)` adds protocol-specific
    metrics (CIRR's Recall_subset, CIRCO's mAP@5/25) to each strategy's overall numbers.
    """
    base = base or Weights()
    if getattr(encoder, "phi", None) is None:  # φ strategies need a model with a φ graph
        strategies = [s for s in strategies if s not in PHI_STRATEGIES]
    k = max(RECALL_KS)
    dev = [c for c in cases if is_dev_query(c.id)]
    test = [c for c in cases if not is_dev_query(c.id)]
    if not dev or not test:
        raise CIRError(f"{name}: need queries in both halves (got {len(dev)} dev, {len(test)} test)")
    dev, test = dev[:tune_subset], test[:test_subset]
    dev_prepared = prepare_cases(client, index, encoder, dev, TUNING_K, f"{name} dev")
    dev_relevant = [c.relevant for c in dev]

    def evaluate(strategy: str) -> Callable[[Weights], float]:
        def score(weights: Weights) -> float:
            ranking = rank(client, index, dev_prepared, strategy, weights, TUNING_K)
            return metrics.recall_at_k(ranking, dev_relevant, TUNING_K)
        return score

    tuned: dict[str, Weights] = {}
    tuning: dict[str, list] = {}
    progress = tqdm(desc=f"{name}: tuning on {len(dev)} dev queries", total=6, leave=False)
    fused, tuning["fusion.alpha"] = tune_scalar(evaluate("fusion"), base, "alpha")
    tuned["fusion"] = fused
    progress.update()
    if "caption_aware" in strategies:
        tuned["caption_aware"], tuning["caption_aware.beta"] = tune_scalar(
            evaluate("caption_aware"), fused, "beta", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9])
    progress.update()
    tuned["slerp"], tuning["slerp.lam"] = tune_scalar(evaluate("slerp"), base, "lam")
    progress.update()
    if "pdv" in strategies:
        pdv, tuning["pdv.pdv_beta"] = tune_scalar(evaluate("pdv"), base, "pdv_beta", GRID[::2])
        tuned["pdv"], tuning["pdv.pdv_alpha_text"] = tune_scalar(evaluate("pdv"), pdv, "pdv_alpha_text", [1.0, 2.0, 3.0, 4.0])
    progress.update()
    if "hybrid" in strategies:
        tuned["hybrid"], tuning["hybrid.weights"], tuning["hybrid.normalization"] = _tune_hybrid(
            evaluate("hybrid"), fused, tuned.get("pdv"))
    if "phi_hybrid" in strategies:
        tuned["phi_hybrid"], tuning["phi_hybrid.weights"], tuning["phi_hybrid.normalization"] = _tune_hybrid(
            evaluate("phi_hybrid"), fused, None)
    progress.update()
    for strategy in strategies:
        tuned.setdefault(strategy, base)
    progress.close()

    test_prepared = prepare_cases(client, index, encoder, test, k, f"{name} test")
    results: dict[str, dict] = {}
    groups: dict[str, dict[str, dict]] = {}
    group_names = sorted({c.group for c in test})
    overall = [i for i, c in enumerate(test) if not c.extra.get("separate")]
    for strategy in tqdm(strategies, desc=f"{name}: {len(test)} test queries", unit="strategy", leave=False):
        rankings = rank(client, index, test_prepared, strategy, tuned[strategy], k)
        results[strategy] = composed_metrics([rankings[i] for i in overall], [test[i].relevant for i in overall])
        if extra_metrics is not None:
            results[strategy].update(extra_metrics([rankings[i] for i in overall], [test[i] for i in overall]))
        for group in group_names:
            members = [i for i, c in enumerate(test) if c.group == group]
            groups.setdefault(group, {})[strategy] = composed_metrics(
                [rankings[i] for i in members], [test[i].relevant for i in members])
    return {
        "benchmark": name,
        "strategies": results,
        "groups": groups,
        "tuned": {s: _weights_used(s, w) for s, w in tuned.items() if s in strategies},
        "tuning": tuning,
        "tuning_metric": f"{TUNING_METRIC} on {len(dev)} dev queries",
        "queries": {"dev": len(dev), "test": len(test), "test_overall": len(overall)},
        "protocol": {"split": f"test half of the queries ({len(test)}; a hash of the query id), never used for tuning",
                     "reference": "removed (compose excludes the reference document)",
                     "ranking": f"compose through the engine (k-NN exact below {getattr(client, 'hnsw_threshold', 'the cluster')}"
                                " documents, HNSW above; hybrid via the search pipeline)",
                     "settings": f"tuned on {len(dev)} dev-half queries by {TUNING_METRIC} (see tuned parameters)"},
    }


def _tune_hybrid(score: Callable[[Weights], float], fused: Weights, pdv: Weights | None):
    """Sub-query weights on a simplex grid, then the composed vector and the normalisation."""
    weight_curve = []
    for bm25, image, caption in hybrid_weight_grid():
        weights = replace(fused, bm25=bm25, image=image, caption=caption)
        weight_curve.append(((bm25, image, caption), score(weights)))
    (bm25, image, caption), best_score = max(weight_curve, key=lambda point: point[1])
    best = replace(fused, bm25=bm25, image=image, caption=caption)
    if pdv is not None:
        with_pdv = replace(best, hybrid_vector="pdv", pdv_beta=pdv.pdv_beta, pdv_alpha_text=pdv.pdv_alpha_text)
        if score(with_pdv) > best_score:
            best = with_pdv
    norm_curve = [(technique, score(replace(best, normalization=technique))) for technique in ("min_max", "l2", "z_score", "rrf")]
    best = replace(best, normalization=max(norm_curve, key=lambda point: point[1])[0])
    return best, [[list(w), s] for w, s in weight_curve], norm_curve


_PARAMETERS = {
    "fusion": ("alpha",), "caption_aware": ("alpha", "beta"), "slerp": ("lam",),
    "pdv": ("pdv_alpha_text", "pdv_alpha_image", "pdv_beta"),
    "hybrid": ("bm25", "image", "caption", "hybrid_vector", "alpha", "normalization"),
    "phi_hybrid": ("bm25", "image", "caption", "normalization"),
}  # fmt: skip


def _weights_used(strategy: str, weights: Weights) -> dict:
    return {name: getattr(weights, name) for name in _PARAMETERS.get(strategy, ())}


def write_outputs(result: dict, out_dir: str | Path, name: str) -> dict[str, Path]:
    """`<name>.json`, `<name>.md` and `<name>.png` in `out_dir`; returns their paths."""
    from .report import write_report

    return write_report(result, Path(out_dir), name)
