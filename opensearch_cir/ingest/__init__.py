"""Ingestion: images (+ captions, metadata) from folders, manifests or your own code into an index.

    from opensearch_cir.ingest import Ingestor, Record
    with Ingestor(client, "cir-products", encoder, errors="errors.jsonl") as ingestor:
        ingestor.add(Record("shoe.jpg", captions=["red sneaker"], metadata={"brand": "x"}))
    print(ingestor.report.summary())

or `ingest(client, index, encoder, "folder/" | "manifest.jsonl" | iterable, **options)`.
"""

from .documents import mean_caption_vectors
from .ingestor import Ingestor, ingest
from .records import Record
from .report import Failure, IngestReport
from .sources import BadRow, iter_directory, iter_manifest, open_source
from .writer import BulkWriter, Document

__all__ = [
    "BadRow",
    "BulkWriter",
    "Document",
    "Failure",
    "IngestReport",
    "Ingestor",
    "Record",
    "ingest",
    "iter_directory",
    "iter_manifest",
    "mean_caption_vectors",
    "open_source",
]
