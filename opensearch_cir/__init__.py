"""opensearch-cir: composed image retrieval for OpenSearch, with an embedded offline engine."""

__version__ = "0.1.0"
