"""Accounts: password hashing, web sessions with CSRF tokens, API keys (shown once, stored hashed)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .db import ApiKey, Database, User, WebSession, utcnow
from .passwords import weakness

KEY_PREFIX = "ef_"
SESSION_COOKIE = "emofusion_session"
CSRF_COOKIE = "emofusion_csrf"
CSRF_HEADER = "X-CSRF-Token"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


class AuthError(Exception):
    """A credential problem; `status` and `code` say how to answer it."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, and the key or session that proved it."""

    user_id: str
    email: str
    key_id: str | None = None
    session_id: str | None = None
    csrf_token: str | None = None


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy token (API keys, session tokens): enough, and constant-time to look up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise AuthError(422, "invalid_email", "enter a valid email address")
    return email


def check_password(password: str, email: str = "") -> None:
    """AuthError 422 `weak_password` for a password `passwords.weakness` refuses."""
    reason = weakness(password or "", email)
    if reason:
        raise AuthError(422, "weak_password", reason)


def hash_password(password: str, email: str = "") -> str:
    check_password(password, email)
    return _hasher.hash(password)


def create_user(db: Database, email: str, password: str | None) -> User:
    """A new account (`password=None`: API keys only, made by an operator). AuthError 409
    `email_taken` when the address has one already."""
    email = normalize_email(email)
    hashed = hash_password(password, email) if password is not None else None
    try:
        with db.session() as s:
            user = User(email=email, password_hash=hashed)
            s.add(user)
            s.flush()
            return user
    except IntegrityError:
        raise AuthError(409, "email_taken", "an account with this email already exists") from None


def sign_up(db: Database, email: str, password: str) -> None:
    """Create the account if the address has none; the same outcome, and the same work (one
    password hash), when it has one, so sign-up does not tell who has an account."""
    try:
        create_user(db, email, password)
    except AuthError as exc:
        if exc.code != "email_taken":
            raise


def get_or_create_user(db: Database, email: str) -> User:
    email = normalize_email(email)
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == email))
    return user or create_user(db, email, None)


def authenticate(db: Database, email: str, password: str) -> User:
    wrong = AuthError(401, "invalid_credentials", "wrong email or password")
    try:
        email = normalize_email(email)
    except AuthError:
        raise wrong from None
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == email))
    if user is None or user.password_hash is None:
        _hasher.hash("spend the same time as a real check")
        raise wrong
    try:
        _hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        raise wrong from None
    return user


# -- web sessions ---------------------------------------------------------------------------
def start_session(db: Database, user: User, hours: float) -> tuple[str, str]:
    """A new session for `user`: (session token for the cookie, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with db.session() as s:
        s.add(WebSession(token_hash=digest(token), csrf_token=csrf, user_id=user.id,
                         expires_at=utcnow() + timedelta(hours=hours)))
    return token, csrf


def session_principal(db: Database, token: str) -> Principal | None:
    with db.session() as s:
        row = s.execute(
            select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.token_hash == digest(token))
        ).first()
    if row is None or row[0].expires_at < utcnow():
        return None
    session, user = row
    return Principal(user_id=user.id, email=user.email, session_id=session.id, csrf_token=session.csrf_token)


def end_session(db: Database, session_id: str) -> None:
    with db.session() as s:
        obj = s.get(WebSession, session_id)
        if obj is not None:
            s.delete(obj)


def csrf_ok(principal: Principal, header_value: str | None) -> bool:
    return bool(header_value) and principal.csrf_token is not None and hmac.compare_digest(principal.csrf_token, header_value)


# -- API keys -------------------------------------------------------------------------------
def create_key(db: Database, user_id: str, name: str) -> tuple[ApiKey, str]:
    """A new key for the user: (its row, the key itself — shown once, never stored)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AuthError(422, "invalid_name", "a key needs a name of 1 to 100 characters")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        key = ApiKey(user_id=user_id, name=name, prefix=secret[:10], key_hash=digest(secret))
        s.add(key)
        s.flush()
        return key, secret


def key_principal(db: Database, secret: str) -> Principal:
    invalid = AuthError(401, "invalid_key", "the API key is not valid (unknown or revoked)")
    if not secret.startswith(KEY_PREFIX):
        raise invalid
    with db.session() as s:
        row = s.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == digest(secret))
        ).first()
        if row is None or row[0].revoked_at is not None:
            raise invalid
        key, user = row
        s.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=utcnow()))
    return Principal(user_id=user.id, email=user.email, key_id=key.id)


def list_keys(db: Database, user_id: str | None = None) -> list[tuple[ApiKey, str]]:
    """Keys with their owner's email, newest first (all users' when `user_id` is None)."""
    query = select(ApiKey, User.email).join(User, User.id == ApiKey.user_id).order_by(ApiKey.created_at.desc())
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    with db.session() as s:
        return [(k, e) for k, e in s.execute(query).all()]


def revoke_key(db: Database, key_id: str, user_id: str | None = None) -> bool:
    """Revoke one key (only the user's own when `user_id` is given). False when there is no such key."""
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        if key is None or (user_id is not None and key.user_id != user_id):
            return False
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return True
