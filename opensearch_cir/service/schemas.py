"""Request and response bodies of the service (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    engine: str
    index: str
    index_exists: bool
    documents: int | None = None
    model_id: str | None = None
    dimension: int | None = None
    strategies: list[str] = Field(default_factory=list, description="Strategies /search accepts.")
    default_strategy: str | None = None
    problem: str | None = Field(None, description="What is wrong when the status is degraded.")


ML_COMMONS_ABSENT = "null"


class EmbedRequest(BaseModel):
    """ml-commons remote-connector input: a text, a base64 image, or both.

    What ml-commons really sends for an absent input: JSON null or a missing key, and for an absent
    *text* next to an image the string "null" (neural-search MLCommonsClientAccessor puts a null
    list element, ml-commons StringUtils.convertScriptStringToJsonString gson-serialises it, and
    HttpConnector substitutes it inside quotes). All three, and an empty string, mean "not given":
    the literal text "null" cannot be embedded through a connector.
    """

    inputText: str | None = Field(None, description='Text to embed ("null", "" or null: none).')
    inputImage: str | None = Field(None, description='Base64 image (a data: URL prefix is accepted; "null", "" or null: none).')

    @field_validator("inputText", "inputImage", mode="after")
    @classmethod
    def _absent(cls, value: str | None) -> str | None:
        return None if value is None or value.strip() in ("", ML_COMMONS_ABSENT) else value


class EmbedResponse(BaseModel):
    embedding: list[float]


class SearchResult(BaseModel):
    id: str
    score: float
    caption: str | None = None
    image_url: str | None = Field(None, description="Where the page can load the image (GET /images/{id}).")
    image_uri: str | None = Field(None, description="The image location recorded at ingestion.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, float | None] | None = Field(None, description="Score of each sub-query (with explain).")


class SearchResponse(BaseModel):
    took_ms: float = 0.0
    strategy: str
    total: int
    results: list[SearchResult]
    query: dict[str, Any] = Field(default_factory=dict, description="The interpreted query (texts, weights).")


class IngestItem(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    name: str
    status: Literal["indexed", "skipped", "failed"]
    id: str | None = None
    error: str | None = None


class IngestResponse(BaseModel):
    indexed: int
    failed: int
    items: list[IngestItem]
