"""A loopback stand-in for an OpenSearch cluster of one version (2.19 .. 3.3), for tests only.

`StandinCluster("2.19.0", folder)` serves HTTP on 127.0.0.1: `GET /` answers the version, `_cat/plugins`
the plugins, and the REST calls the package makes are stored and run by the embedded engine. Before
that, every body is held to what that version's plugins accept, written here independently of
`opensearch_cir.dialect` from the upstream sources (opensearch-project/<repo> at tag X.Y.Z.0):

- neural-search query/HybridQueryBuilder.java: `filter` inside `hybrid` from 3.0 (else 400);
- neural-search processor/normalization/ScoreNormalizationFactory.java: z_score from 3.0;
  MinMaxScoreNormalizationTechnique.java: lower_bounds from 3.0, upper_bounds from 3.2;
- neural-search processor/factory/RRFProcessorFactory.java: before 3.1 `combination.parameters` are the
  rank normaliser's (rank_constant only; a `rank_constant` beside technique is ignored); from 3.1
  rank_constant sits beside technique and parameters take weights only;
- neural-search processor/factory/TextImageEmbeddingProcessorFactory.java: skip_existing from 3.0
  (core rejects processor parameters a factory did not read);
- ml-commons HttpConnector.java / HttpJsonConnectorExecutor.java: predict renders the connector's
  request_body (fillNullParameters, `${parameters.*}`), sends its headers with `${credential.*}`
  filled, and treats client_config timeouts as seconds.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.errors import EngineError

PLUGINS = ("opensearch-knn", "opensearch-neural-search", "opensearch-ml")
PROCESSOR_KEYS = {"model_id", "embedding", "field_map", "description", "tag", "if", "ignore_failure", "on_failure"}


class Refused(Exception):
    def __init__(self, reason: str, status: int = 400, error_type: str = "illegal_argument_exception"):
        super().__init__(reason)
        self.status, self.error_type = status, error_type


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


class VersionRules:
    """What one version's plugins accept (see the module docstring for the upstream files)."""

    def __init__(self, version: str):
        self.version = _version(version)

    def search(self, body: dict) -> None:
        hybrid = (body.get("query") or {}).get("hybrid")
        if isinstance(hybrid, dict):
            allowed = {"queries", "pagination_depth", "boost", "_name"} | ({"filter"} if self.version >= (3, 0) else set())
            for key in hybrid:
                if key not in allowed:
                    raise Refused(f"[hybrid] query does not support [{key}]", error_type="parsing_exception")

    def search_pipeline(self, body: dict) -> dict:
        """The pipeline as the embedded engine should run it (3.1+ RRF layout), or Refused."""
        body = json.loads(json.dumps(body))
        for processor in body.get("phase_results_processors", []):
            for name, config in processor.items():
                combination = config.setdefault("combination", {})
                parameters = combination.get("parameters") or {}
                if name == "score-ranker-processor":
                    self._rrf(combination, parameters)
                elif name == "normalization-processor":
                    self._normalization(config.get("normalization") or {})
        return body

    def _rrf(self, combination: dict, parameters: dict) -> None:
        if self.version >= (3, 1):
            if set(parameters) - {"weights"}:
                raise Refused("provided parameter for combination technique is not supported. supported parameters are [weights]")
            return
        if set(parameters) - {"rank_constant"}:
            raise Refused("provided parameter for combination technique is not supported. supported parameters are [rank_constant]")
        combination.pop("rank_constant", None)  # read only from parameters before 3.1: silently ignored
        rank_constant = parameters.get("rank_constant")
        combination.pop("parameters", None)
        if rank_constant is not None:
            combination["rank_constant"] = rank_constant

    def _normalization(self, normalization: dict) -> None:
        techniques = {"min_max", "l2"} | ({"z_score"} if self.version >= (3, 0) else set())
        if normalization.get("technique", "min_max") not in techniques:
            raise Refused("provided normalization technique is not supported")
        bounds = set(normalization.get("parameters") or {})
        allowed = ({"lower_bounds"} if self.version >= (3, 0) else set()) | ({"upper_bounds"} if self.version >= (3, 2) else set())
        if bounds - allowed:
            raise Refused("unrecognized parameters in normalization technique")

    def ingest_pipeline(self, body: dict) -> None:
        allowed = PROCESSOR_KEYS | ({"skip_existing"} if self.version >= (3, 0) else set())
        for processor in body.get("processors", []):
            config = processor.get("text_image_embedding")
            if config is not None and set(config) - allowed:
                raise Refused("processor [text_image_embedding] doesn't support one or more provided configuration "
                              f"parameters {sorted(set(config) - allowed)}", error_type="parse_exception")


