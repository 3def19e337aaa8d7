"""The FastAPI application: composed search, the ml-commons embedding contract, ingestion, images.

`create_app(settings)` builds one instance; `uvicorn` serves it (`cir serve`). The web page under
`/` talks only to these endpoints, so it works the same with the embedded engine and OpenSearch.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, File, Form, Request, Security, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .. import __version__
from ..compose import STRATEGIES, CompositeQuery
from ..compose.query import DecodedImage, available_strategies
from ..errors import InputError
from ..ingest.records import local_path
from . import handlers, schemas
from .backend import Backend
from .health import CachedProbe
from .inputs import check_form_fields, check_remote_url, clean_text, decode_base64, decode_image, parse_json, read_upload
from .limits import BodySizeLimit, RequestTimeout, UnexpectedErrors
from .operations import compose_embedding, run_ingest, run_search
from .sessions import add_routes as add_session_routes
from .settings import Settings
from .workers import Workers, release_heap_after

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
API_KEY_HEADER = "X-API-Key"


def create_app(settings: Settings | None = None, *, client: Any = None, encoder: Any = None) -> FastAPI:
    """A service instance; `client` and `encoder` replace the ones `settings` would create."""
    settings = settings or Settings.from_env()
    backend = Backend(settings, client=client, encoder=encoder)
    workers = Workers(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await workers.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="opensearch-cir",
        version=__version__,
        description="Composed image retrieval: search with a reference image plus a modification text, "
        "on OpenSearch or the embedded engine. The web page is at `/`.",
        docs_url=None,  # served below from packaged assets, so the docs work offline
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.backend = backend
    app.state.workers = workers
    handlers.install(app)
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)

    require_key = _api_key_dependency(settings)
    _add_routes(app, backend, require_key, workers)
    add_session_routes(app, backend, [Depends(require_key)],
                       lambda uploads, urls, settings: _reference_images(uploads, urls, settings, workers, backend.encoder))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with the assets of the `fastapi-swagger` package (no CDN)."""
    from importlib import resources

    assets = resources.files("fastapi_swagger") / "resources"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _api_key_dependency(settings: Settings):
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description="Needed when the service is started with an API key (CIR_API_KEY).")

    async def require_key(key: str | None = Security(header)) -> None:  # async: no thread-pool hop per request
        if settings.api_key and not (key and secrets.compare_digest(key, settings.api_key)):
            raise HTTPException(401, f"missing or wrong API key: send it in the {API_KEY_HEADER} header")

    return require_key


