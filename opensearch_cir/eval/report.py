"""Benchmark outputs: the JSON document and a markdown table (no plotting library needed), plus a
PNG plot comparing strategies when matplotlib is installed (the `plots` extra)."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_table(rows: dict[str, dict[str, float]], columns: list[str] | None = None) -> str:
    """A markdown table: one row per key of `rows`, metric columns in percent (ranks as numbers)."""
    columns = columns or [c for c in next(iter(rows.values())) if c != "queries"]
    lines = ["| strategy | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        cells = [_cell(column, values.get(column)) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(column: str, value) -> str:
    if value is None:
        return "–"
    if "rank" in column or column == "queries":
        return f"{value:g}"
    return f"{100 * value:.1f}"


SINGLE_MODALITIES = ("image_only", "text_only")


def verdict(rows: dict[str, dict[str, float]], metric: str = "recall@10") -> str:
    """One line: the best strategy, and whether the best composed one beats both single modalities."""
    best = max(rows, key=lambda name: rows[name][metric])
    line = f"Best {metric}: **{best}** ({100 * rows[best][metric]:.1f})."
    composed = [name for name in rows if name not in SINGLE_MODALITIES]
    if composed and all(name in rows for name in SINGLE_MODALITIES):
        top = max(composed, key=lambda name: rows[name][metric])
        singles = ", ".join(f"{name} {100 * rows[name][metric]:.1f}" for name in SINGLE_MODALITIES)
        beats = all(rows[top][metric] > rows[name][metric] for name in SINGLE_MODALITIES)
        line += (f" Best composed strategy {top} ({100 * rows[top][metric]:.1f}) "
                 f"{'beats' if beats else 'does NOT beat'} both single modalities ({singles}).")
    return line


def render_markdown(result: dict) -> str:
    """The markdown report of one benchmark result (composed or flickr8k)."""
    title = result.get("benchmark", "benchmark")
    parts = [f"## {title}", ""]
    if "protocol" in result:
        parts += protocol_lines(result["protocol"]) + [""]
    if "rows" in result:  # a benchmark with columns of its own (the multi-turn one)
        parts += [result.get("summary", ""), "", markdown_table(result["rows"]), ""]
    elif "protocol" in result and not isinstance(result.get("queries"), dict) and not any(d in result for d in ("t2i", "i2t")):
        if result.get("strategies"):
            parts += [verdict(result["strategies"]), "", "Metrics in %.", "", markdown_table(result["strategies"]), ""]
        else:
            parts += ["No public targets on this split: submission files only.", ""]
        for group, rows in result.get("groups", {}).items():
            if rows:
                parts += [f"### {group}", "", markdown_table(rows), ""]
        if any(result.get("tuned", {}).values()):
            parts += ["### parameters", "", "```json", json.dumps(result["tuned"], indent=1), "```", ""]
    elif "strategies" in result:
        parts += [verdict(result["strategies"]), ""]
        queries = result.get("queries", {})
        parts += [f"Test half: {queries.get('test_overall', queries.get('test', '?'))} queries "
                  f"(parameters tuned on {queries.get('dev', '?')} dev queries). Recall and mAP in %.", "",
                  markdown_table(result["strategies"]), ""]
        for group, rows in result.get("groups", {}).items():
            parts += [f"### changed: {group}", "", markdown_table(rows), ""]
        if result.get("tuned"):
            parts += ["### tuned parameters", "", "```json", json.dumps(result["tuned"], indent=1), "```", ""]
    else:
        rows = {direction: result[direction] for direction in ("t2i", "i2t") if direction in result}
        parts += [markdown_table(rows), ""]
    if result.get("submissions"):
        parts += ["### submission files", "", "```json", json.dumps(result["submissions"], indent=1), "```", ""]
    for note in result.get("notes", []):
        parts.append(f"- {note}")
    return "\n".join(parts).rstrip() + "\n"


def protocol_lines(protocol: dict) -> list[str]:
    """The protocol of a run as markdown bullets (every benchmark report starts with them)."""
    labels = {"split": "split", "category": "category", "gallery": "gallery images", "queries": "queries scored",
              "reference": "reference image", "ranking": "ranking", "depth": "results per query",
              "settings": "settings", "empty_text_queries": "queries with an empty text (ranked by their reference image)",
              "comparable_with_papers": "comparable with the papers' tables"}
    return [f"- **{label}**: {protocol[key]}" for key, label in labels.items() if protocol.get(key) is not None]


PLOTS_HINT = "no plot: matplotlib is not installed (pip install 'opensearch-cir[plots]' for the PNG)"


def plots_available() -> bool:
    """Whether matplotlib (the `plots` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(result: dict, path: Path) -> None:
    """Bar chart of Recall@K (and mAP@10 when present) per strategy, plus tuning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.get("strategies") or result.get("rows") or {d: result[d] for d in ("t2i", "i2t") if d in result}
    metric_names = [m for m in next(iter(rows.values())) if m.startswith(("recall@", "map@", "success@"))]
    curves = {k: v for k, v in result.get("tuning", {}).items() if v and isinstance(v[0][0], (int, float))}
    figure, axes = plt.subplots(1, 2 if curves else 1, figsize=(13 if curves else 8, 4.5), squeeze=False)
    bars = axes[0][0]
    width = 0.8 / max(len(metric_names), 1)
    for i, metric in enumerate(metric_names):
        bars.bar([x + i * width for x in range(len(rows))], [100 * (rows[r][metric] or 0) for r in rows], width, label=metric)
    bars.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], list(rows), rotation=30, ha="right")
    bars.set_ylabel("%")
    bars.set_title(result.get("benchmark", ""))
    bars.legend(fontsize=8)
    if curves:
        tuning = axes[0][1]
        for name, curve in curves.items():
            tuning.plot([p[0] for p in curve], [100 * p[1] for p in curve], marker="o", label=name)
        tuning.set_xlabel("parameter value")
        tuning.set_ylabel(f"dev {result.get('tuning_metric', '')} (%)")
        tuning.set_title("tuning on dev queries")
        tuning.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(result: dict, out_dir: Path, name: str) -> dict[str, Path]:
    """Write `<name>.json`, `<name>.md` and, when matplotlib is installed and there is something to
    plot, `<name>.png` into `out_dir` (no "plot" key otherwise: see PLOTS_HINT)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json", "markdown": out_dir / f"{name}.md"}
    paths["json"].write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    paths["markdown"].write_text(render_markdown(result))
    has_rows = bool(result.get("strategies")) or any(d in result for d in ("t2i", "i2t"))
    if has_rows and plots_available():
        paths["plot"] = out_dir / f"{name}.png"
        plot(result, paths["plot"])
    return paths


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
