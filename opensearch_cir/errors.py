"""Typed errors. Every error says what went wrong and, where possible, what to do about it."""


class CIRError(Exception):
    """Base class of all errors raised by opensearch-cir."""


class ModelNotFoundError(CIRError):
    """No exported model at the given location."""


class ManifestError(CIRError):
    """A model manifest is missing fields, malformed, or its files do not match their checksums."""


class InputError(CIRError, ValueError):
    """Bad user input (an image that cannot be decoded, an empty query, ...)."""


class ImageDecodeError(InputError):
    """A file or byte string is not a decodable image (corrupt, truncated, empty, not an image)."""


class ImageTooLargeError(InputError):
    """An image has more pixels than the configured cap (decompression-bomb protection)."""


class UnsupportedQueryError(CIRError):
    """The embedded engine was given a query clause or option it does not implement."""


class EngineError(CIRError):
    """An engine (embedded or OpenSearch) refused or failed a request. `status` mirrors HTTP."""

    def __init__(self, message: str, status: int = 400, error_type: str = "engine_exception"):
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class IndexMismatchError(CIRError):
    """An index was built with another model (vector dimension or model id differs)."""


class BodyValidationError(CIRError):
    """A request body does not conform to the OpenSearch API spec or to our stricter rules."""


class IngestInterruptedError(CIRError):
    """Ingestion stopped because the engine stayed unreachable; re-run with `--resume` to go on."""
