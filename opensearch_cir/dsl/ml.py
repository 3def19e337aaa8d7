"""ml-commons bodies: a remote connector to our encoder service, the model registration over it,
and the ingest pipeline that lets OpenSearch embed at ingest (`text_image_embedding`).

The JSON files in `index_templates/ml/` are usable with curl after replacing their `${CIR_...}`
placeholders (`envsubst` works); `render()` does the same substitution in Python and leaves
ml-commons' own `${parameters...}` / `${credential...}` placeholders alone.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

from ..dialect import Dialect, latest
from ..resources import index_templates_dir

ML_DIR = "ml"
CONNECTOR_FILE = "encoder-connector.json"
MODEL_REGISTER_FILE = "model-register.json"
INGEST_PIPELINE_FILE = "ingest-pipeline.json"
INGEST_PIPELINE_ID = "cir-embed"
DEFAULT_MODEL_NAME = "opensearch-cir-encoder"

_PLACEHOLDER = re.compile(r"\$\{(CIR_[A-Z0-9_]+)\}")


def render(file_name: str, values: Mapping[str, str]) -> dict:
    """Load `index_templates/ml/<file_name>` with every `${CIR_NAME}` replaced by `values[CIR_NAME]`."""
    text = (index_templates_dir() / ML_DIR / file_name).read_text()
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise KeyError(f"{file_name} needs values for {', '.join(missing)}")
    body = json.loads(text)
    return _substitute(body, values)


def _substitute(node, values: Mapping[str, str]):
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, values) for value in node]
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), node)
    return node


def connector_body(encoder_url: str, *, model_name: str = DEFAULT_MODEL_NAME, api_key: str = "none") -> dict:
    """`POST /_plugins/_ml/connectors/_create` body pointing at `{encoder_url}/embed`."""
    return render(
        CONNECTOR_FILE,
        {"CIR_ENCODER_URL": encoder_url.rstrip("/"), "CIR_MODEL_NAME": model_name, "CIR_ENCODER_API_KEY": api_key},
    )


def model_register_body(connector_id: str, *, model_name: str = DEFAULT_MODEL_NAME) -> dict:
    """`POST /_plugins/_ml/models/_register?deploy=true` body for the remote model."""
    return render(MODEL_REGISTER_FILE, {"CIR_CONNECTOR_ID": connector_id, "CIR_MODEL_NAME": model_name})


def ingest_pipeline_body(model_id: str, dialect: Dialect | None = None) -> dict:
    """`PUT /_ingest/pipeline/cir-embed` body: `image_base64` -> image_vector, caption -> caption_vector.

    Before 3.0 `text_image_embedding` rejects `skip_existing` (neural-search
    TextImageEmbeddingProcessorFactory.java): it is dropped, so every document is embedded again.
    """
    body = render(INGEST_PIPELINE_FILE, {"CIR_MODEL_ID": model_id})
    if not (dialect or latest()).supports("skip_existing"):
        for processor in body["processors"]:
            processor.get("text_image_embedding", {}).pop("skip_existing", None)
    return body
