"""One error shape for every route: `{"error": {"code", "message"}}` with the right status.

`ApiError` is for conditions that exist only over HTTP (a missing form field, a wrong content
type); the library's `EmofusionError`s are rendered here too, with the status `http_status(code)`
gives them, so every handler is registered in one place (`install_error_handlers`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ERROR_CODES, EmofusionError, http_status, is_server_fault
from .auth import AuthError
from .quotas import QuotaExceeded

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by routes; rendered as the JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        if err.get("type") == "missing":
            parts.append(f"missing field {where!r}" if where else "missing request body")
        else:
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError):
        return error_response(exc.status, exc.code, exc.message,
                              {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(EmofusionError)
    async def _emofusion_error(_: Request, exc: EmofusionError):
        if is_server_fault(exc.code):  # logged in full; the client learns the kind of fault only
            import logging

            logging.getLogger("emofusion.serve").error("%s: %s", exc.code, exc.message)
            return error_response(http_status(exc.code), exc.code, ERROR_CODES[exc.code].meaning)
        return error_response(http_status(exc.code), exc.code, exc.message)

    @app.exception_handler(QuotaExceeded)
    async def _quota(_: Request, exc: QuotaExceeded):
        return error_response(429, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return error_response(400, "malformed_json", "the body is not valid JSON")
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):  # logged by the server; the body names no internals
        import logging

        logging.getLogger("emofusion.serve").error("unexpected error: %s", type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", "the server failed to handle this request")
