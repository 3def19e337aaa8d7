"""`cir eval rerank`: each reranker after a benchmark's best strategy, with and without, and its cost.

On the fashion or scenes benchmark (their own `build`): the first stage's parameters are tuned on
the dev half by `harness.run_composed` (the path every benchmark uses); then each query's first stage
runs once at depth K (default 100) with the candidates' vectors (`compose.rerank.run.first_stage`),
each reranker's blend γ is chosen on the same dev queries by recall@10 (γ = 0 is "no rerank", so a
reranker that does not help on dev is switched off), and the test half is scored with and without.
Latency: milliseconds per query of the first stage at depth K with vectors vs the plain search at
depth 50 without them, and of each reranker's in-memory work (mean over the test queries).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

from tqdm import tqdm

from ..compose.execute import execute
from ..compose.query import Weights
from ..compose.rerank import apply_chain, parse_rerankers
from ..compose.rerank.base import RerankContext
from ..compose.rerank.run import first_stage, fresh
from ..errors import CIRError
from . import metrics
from .harness import RECALL_KS, TUNING_K, Case, composed_metrics, is_dev_query, prepare_cases, run_composed

RERANK_CHAINS = ("exact", "intersection", "expansion", "clauses", "exact,intersection")
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
BEST_STRATEGY = {"fashion": "hybrid", "scenes": "slerp"}


def _with_blend(chain: str, blend: float) -> str:
    """The chain with γ = `blend` on its last reranker (the earlier ones keep their defaults)."""
    parts = chain.split(",")
    parts[-1] = f"{parts[-1]}:blend={blend}"
    return ",".join(parts)


def evaluate(client: Any, index: str, encoder: Any, cases: Sequence[Case], *, name: str, strategy: str,
             tune_subset: int = 100, test_subset: int | None = None, depth: int = 100,
             chains: Sequence[str] = RERANK_CHAINS) -> dict:
    """The document of the module docstring (same shape as a composed benchmark's, plus `latency_ms`)."""
    base = run_composed(client, index, encoder, cases, name=name, strategies=(strategy,),
                        tune_subset=tune_subset, test_subset=test_subset)
    weights = replace(Weights(), **base["tuned"][strategy])
    dev = [c for c in cases if is_dev_query(c.id)][:tune_subset]
    test = [c for c in cases if not is_dev_query(c.id)][:test_subset]
    if not dev or not test:
        raise CIRError(f"{name}: need queries in both halves")
    k = max(RECALL_KS)

    def stage(subset: list[Case], label: str):
        prepared = prepare_cases(client, index, encoder, subset, k, f"{name} {label}")
        runs, seconds = [], 0.0
        for p in tqdm(prepared, desc=f"{name} {label}: first stage at depth {depth}", unit="q", leave=False):
            started = time.perf_counter()
            rendered, candidates = first_stage(client, index, p, depth=depth, source=False, strategy=strategy, weights=weights)
            seconds += time.perf_counter() - started
            runs.append((RerankContext(p, strategy, weights, encoder), candidates))
        return prepared, runs, 1000 * seconds / len(prepared)

    def rankings(runs, chain: str | None) -> tuple[list[list[str]], float]:
        reranker_chain = parse_rerankers(chain) if chain else []
        ranked, seconds = [], 0.0
        for context, candidates in runs:
            started = time.perf_counter()
            order = apply_chain(reranker_chain, context, fresh(candidates))
            seconds += time.perf_counter() - started
            ranked.append([c.id for c in order[:k]])
        return ranked, 1000 * seconds / len(runs)

    _, dev_runs, _ = stage(dev, "dev")
    test_prepared, test_runs, first_ms = stage(test, "test")
    plain_ms = _plain_ms(client, index, test_prepared, strategy, weights, k)
    dev_relevant, test_relevant = [c.relevant for c in dev], [c.relevant for c in test]
    rows = {strategy: composed_metrics(rankings(test_runs, None)[0], test_relevant)}
    tuning, chosen, latency = {}, {}, {"first stage, plain (depth 50)": plain_ms,
                                       f"first stage with vectors (depth {depth})": first_ms}
    for chain in tqdm(chains, desc=f"{name}: rerankers", leave=False):
        curve = [(blend, metrics.recall_at_k(rankings(dev_runs, _with_blend(chain, blend))[0], dev_relevant, TUNING_K))
                 for blend in BLENDS]
        best = max(curve, key=lambda point: (point[1], -point[0]))[0]  # ties: the smaller change
        tuning[f"{chain}.blend"], chosen[chain] = curve, best
        at_one, ms = rankings(test_runs, _with_blend(chain, 1.0))
        tuned, _ = rankings(test_runs, _with_blend(chain, best))
        rows[f"+ {chain} (γ=1)"] = composed_metrics(at_one, test_relevant)
        rows[f"+ {chain} (γ={best:g}, dev)"] = composed_metrics(tuned, test_relevant)
        latency[f"rerank {chain}"] = ms
    return {
        "benchmark": f"{name}: rerankers after {strategy}",
        "strategies": rows,
        "tuned": {strategy: base["tuned"][strategy], "blend": chosen},
        "tuning": tuning,
        "tuning_metric": f"recall@{TUNING_K} on {len(dev)} dev queries",
        "queries": {"dev": len(dev), "test": len(test), "test_overall": len(test)},
        "latency_ms": {key: round(value, 2) for key, value in latency.items()},
        "depth": depth,
    }


def _plain_ms(client: Any, index: str, prepared: list, strategy: str, weights: Weights, k: int) -> float:
    started = time.perf_counter()
    for p in prepared:
        execute(client, index, p.render(strategy, weights, k, source=False))
    return 1000 * (time.perf_counter() - started) / len(prepared)


def run(benchmark: str, client: Any, encoder: Any, *, data: str | None = None, tune_subset: int = 100,
        test_subset: int | None = None, depth: int = 100, strategy: str | None = None, **build_options: Any) -> dict:
    """Build `benchmark` (fashion: needs `data`; scenes: seed/queries/distractors) and evaluate its
    rerankers after `strategy` (default: the benchmark's best, `BEST_STRATEGY`)."""
    if benchmark == "fashion":
        from .fashion import build

        if data is None:
            raise CIRError("fashion needs --data")
        index, cases, notes = build(data, client, encoder, **build_options)
        cases = [c for c in cases if not c.extra.get("separate")]
    elif benchmark == "scenes":
        from .scenes import build

        index, cases, notes = build(client, encoder, **build_options)
    else:
        raise CIRError(f"unknown benchmark {benchmark!r}: fashion or scenes")
    result = evaluate(client, index, encoder, cases, name=benchmark, strategy=strategy or BEST_STRATEGY[benchmark],
                      tune_subset=tune_subset, test_subset=test_subset, depth=depth)
    latency = ", ".join(f"{key} {value:g} ms" for key, value in result["latency_ms"].items())
    result["notes"] = notes + [
        f"γ (blend with the first-stage score) chosen on dev per reranker: {result['tuned']['blend']}; "
        "γ=0 means the reranker is off",
        f"latency per query (mean over the test half, this machine): {latency}",
    ]
    return result
