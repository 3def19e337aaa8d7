"""Engines: where documents are stored and queries run.

`connect(url)` returns an object with the subset of the opensearch-py `OpenSearch` client that the
rest of the package uses, whether it talks to a cluster or runs the embedded engine:

    client.indices.create(index=, body=)        client.indices.delete(index=)
    client.indices.exists(index=)               client.indices.refresh(index=)
    client.indices.put_index_template(name=, body=)
    client.indices.get_mapping(index=)
    client.bulk(body=, index=None, refresh=None) client.index(index=, body=, id=None, refresh=None)
    client.get(index=, id=)                     client.delete(index=, id=)
    client.count(index=, body=None)
    client.search(index=, body=, params={"search_pipeline": NAME})
    client.search_pipeline.put(id=, body=)  .get(id=)  .delete(id=)

Responses have OpenSearch's shapes (`took`, `hits.total`, `hits.hits[]._id/_score/_source`, bulk
`errors` and per-item `status`); failures raise `opensearch_cir.errors.EngineError` for the embedded
engine and opensearch-py's `TransportError` subclasses for a cluster (both carry an HTTP status).
Everything above this package uses only that interface.
"""

from __future__ import annotations

from typing import Any

EMBEDDED_SCHEME = "embedded://"


def connect(url: str | None = None, **options: Any):
    """Connect to `embedded:///path/to/dir` (the offline engine) or `https://host:9200` (a cluster).

    With no URL, `OPENSEARCH_URL` is used when set, else the embedded engine in `./cir-data`.
    Cluster options (user, password, ca_certs, verify_certs, aws_region, ...) are passed to
    `opensearch_cir.engines.opensearch.connect`.
    """
    import os

    url = url or os.environ.get("OPENSEARCH_URL") or f"{EMBEDDED_SCHEME}./cir-data"
    if url.startswith(EMBEDDED_SCHEME):
        from .embedded import EmbeddedClient

        options.pop("opensearch_version", None)  # the embedded engine follows its own (3.x) rules
        return EmbeddedClient(url[len(EMBEDDED_SCHEME):], **options)
    from .opensearch import connect as connect_cluster

    return connect_cluster(url, **options)
