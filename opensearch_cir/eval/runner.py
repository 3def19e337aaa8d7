"""Run CIRR, FashionIQ and CIRCO as the papers and the official servers do (see `official`).

    result = run("cirr", "data/CIRR", client, encoder)                      # whole val split
    result = run("circo", root, client, encoder, Settings(split="test", out=Path("runs/eval")))

The gallery is indexed through `setup_index` with one document per dataset image id (`_id` = the
image's name in the release). Each query is prepared by `compose.prepare` (the reference read from
the index, the modification encoded) and its composed vector searched with a k-NN query. By
default the ranking is exact, as the official code's full similarity matrix: the embedded engine
must be connected with `hnsw_threshold` above the gallery size (`cir eval` does so unless `--ann`).
CIRR's Recall_subset ranks the img_set members with a k-NN query filtered to them, which scores
exactly those members (k-NN's efficient filtering searches a filter of at most k documents
exactly): their order is their order in the full ranking.

Settings are fixed (`Weights` defaults) unless `tune_on` names another split of the same dataset,
whose first `tune_queries` queries tune fusion's alpha and slerp's lambda; the scored split is
never used for tuning. Test splits (no public targets) produce the submission files only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from .. import dsl
from ..compose import strategies as S
from ..compose.prepare import prepare
from ..compose.query import IMAGE_FIELD, PHI_STRATEGIES, CompositeQuery, PreparedQuery, Weights
from ..errors import InputError
from . import official
from .formats import FASHIONIQ_CATEGORIES, Benchmark, load
from .harness import GRID, reuse_index, tune_scalar

STRATEGIES = ("image_only", "text_only", "sum", "fusion", "slerp", "phi")
"""Image-only galleries: no caption strategies; `phi` runs when the model has a φ graph."""
TUNED = {"fusion": "alpha", "slerp": "lam"}
REFERENCE_CHOICES = ("official", "remove", "keep")
BATCH = 64


@dataclass
class Settings:
    """How to run a benchmark. reference: official | remove | keep; exact: rank exactly (else the
    engine's ANN); tune_on: another split to tune on (None: fixed `weights`); limit: score only the
    first N queries (quick runs, not comparable); out: folder for submission files."""

    split: str = "val"
    reference: str = "official"
    exact: bool = True
    strategies: Sequence[str] = STRATEGIES
    weights: Weights = field(default_factory=Weights)
    tune_on: str | None = None
    tune_queries: int = 200
    limit: int | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        if self.reference not in REFERENCE_CHOICES:
            raise InputError(f"reference must be one of {', '.join(REFERENCE_CHOICES)}, got {self.reference!r}")
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise InputError(f"unknown strategies {sorted(unknown)} (benchmarks run {', '.join(STRATEGIES)})")

    def remove_reference(self, dataset: str) -> bool:
        return official.PROTOCOLS[dataset].remove_reference if self.reference == "official" else self.reference == "remove"


def run(dataset: str, root: str | Path, client: Any, encoder: Any, settings: Settings | None = None) -> dict:
    """Evaluate (or, on a test split, write the submissions of) `dataset` under `root`."""
    settings = settings or Settings()
    if dataset != "fashioniq":
        return run_split(load(dataset, root, settings.split), client, encoder, settings, root)
    per_category = {c: run_split(load(dataset, root, settings.split, c), client, encoder, settings, root)
                    for c in FASHIONIQ_CATEGORIES}
    first = next(iter(per_category.values()))
    protocol = {**first["protocol"], "category": None,
                "gallery": {c: r["protocol"]["gallery"] for c, r in per_category.items()},
                **{key: sum(r["protocol"][key] for r in per_category.values()) for key in ("queries", "empty_text_queries")}}
    if settings.exact:
        protocol["ranking"] = "exact (every query scored against all images of its category's split)"
    result = {"benchmark": f"FashionIQ {settings.split}", "protocol": protocol,
        "groups": {c: r["strategies"] for c, r in per_category.items()},
        "tuned": {c: r["tuned"] for c, r in per_category.items()},
        "submissions": {c: r["submissions"] for c, r in per_category.items() if r["submissions"]},
        "notes": first["notes"]}
    if all(r["strategies"] for r in per_category.values()):
        result["strategies"] = {s: official.fashioniq_summary({c: r["strategies"][s] for c, r in per_category.items()})
                                for s in first["strategies"]}
        result["notes"] = result["notes"] + ["Rows: R@10 and R@50 averaged over dress, shirt and toptee; "
                                             "overall = (R@10 + R@50) / 2, the papers' 'Avg.' column."]
    return result


def run_split(benchmark: Benchmark, client: Any, encoder: Any, settings: Settings, root: str | Path) -> dict:
    """One loaded split: index, prepare, rank every strategy, score and/or write submissions."""
    protocol = official.PROTOCOLS[benchmark.dataset]
    remove = settings.remove_reference(benchmark.dataset)
    tuned, curves = _tuned_weights(benchmark, client, encoder, settings, root)
    if settings.limit:
        benchmark = replace(benchmark, queries=benchmark.queries[: settings.limit])
    index = index_gallery(client, encoder, benchmark, exact=settings.exact)
    prepared = prepare_queries(client, index, encoder, benchmark, remove)
    empty = sum(p.text is None for p in prepared)
    scores: dict[str, dict] = {}
    groups: dict[str, dict[str, dict]] = {}
    submissions: dict[str, dict[str, str]] = {}
    strategies = [s for s in settings.strategies if s not in PHI_STRATEGIES or getattr(encoder, "phi", None) is not None]
    for strategy in tqdm(strategies, desc=f"{benchmark.name}: ranking", unit="strategy", leave=False):
        rankings = rank(client, index, prepared, strategy, tuned[strategy])
        subsets = rank_subsets(client, index, prepared, benchmark, strategy, tuned[strategy], remove) \
            if protocol.subset_ks else None
        if benchmark.has_targets:
            scores[strategy] = official.score(benchmark, rankings, subsets, protocol)
            if benchmark.dataset == "circo":
                for aspect, values in official.circo_semantic_map(benchmark, rankings).items():
                    groups.setdefault(f"semantic aspect: {aspect}", {})[strategy] = values
        if settings.out is not None:
            submissions[strategy] = write_submissions(benchmark, rankings, subsets, settings, strategy, remove)
    return {
        "benchmark": benchmark.name,
        "index": index,
        "protocol": describe_protocol(benchmark, settings, remove, len(prepared), empty, curves),
        "strategies": scores,
        "groups": groups,
        "tuned": {s: _parameters(s, tuned[s]) for s in strategies},
        "tuning": curves,
        "submissions": submissions,
        "notes": [] if not submissions or remove == protocol.remove_reference else
        ["The submission files follow a non-official reference protocol: not for the test servers."],
    }


def index_gallery(client: Any, encoder: Any, benchmark: Benchmark, *, exact: bool) -> str:
    """Index every gallery image once, `_id` = its dataset id (cached between runs by name + model)."""
    from ..admin import setup_index
    from ..ingest.writer import BulkWriter, Document

    if exact:
        check_exact(client, len(benchmark.gallery))
    names = sorted(benchmark.gallery)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:10]
    slug = "-".join(p for p in (benchmark.dataset, benchmark.category, benchmark.split) if p)
    index = f"cir-eval-{slug}-{len(names)}-{digest}"
    if reuse_index(client, index, encoder, len(names)):
        return index
    setup_index(client, index, encoder.manifest)
    writer = BulkWriter(client, index)
    for start in tqdm(range(0, len(names), BATCH), desc=f"{benchmark.name}: indexing {len(names)} images", leave=False):
        batch = names[start: start + BATCH]
        vectors = encoder.encode_images([benchmark.gallery[name] for name in batch])
        documents = [Document(name, {"image_vector": [float(v) for v in vector], "model_id": encoder.model_id,
                                     "image_uri": str(benchmark.gallery[name])}, name)
                     for name, vector in zip(batch, vectors)]
        _, failed = writer.write(documents)
        if failed:
            raise InputError(f"{benchmark.name}: {len(failed)} images failed to index, e.g. {failed[0][0].name}: {failed[0][1]}")
    client.indices.refresh(index=index)
    return index


def check_exact(client: Any, gallery_size: int) -> None:
    """InputError unless `client` searches a gallery of this size exactly (embedded engine with its
    HNSW threshold above the gallery)."""
    threshold = getattr(client, "hnsw_threshold", None)
    if threshold is None or gallery_size >= threshold:
        raise InputError(
            f"exact ranking of {gallery_size:,} images needs the embedded engine connected with hnsw_threshold > "
            f"{gallery_size:,} (connect('embedded://DIR', hnsw_threshold=...); `cir eval` does this); "
            "ask for the index's approximate search with exact=False (--ann) instead")


def prepare_queries(client: Any, index: str, encoder: Any, benchmark: Benchmark, remove: bool) -> list[PreparedQuery]:
    """Each query's reference read from the index and its text encoded (empty texts allowed)."""
    return [prepare(client, index, CompositeQuery(doc_ids=[q.reference], text=q.text, k=official.DEPTH,
                                                  exclude_reference=remove), encoder)
            for q in tqdm(benchmark.queries, desc=f"{benchmark.name}: encoding queries", unit="q", leave=False)]


def query_vector(prepared: PreparedQuery, strategy: str, weights: Weights):
    """The composed vector; a query with an empty modification text is its reference image."""
    if prepared.text is None:
        return S.image_only(prepared.image)
    return prepared.vector(strategy, weights)


def rank(client: Any, index: str, prepared: Sequence[PreparedQuery], strategy: str, weights: Weights) -> list[list[str]]:
    """Each query's top `official.DEPTH` image ids, its reference dropped when it is excluded."""
    rankings = []
    for p in prepared:
        size = official.DEPTH + len(p.excluded_ids)
        ids = _search(client, index, dsl.knn_clause(IMAGE_FIELD, query_vector(p, strategy, weights), size), size)
        rankings.append([i for i in ids if i not in p.excluded_ids][: official.DEPTH])
    return rankings


def rank_subsets(client: Any, index: str, prepared: Sequence[PreparedQuery], benchmark: Benchmark, strategy: str,
                 weights: Weights, remove: bool) -> list[list[str]]:
    """Each query's img_set members (reference removed when `remove`) in full-ranking order."""
    rankings = []
    for p, query in zip(prepared, benchmark.queries):
        members = official.subset_of(query.members or [], query.reference, remove)
        if not members:
            rankings.append([])
            continue
        clause = dsl.knn_clause(IMAGE_FIELD, query_vector(p, strategy, weights), len(members),
                                filter={"ids": {"values": members}})
        rankings.append(_search(client, index, clause, len(members)))
    return rankings


def _search(client: Any, index: str, clause: dict, size: int) -> list[str]:
    body = dsl.search_body(clause, size=size, source_excludes=None)
    body["_source"] = False
    return [hit["_id"] for hit in client.search(index=index, body=body)["hits"]["hits"]]


def write_submissions(benchmark: Benchmark, rankings, subsets, settings: Settings, strategy: str, remove: bool) -> dict[str, str]:
    """The server files of one strategy under OUT/submissions/, validated before they are written."""
    folder = Path(settings.out) / "submissions"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "-".join(p for p in (benchmark.dataset, benchmark.category, benchmark.split, strategy) if p)
    official_protocol = remove == official.PROTOCOLS[benchmark.dataset].remove_reference
    if benchmark.dataset == "cirr":
        documents = official.cirr_submissions(benchmark, rankings, subsets)
        if official_protocol:
            for metric, document in documents.items():
                official.validate_cirr_submission(document, benchmark, metric)
        files = {metric: folder / f"{stem}.{metric}.json" for metric in documents}
    elif benchmark.dataset == "circo":
        documents = {"submission": official.circo_submission(benchmark, rankings)}
        official.validate_circo_submission(documents["submission"], benchmark)
        files = {"submission": folder / f"{stem}.json"}
    else:
        documents = {"predictions": official.fashioniq_predictions(benchmark, rankings)}
        files = {"predictions": folder / f"{stem}.pred.json"}
    for kind, path in files.items():
        path.write_text(json.dumps(documents[kind], sort_keys=benchmark.dataset != "fashioniq") + "\n")
    return {kind: str(path) for kind, path in files.items()}


def _tuned_weights(benchmark: Benchmark, client: Any, encoder: Any, settings: Settings, root) -> tuple[dict, dict]:
    """Per strategy weights: fixed, or tuned on `settings.tune_on` (a different split)."""
    weights = {s: settings.weights for s in settings.strategies}
    if settings.tune_on is None:
        return weights, {}
    if settings.tune_on == benchmark.split:
        raise InputError(f"tune on a different split than the one scored ({benchmark.split})")
    tuning = load(benchmark.dataset, root, settings.tune_on, benchmark.category)
    if not tuning.has_targets:
        raise InputError(f"{tuning.name} has no public targets to tune on")
    tuning = replace(tuning, queries=tuning.queries[: settings.tune_queries])
    protocol = official.PROTOCOLS[tuning.dataset]
    remove = settings.remove_reference(tuning.dataset)
    index = index_gallery(client, encoder, tuning, exact=settings.exact)
    prepared = prepare_queries(client, index, encoder, tuning, remove)
    curves = {}
    for strategy, parameter in TUNED.items():
        if strategy not in weights:
            continue

        def metric(candidate: Weights, strategy: str = strategy) -> float:
            rankings = rank(client, index, prepared, strategy, candidate)
            return official.score(tuning, rankings, [[]] * len(rankings), replace(protocol, subset_ks=()))[protocol.tuning_metric]

        weights[strategy], curves[f"{strategy}.{parameter}"] = tune_scalar(metric, settings.weights, parameter, GRID)
    return weights, curves


def _parameters(strategy: str, weights: Weights) -> dict:
    return {"alpha": weights.alpha} if strategy == "fusion" else {"lam": weights.lam} if strategy == "slerp" else {}


def describe_protocol(benchmark: Benchmark, settings: Settings, remove: bool, queries: int, empty: int, curves: dict) -> dict:
    """What the numbers mean: reference handling, ranking, split, settings, and comparability."""
    official_remove = official.PROTOCOLS[benchmark.dataset].remove_reference
    reference = ("removed" if remove else "kept") + (
        " (official)" if remove == official_remove else f" (NOT official: the official code {'removes' if official_remove else 'keeps'} it)")
    ranking = (f"exact (every query scored against all {len(benchmark.gallery):,} gallery images)" if settings.exact
               else "approximate (the engine's k-NN index: HNSW from its threshold up)")
    tuning = (f"tuned on {settings.tune_on} ({settings.tune_queries} queries max), {', '.join(curves)}"
              if settings.tune_on else f"fixed (no tuning): fusion alpha {settings.weights.alpha}, slerp lambda {settings.weights.lam}")
    caveats = []
    if remove != official_remove:
        caveats.append("reference handling differs from the official code")
    if not settings.exact:
        caveats.append("approximate ranking")
    if settings.limit:
        caveats.append(f"only the first {queries} queries")
    return {"dataset": benchmark.dataset, "split": benchmark.split, "category": benchmark.category,
            "gallery": len(benchmark.gallery), "queries": queries, "reference": reference, "ranking": ranking,
            "depth": official.DEPTH, "settings": tuning, "empty_text_queries": empty,
            "comparable_with_papers": "yes (metric definitions and protocol as the official code)" if not caveats
            else "no: " + "; ".join(caveats)}
