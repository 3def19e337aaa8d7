"""Request limits enforced before a handler sees the request: body size and wall-clock time.

Both are plain ASGI middlewares so that they also cover streamed (chunked) bodies and the
multipart parser, which reads the body before any handler runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLarge(HTTPException):
    """Raised from `receive` so that FastAPI's body parsing turns it into a 413 response."""

    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail)


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


class _Response:
    """Passes messages to `send` and notes whether the response has started (then it is too late
    for a middleware to answer instead)."""

    def __init__(self, send: Send):
        self._send = send
        self.started = False

    async def send(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


class BodySizeLimit:
    """Answer 413 when a request body is larger than `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (f"request body is larger than the limit of {self.max_bytes} bytes; "
                "send fewer or smaller images per request (CIR_MAX_REQUEST_BYTES)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, self._message())
            return
        received = 0
        response = _Response(send)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self._message())
            return message

        try:
            await self.app(scope, counting_receive, response.send)
        except _BodyTooLarge:
            if not response.started:
                await _send_json(send, 413, self._message())


class RequestTimeout:
    """Answer 504 when a request takes longer than `seconds` (the work itself is abandoned)."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.seconds:
            await self.app(scope, receive, send)
            return
        response = _Response(send)
        try:
            await asyncio.wait_for(self.app(scope, receive, response.send), self.seconds)
        except asyncio.TimeoutError:
            if not response.started:
                await _send_json(send, 504, f"request took longer than {self.seconds:g} s (CIR_REQUEST_TIMEOUT_S); "
                                            "try a smaller k or fewer images")


class UnexpectedErrors:
    """Answer 500 with a JSON body for an error no handler knows, without re-raising it: the server
    then keeps the keep-alive connection instead of resetting it (Starlette's own error middleware
    re-raises, and uvicorn closes the connection)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _Response(send)
        try:
            await self.app(scope, receive, response.send)
        except HTTPException:
            raise
        except Exception as exc:
            log.error("request failed: %s", exc, exc_info=exc)
            if response.started:
                raise
            await _send_json(send, 500, f"internal error ({type(exc).__name__}); this is a bug of the service, "
                                        "not of the request: please report it")
