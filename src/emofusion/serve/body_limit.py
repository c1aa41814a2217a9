"""Request bodies bounded while they stream: a body over its limit is refused with 413 as soon as
the limit is crossed, whether the client declared a Content-Length or sent it chunked.

Upload routes may carry up to the upload limit (plus room for the multipart framing and small
fields); every other route takes small JSON or form bodies only.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

# multipart boundaries, part headers and small fields (options, text, callback_url) beside the files
FORM_OVERHEAD_BYTES = 1024 * 1024
# sign-up, log-in, key names: nothing else is sent to a route that takes no upload
SMALL_BODY_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body crosses its limit; rendered as 413 `payload_too_large`,
    and the connection is closed rather than the rest of the body read."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than the limit ({_size(limit)})", {"Connection": "close"})


def _route_path(scope: Scope) -> str:
    """The path the router matches (below any root_path a proxy adds), without a trailing slash."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path.rstrip("/")


def _size(limit: int) -> str:
    return f"{limit / 1024 / 1024:g} MB" if limit >= 1024 * 1024 else f"{limit / 1024:g} KB"


class BodyLimit:
    """ASGI middleware: at most `upload_bytes` + FORM_OVERHEAD_BYTES on `upload_paths`, at most
    SMALL_BODY_BYTES elsewhere. A declared Content-Length over the limit is refused before any
    byte is read; a chunked body is counted as it arrives and reading stops at the first chunk
    past the limit."""

    def __init__(self, app: ASGIApp, *, upload_bytes: int, upload_paths: frozenset[str]):
        self.app = app
        self.upload_bytes = upload_bytes
        self.upload_paths = upload_paths

    def limits_for(self, path: str) -> tuple[int, int]:
        """(bytes a body may have, the limit its error message states)."""
        if path in self.upload_paths:
            return self.upload_bytes + FORM_OVERHEAD_BYTES, self.upload_bytes
        return SMALL_BODY_BYTES, SMALL_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, stated = self.limits_for(_route_path(scope))
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            refusal = BodyTooLarge(stated)
            await error_response(413, "payload_too_large", refusal.detail, refusal.headers)(scope, receive, send)
            return
        received = 0
        unread = b"transfer-encoding" in headers or (declared not in (None, b"0"))

        async def counted() -> Message:
            nonlocal received, unread
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                unread = message.get("more_body", False)
                if received > limit:
                    raise BodyTooLarge(stated)
            return message

        async def closing(message: Message) -> None:
            # an answer given before the body was read (401, 413, 415...) closes the connection:
            # the server would otherwise read the rest of the body only to discard it
            if message["type"] == "http.response.start" and unread:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, counted, closing)