class StandinCluster:
    """An HTTP server on 127.0.0.1 (`url`) acting as an OpenSearch cluster of `version`."""

    def __init__(self, version: str, folder: Path):
        self.version = version
        self.rules = VersionRules(version)
        self.engine = EmbeddedClient(folder)
        self.search_pipelines: dict[str, dict] = {}
        self.ingest_pipelines: dict[str, dict] = {}
        self.connectors: dict[str, dict] = {}
        self.models: dict[str, str] = {}  # model id -> connector id
        self.requests: list[tuple[str, str]] = []
        self.refusals: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "StandinCluster":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.engine.close()

    def _handler(self):
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                cluster.requests.append((self.command, parts.path))
                try:
                    status, payload = cluster.route(self.command, parts.path, params, raw)
                except Refused as exc:
                    cluster.refusals.append(str(exc))
                    status, payload = exc.status, {"error": {"type": exc.error_type, "reason": str(exc)}, "status": exc.status}
                except EngineError as exc:
                    status, payload = exc.status, {"error": {"type": exc.error_type, "reason": str(exc)}, "status": exc.status}
                data = b"" if self.command == "HEAD" else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

        return Handler

    # -- routes -------------------------------------------------------------------------------------

    def route(self, method: str, path: str, params: dict, raw: bytes) -> tuple[int, Any]:
        body = json.loads(raw) if raw and not path.endswith("_bulk") else None
        parts = [p for p in path.split("/") if p]
        engine = self.engine
        if not parts:
            return 200, {"name": "standin", "cluster_name": "standin", "tagline": "The OpenSearch Project: https://opensearch.org/",
                         "version": {"distribution": "opensearch", "number": self.version}}
        if parts == ["_cat", "plugins"]:
            return 200, [{"name": "node-1", "component": name, "version": f"{self.version}.0"} for name in PLUGINS]
        if parts[0] == "_index_template":
            return 200, engine.indices.put_index_template(name=parts[1], body=body)
        if parts[0] == "_search" and parts[1] == "pipeline":
            return self._search_pipeline(method, parts[2], body)
        if parts[:2] == ["_ingest", "pipeline"]:
            self.rules.ingest_pipeline(body)
            self.ingest_pipelines[parts[2]] = body
            return 200, {"acknowledged": True}
        if parts[0] == "_plugins" and parts[1] == "_ml":
            return self._ml(parts[2:], params, body)
        if parts[-1] == "_bulk":
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            return 200, engine.bulk(body=lines, index=parts[0] if len(parts) > 1 else None, refresh=params.get("refresh"))
        index = parts[0]
        if len(parts) == 1:
            if method == "HEAD":
                return (200 if engine.indices.exists(index=index) else 404), {}
            if method == "PUT":
                return 200, engine.indices.create(index=index, body=body)
        action = parts[1]
        if action == "_mapping":
            if method == "PUT":
                return 200, engine.indices.put_mapping(index=index, body=body)
            return 200, engine.indices.get_mapping(index=index)
        if action == "_refresh":
            return 200, engine.indices.refresh(index=index)
        if action == "_search":
            self.rules.search(body or {})
            return 200, engine.search(index=index, body=body, params={k: v for k, v in params.items() if k == "search_pipeline"})
        if action == "_count":
            return 200, engine.count(index=index, body=body)
        if action == "_doc":
            if method == "GET":
                return 200, engine.get(index=index, id=parts[2])
            return 200, engine.index(index=index, id=parts[2] if len(parts) > 2 else None, body=body, refresh=params.get("refresh"))
        raise Refused(f"stand-in: no route for {method} {path}", 405, "unsupported_operation")

    def _search_pipeline(self, method: str, name: str, body: dict | None) -> tuple[int, Any]:
        if method == "GET":
            if name not in self.search_pipelines:
                return 404, {}
            return 200, {name: self.search_pipelines[name]}
        runnable = self.rules.search_pipeline(body)
        self.engine.search_pipeline.put(id=name, body=runnable)
        self.search_pipelines[name] = body
        return 200, {"acknowledged": True}

    def _ml(self, parts: list[str], params: dict, body: dict | None) -> tuple[int, Any]:
        if parts == ["connectors", "_create"]:
            connector_id = f"connector-{len(self.connectors) + 1}"
            self.connectors[connector_id] = body
            return 200, {"connector_id": connector_id}
        if parts == ["models", "_register"]:
            if body.get("connector_id") not in self.connectors:
                raise Refused("connector not found")
            model_id = f"model-{len(self.models) + 1}"
            self.models[model_id] = body["connector_id"]
            return 200, {"task_id": f"task-{model_id}", "status": "CREATED"}
        if parts[0] == "tasks":
            return 200, {"state": "COMPLETED", "model_id": parts[1].removeprefix("task-")}
        if parts[0] == "_predict":
            return 200, self.predict(parts[2], body["parameters"])
        raise Refused(f"stand-in: no ml route {parts}", 405, "unsupported_operation")

    def predict(self, model_id: str, parameters: dict) -> dict:
        """What ml-commons' HttpJsonConnectorExecutor sends for a remote model, and its answer."""
        connector = self.connectors[self.models[model_id]]
        action = connector["actions"][0]
        payload = action["request_body"]
        for name in re.findall(r'"\$\{parameters\.(\w+):-null}"', payload):  # HttpConnector.fillNullParameters
            if parameters.get(name) is None:
                payload = payload.replace(f'"${{parameters.{name}:-null}}"', "null")
        for name, value in parameters.items():
            text = value if isinstance(value, str) else json.dumps(value)  # gson for non-strings: null -> "null"
            payload = re.sub(r"\$\{parameters\." + name + r"(:-null)?\}", lambda _: text.replace("\\", "\\\\"), payload)
        headers = {key: re.sub(r"\$\{credential\.(\w+)\}", lambda m: connector["credential"][m.group(1)], value)
                   for key, value in action["headers"].items()}
        timeout = connector["client_config"]["read_timeout"]  # seconds
        if timeout > 600:
            raise Refused(f"read_timeout {timeout} s: ml-commons reads client_config timeouts as seconds")
        request = urllib.request.Request(action["url"], data=payload.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                embedding = json.loads(response.read())["embedding"]
        except urllib.error.HTTPError as exc:
            raise Refused(f"Error from remote service: {exc.code} {exc.read().decode()[:200]}", exc.code, "status_exception")
        return {"inference_results": [{"output": [{"name": "sentence_embedding", "data_type": "FLOAT32",
                                                   "shape": [len(embedding)], "data": embedding}]}]}
