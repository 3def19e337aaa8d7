"""A cluster client: opensearch-py's `OpenSearch`, configured from a URL and the environment.

TLS certificates are verified unless `verify_certs=False` or `OPENSEARCH_VERIFY_CERTS=false`
(demo clusters with self-signed certificates only). Credentials come from the arguments or
`OPENSEARCH_USER` / `OPENSEARCH_PASSWORD` (or user:password in the URL), CA certificates from
`ca_certs` or `OPENSEARCH_CA_CERTS`; `aws_region` switches to AWS SigV4 signing (opensearch-py's
`AWSV4SignerAuth`, credentials from boto3's default chain). `opensearch_version` (or
`CIR_OPENSEARCH_VERSION`) fixes the version whose request rules are used instead of asking `GET /`
(`opensearch_cir.dialect`); OpenSearch Serverless (`aws_service="aoss"`, `*.aoss.amazonaws.com`) has no
`GET /` version and needs it. Requests that fail with 429, 502, 503,
504, a timeout or a dropped connection are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from opensearchpy import OpenSearch, RequestsHttpConnection, Transport

from ..dialect import Dialect

RETRY_ON_STATUS = (429, 502, 503, 504)
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5


class BackoffTransport(Transport):
    """opensearch-py's Transport, sleeping `backoff_base * 2**attempt` (± jitter, capped) before each retry.

    opensearch-py retries at once; a cluster answering 429 needs time to drain its queues.
    """

    backoff_base = 0.5
    backoff_cap = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._attempts = threading.local()

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        self._attempts.count = 0
        return super().perform_request(*args, **kwargs)

    def mark_dead(self, connection: Any) -> None:
        super().mark_dead(connection)
        attempt = getattr(self._attempts, "count", 0)
        self._attempts.count = attempt + 1
        delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
        time.sleep(delay * random.uniform(0.5, 1.0))


def connect(
    url: str,
    user: str | None = None,
    password: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool | None = None,
    aws_region: str | None = None,
    aws_service: str = "es",
    timeout: float = DEFAULT_TIMEOUT,
    max_retries: int = DEFAULT_MAX_RETRIES,
    opensearch_version: str | None = None,
    **options: Any,
) -> OpenSearch:
    """An opensearch-py client for the cluster at `url` (e.g. `https://localhost:9200`).

    aws_service: "es" for Amazon OpenSearch Service, "aoss" for OpenSearch Serverless.
    Extra keyword options are passed to `opensearchpy.OpenSearch`.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an OpenSearch URL: {url!r} (expected http(s)://host[:port])")
    user = user or (unquote(parts.username) if parts.username else None) or os.environ.get("OPENSEARCH_USER")
    password = (
        password or (unquote(parts.password) if parts.password else None) or os.environ.get("OPENSEARCH_PASSWORD")
    )
    ca_certs = ca_certs or os.environ.get("OPENSEARCH_CA_CERTS")
    if verify_certs is None:
        verify_certs = os.environ.get("OPENSEARCH_VERIFY_CERTS", "true").strip().lower() not in ("false", "0", "no")
    use_ssl = parts.scheme == "https"
    host = {"host": parts.hostname, "port": parts.port or (443 if use_ssl else 80), "scheme": parts.scheme}
    if parts.path.strip("/"):
        host["url_prefix"] = parts.path.strip("/")

    settings: dict[str, Any] = {
        "hosts": [host],
        "use_ssl": use_ssl,
        "verify_certs": verify_certs,
        "ssl_show_warn": verify_certs,
        "timeout": timeout,
        "max_retries": max_retries,
        "retry_on_status": RETRY_ON_STATUS,
        "retry_on_timeout": True,
        "transport_class": BackoffTransport,
        "http_compress": True,
    }
    if ca_certs:
        settings["ca_certs"] = ca_certs
    if aws_region:
        settings["http_auth"] = _aws_auth(aws_region, aws_service)
        settings["connection_class"] = RequestsHttpConnection
    elif user:
        settings["http_auth"] = (user, password or "")
    settings.update(options)
    client = OpenSearch(**settings)
    client.cir_serverless = aws_service == "aoss" or parts.hostname.endswith(".aoss.amazonaws.com")
    if opensearch_version:
        client.cir_dialect = Dialect.of(opensearch_version, "aoss" if client.cir_serverless else "opensearch")
    return client


def _aws_auth(region: str, service: str):
    from opensearchpy import AWSV4SignerAuth

    try:
        import boto3
    except ImportError as exc:
        raise ImportError("AWS SigV4 signing needs boto3: pip install boto3 (or 'opensearch-cir[aws]')") from exc
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ValueError("no AWS credentials found (environment, ~/.aws or instance role)")
    return AWSV4SignerAuth(credentials, region, service)
