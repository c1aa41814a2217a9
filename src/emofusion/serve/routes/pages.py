"""The web page and its sessions: GET / and /static, sign-up, log-in (cookie + CSRF token),
log-out and /auth/me."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from .. import auth
from ..dependencies import Principal, ServicesDep
from ..errors import ApiError
from ..services import Services

WEB = Path(__file__).parents[1] / "web"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
SIGNED_UP = "If this address had no account, it has one now: log in with it."

router = APIRouter()


class Credentials(BaseModel):
    email: str
    password: str


def _same_origin(request: Request) -> None:
    """Log-in CSRF: a browser's cross-site form post carries a foreign Origin, or `null` (from a
    sandboxed frame, a data: URL or a redirect), which is refused too."""
    origin = request.headers.get("origin")
    if origin is not None:
        host = origin.split("://", 1)[-1] if "://" in origin else None
        if host is None or host != request.headers.get("host"):
            raise ApiError(403, "csrf_failed", "cross-site request refused")


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session_response(request: Request, services: Services, user, status: int) -> JSONResponse:
    token, csrf = auth.start_session(services.db, user, services.settings.session_hours)
    response = JSONResponse({"user": {"id": user.id, "email": user.email}, "csrf_token": csrf}, status_code=status)
    max_age = int(services.settings.session_hours * 3600)
    secure = services.settings.cookie_secure
    if secure is None:  # plain http is only acceptable on this machine itself
        secure = not (request.url.scheme == "http" and request.url.hostname in LOOPBACK)
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=max_age, httponly=True, secure=secure, samesite="lax")
    response.set_cookie(auth.CSRF_COOKIE, csrf, max_age=max_age, httponly=False, secure=secure, samesite="lax")
    return response


async def _credentials(request: Request) -> Credentials:
    """JSON or form-encoded email and password."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/json"):
            data = await request.json()
        elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            data = dict(await request.form())
        else:
            raise ApiError(415, "unsupported_media_type", "send JSON or a form with 'email' and 'password'")
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("email"), str) or not isinstance(data.get("password"), str):
        raise ApiError(422, "invalid_request", "give 'email' and 'password' as strings")
    return Credentials(email=data["email"], password=data["password"])


@router.post("/auth/signup", tags=["web"], status_code=202)
async def signup(request: Request, services: ServicesDep) -> JSONResponse:
    """Create an account, then log in with it. The answer is the same whether or not the
    address already had an account (no account enumeration)."""
    _same_origin(request)
    if not services.settings.signup_enabled:
        raise ApiError(403, "signup_disabled", "sign-up is disabled on this server")
    creds = await _credentials(request)
    services.login_throttle.attempt(creds.email, _client_address(request))  # sign-ups count as attempts
    await services.hash_slots.run(auth.sign_up, services.db, creds.email, creds.password)
    return JSONResponse({"status": "accepted", "message": SIGNED_UP}, status_code=202)


@router.post("/auth/login", tags=["web"])
async def login(request: Request, services: ServicesDep) -> JSONResponse:
    """A web session (cookie + CSRF token). 429 with Retry-After after too many failed log-ins
    for the account or from the client's address."""
    _same_origin(request)
    creds = await _credentials(request)
    attempt = services.login_throttle.attempt(creds.email, _client_address(request))
    user = await services.hash_slots.run(auth.authenticate, services.db, creds.email, creds.password)
    services.login_throttle.succeeded(attempt)
    return _session_response(request, services, user, 200)


@router.post("/auth/logout", tags=["web"], status_code=204)
def logout(principal: Principal, services: ServicesDep) -> Response:
    if principal.session_id:
        auth.end_session(services.db, principal.session_id)
    response = Response(status_code=204)
    response.delete_cookie(auth.SESSION_COOKIE)
    response.delete_cookie(auth.CSRF_COOKIE)
    return response


@router.get("/auth/me", tags=["web"])
def me(principal: Principal) -> dict:
    return {"user": {"id": principal.user_id, "email": principal.email}, "csrf_token": principal.csrf_token}


# the page itself comes after every API route (`create_app` includes `page_router` last)
page_router = APIRouter()


@page_router.get("/", include_in_schema=False)
def index() -> FileResponse:
    page = WEB / "index.html"
    if not page.is_file():
        raise ApiError(404, "not_found", "the web page is not installed")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


def mount_static(app: FastAPI) -> None:
    """The page's script and style under /static (a mount, which routers cannot carry)."""
    if WEB.is_dir():
        app.mount("/static", StaticFiles(directory=WEB), name="static")
