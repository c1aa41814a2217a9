"""What routes depend on: the `Services` built at start-up, and the caller (an API key or a web
session), authenticated from the headers before any route reads the body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from . import auth
from .errors import ApiError
from .services import Services

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request, services: Services, allow_session: bool = True) -> auth.Principal:
    secret = presented_key(request)
    if secret:
        principal = auth.key_principal(services.db, secret)
        services.rate.check(principal.key_id)
        return principal
    token = request.cookies.get(auth.SESSION_COOKIE) if allow_session else None
    if token:
        principal = auth.session_principal(services.db, token)
        if principal is None:
            raise ApiError(401, "session_expired", "your session has expired; log in again")
        if request.method not in SAFE_METHODS and not auth.csrf_ok(principal, request.headers.get(auth.CSRF_HEADER)):
            raise ApiError(403, "csrf_failed", f"missing or wrong {auth.CSRF_HEADER} header")
        return principal
    raise ApiError(401, "missing_key", "send an API key: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                   {"WWW-Authenticate": "Bearer"})


def api_principal(request: Request, services: ServicesDep) -> auth.Principal:
    return authenticate(request, services)


def optional_key(request: Request, services: ServicesDep) -> auth.Principal | None:
    """The SageMaker and MVP routes need a key only when EMOFUSION_REQUIRE_KEY is set."""
    if not services.settings.require_key:
        return None
    return authenticate(request, services, allow_session=False)


def require_session(request: Request, services: ServicesDep) -> auth.Principal:
    """Key management: the logged-in web session only. An API key cannot mint or revoke keys, so
    revoking a leaked key locks its holder out."""
    principal = authenticate(request, services)
    if principal.session_id is None:
        raise ApiError(403, "session_required", "managing API keys needs a logged-in session, not an API key")
    return principal


Principal = Annotated[auth.Principal, Depends(api_principal)]
SessionPrincipal = Annotated[auth.Principal, Depends(require_session)]
OptionalPrincipal = Annotated[auth.Principal | None, Depends(optional_key)]