def _add_routes(app: FastAPI, backend: Backend, require_key, workers: Workers) -> None:
    settings = backend.settings
    protected = [Depends(require_key)]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health", response_model=schemas.Health, tags=["service"])
    async def health() -> schemas.Health:
        """Whether the engine answers and the index exists, and which model the service uses
        (measured at most a second earlier, so that the answer never waits for busy searches)."""
        return await health_probe.get()

    def probe_health() -> schemas.Health:
        engine_ok, index_exists, documents, problem = True, False, None, None
        try:
            client = backend.client
            index_exists = bool(client.indices.exists(index=settings.index))
            if index_exists:
                documents = int(client.count(index=settings.index)["count"])
        except Exception as exc:  # health reports failures instead of raising them
            engine_ok, problem = False, f"engine: {exc}"
        model_id = dim = None
        strategies = list(STRATEGIES)
        try:
            model_id, dim = backend.encoder.model_id, backend.encoder.dim
            strategies = available_strategies(backend.encoder)
        except Exception as exc:
            problem = (problem + "; " if problem else "") + f"model: {exc}"
        status = "ok" if engine_ok and index_exists and model_id else "degraded"
        return schemas.Health(status=status, version=__version__, engine=_public_url(settings.engine_url),
                              index=settings.index, index_exists=index_exists, documents=documents,
                              model_id=model_id, dimension=dim, strategies=strategies,
                              default_strategy=CompositeQuery.strategy, problem=problem)

    health_probe = CachedProbe(probe_health)

    @app.post("/embed", response_model=schemas.EmbedResponse, dependencies=protected, tags=["ml-commons"])
    async def embed(request: schemas.EmbedRequest) -> schemas.EmbedResponse:
        """The ml-commons remote-connector contract: text, image (base64) or both → one vector.

        Both given: the composed vector of weighted fusion, `norm((1 − α)·E_I(image) + α·E_T(text))`,
        with α the `fusion` strategy's default.
        """
        text = clean_text(request.inputText, "inputText", settings)
        image = None
        if request.inputImage:
            data = decode_base64(request.inputImage, "inputImage", settings)
            image = await workers.decode(_decoded, data, "inputImage", settings, backend.encoder)
        if text is None and image is None:
            raise InputError("give inputText, inputImage (base64) or both")
        vector = await workers.run(compose_embedding, backend.encoder, text, image)
        return schemas.EmbedResponse(embedding=[float(x) for x in vector])

    @app.get("/images/{doc_id}", dependencies=protected, tags=["search"],
             responses={200: {"content": {"image/*": {}}}, 307: {"description": "redirect to a remote image"}})
    def image(doc_id: str):
        """The image of an indexed document: a local file under a media root, or a redirect to its URL."""
        source = backend.client.get(index=settings.index, id=doc_id)["_source"]
        uri = str(source.get("image_uri") or "")
        if uri.startswith(("http://", "https://")):
            return RedirectResponse(uri, status_code=307)
        path = _servable_path(uri, settings)
        if path is None:
            raise HTTPException(404, f"document {doc_id} has no image this service may serve "
                                     "(local files are served only under CIR_MEDIA_ROOTS or the upload folder)")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})

    @app.post("/search", response_model=schemas.SearchResponse, dependencies=protected, tags=["search"])
    async def search(
        request: Request,
        images: list[UploadFile] | None = File(None, description="Reference image(s)."),
        image_url: list[str] | None = Form(None, description="Reference image URL(s) (allow-listed prefixes only)."),
        reference_id: list[str] | None = Form(None, description="Ids of indexed documents to use as reference."),
        text: str | None = Form(None, description="Modification text, or the whole query when no reference."),
        negative_text: str | None = Form(None, description="What the results should not show."),
        filters: str | None = Form(None, description='JSON object of exact-match filters, e.g. {"metadata.colour": "red"}.'),
        strategy: str | None = Form(None, description="Composition strategy (default: the service's)."),
        weights: str | None = Form(None, description="JSON object of weights of the strategy's parts."),
        k: int = Form(10, ge=1, description="Number of results."),
        explain: bool = Form(False, description="Return the score of every sub-query per result."),
        rerank: str | None = Form(None, description="Rerankers after the strategy, comma separated: "
                                  "exact, intersection, expansion, clauses (name:blend=0.5 for options)."),
    ) -> schemas.SearchResponse:
        """Composed search: reference image(s) and/or text, with negatives, filters and a strategy."""
        started = time.perf_counter()
        check_form_fields(await request.form(), SEARCH_FIELDS)
        if k > settings.max_k:
            raise InputError(f"k: {k} is more than the limit of {settings.max_k}")
        references = await _reference_images(images or [], image_url or [], settings, workers, backend.encoder)
        query = dict(
            images=references,
            reference_ids=[ref for ref in (reference_id or []) if ref.strip()],
            text=clean_text(text, "text", settings),
            negative_text=clean_text(negative_text, "negative_text", settings),
            filters=parse_json(filters, "filters", dict),
            strategy=strategy.strip() if strategy and strategy.strip() else None,
            weights=parse_json(weights, "weights", dict),
            k=k,
            explain=explain,
            rerank=rerank,
        )
        if not (query["images"] or query["reference_ids"] or query["text"]):
            raise InputError("empty query: give a reference image, a reference id or a text")
        response = await workers.run(run_search, backend, query, f"{request.base_url}images/")
        response.took_ms = round((time.perf_counter() - started) * 1000, 1)
        return response

    @app.post("/ingest", response_model=schemas.IngestResponse, dependencies=protected, tags=["ingest"])
    async def ingest(
        request: Request,
        files: list[UploadFile] = File(..., description="Images to index."),
        captions: str | None = Form(None, description="JSON list of captions, one per file (null for none)."),
        metadata: str | None = Form(None, description="JSON list of metadata objects, one per file."),
    ) -> schemas.IngestResponse:
        """Index a batch of uploaded images; answers one status per file, in order."""
        check_form_fields(await request.form(), INGEST_FIELDS)
        if len(files) > settings.max_ingest_items:
            raise InputError(f"files: {len(files)} is more than the limit of {settings.max_ingest_items} per request")
        caption_list = _aligned(parse_json(captions, "captions", list), len(files), "captions")
        metadata_list = _aligned(parse_json(metadata, "metadata", list), len(files), "metadata")
        uploads = []
        for position, upload in enumerate(files):
            name = upload.filename or f"file {position}"
            try:
                uploads.append((name, await read_upload(upload, settings), None))
            except InputError as exc:
                uploads.append((name, None, str(exc)))
        return await workers.run(run_ingest, backend, uploads, caption_list, metadata_list)


SEARCH_FIELDS = ("images", "image_url", "reference_id", "text", "negative_text", "filters", "strategy", "weights", "k", "explain", "rerank")
INGEST_FIELDS = ("files", "captions", "metadata")


async def _reference_images(uploads: list[UploadFile], urls: list[str], settings: Settings, workers: Workers,
                            encoder: Any) -> list[DecodedImage]:
    """The uploaded and fetched reference images, each decoded once (off the event loop, a bounded
    number at a time) and preprocessed for `encoder`, so the search does not decode it again."""
    urls = [url.strip() for url in urls if url.strip()]
    uploads = [upload for upload in uploads if upload.filename or upload.size]
    if len(uploads) + len(urls) > settings.max_images_per_query:
        raise InputError(f"at most {settings.max_images_per_query} reference images per query")
    references = []  # (name, bytes) of each image
    for upload in uploads:
        references.append((upload.filename or "image", await read_upload(upload, settings)))
    for url in urls:
        check_remote_url(url, settings)  # refused at once, without waiting for a fetch slot
        references.append((url, await workers.fetch(url)))
    return [await workers.decode(_decoded, data, name, settings, encoder) for name, data in references]


def _decoded(data: bytes, name: str, settings: Settings, encoder: Any) -> DecodedImage:
    """`data` decoded within the service's limits and preprocessed for `encoder`."""
    with decode_image(data, name, settings, encoder.preprocess.draft_scale) as image:
        decoded, pixels = DecodedImage(data, encoder.preprocess(image)), image.width * image.height
    release_heap_after(pixels)
    return decoded


def _aligned(values: list | None, count: int, name: str) -> list:
    if values is None:
        return [None] * count
    if len(values) != count:
        raise InputError(f"{name}: {len(values)} entries for {count} files (give one per file, null for none)")
    return values


def _servable_path(uri: str, settings: Settings) -> Path | None:
    if not uri:
        return None
    path = local_path(uri).resolve()
    roots = [Path(root).resolve() for root in settings.media_roots]
    if settings.resolved_upload_dir is not None:
        roots.append(settings.resolved_upload_dir.resolve())
    if path.is_file() and any(path.is_relative_to(root) for root in roots):
        return path
    return None


def _public_url(url: str) -> str:
    """The engine URL without credentials."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
