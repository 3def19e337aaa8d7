"""Index expressions (names, comma lists, wildcards, `_all`, aliases) and searches over several
indices: each index is scored with its own statistics, as each shard is in OpenSearch, and the
hits are merged by score (ties: index order, then document order)."""

from __future__ import annotations

import fnmatch

from ...errors import EngineError, UnsupportedQueryError


def resolve(client, expression) -> list[str]:
    """Concrete index names of an expression; a wildcard may match nothing, a name must exist
    (404 when used)."""
    if isinstance(expression, str) and not any(c in expression for c in ",*") and expression != "_all" \
            and (expression in client._stores or (client.root / expression / "manifest.json").exists()):
        return [expression]  # the common case: one concrete index
    parts = expression if isinstance(expression, (list, tuple)) else str(expression).split(",")
    existing = sorted(p.name for p in client.root.iterdir() if (p / "manifest.json").exists())
    aliases = client.indices.aliases()
    out: list[str] = []
    for part in (p.strip() for p in parts if p and p.strip()):
        if part in ("_all", "*"):
            names = [n for n in existing if not n.startswith(".")]
        elif "*" in part:
            names = [n for n in existing if fnmatch.fnmatchcase(n, part)] + [
                i for alias, members in aliases.items() if fnmatch.fnmatchcase(alias, part) for i in members
            ]
        elif part in aliases:
            names = aliases[part]
        else:
            names = [part]
        out.extend(n for n in names if n not in out)
    return out


def write_index(client, name: str) -> str:
    """The one index a document operation on `name` (an index or an alias) writes to."""
    aliases = client.indices.aliases()
    if name in aliases:
        if len(aliases[name]) != 1:
            raise EngineError(
                f"no write index is defined for alias [{name}]. The write index may be explicitly disabled using is_write_index=false "
                "or the alias points to multiple indices without one being designated as a write index", 400, "illegal_argument_exception")
        return aliases[name][0]
    if "," in name or "*" in name or name == "_all":
        raise UnsupportedQueryError(f"index expressions ({name!r}) are not supported for single-document operations")
    return name


def search_many(client, names: list[str], query, body: dict, params: dict, from_: int, size: int) -> tuple[list, int, float | None]:
    """(hits, total, max_score) of a plain scored search over several indices."""
    for key in ("sort", "min_score", "explain"):
        if body.get(key):
            raise UnsupportedQueryError(f"[{key}] over several indices is not supported by the embedded engine")
    if params.get("search_pipeline") or (isinstance(query, dict) and "hybrid" in query):
        raise UnsupportedQueryError("hybrid queries and search pipelines over several indices are not supported by the embedded engine")
    merged, total = [], 0
    for position, name in enumerate(names):
        store = client._store(name)
        ranked, count = client._executor(store).top(query, from_ + size, count=True)
        total += count or 0
        merged += [(-float(s), position, int(o), name, store) for o, s in zip(ranked.ords, ranked.scores)]
    merged.sort(key=lambda item: item[:3])
    hits = [client._hit(store, name, ordinal, -neg, body.get("_source", True), None)
            for neg, _, ordinal, name, store in merged[from_ : from_ + size]]
    return hits, total, (-merged[0][0] if merged else None)
