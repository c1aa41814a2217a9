"""Callback URLs: checked when a job is submitted, posted to when it finishes, never into the server's own network.

A caller chooses the URL, so the server must not become its proxy (SSRF). The name is resolved
when the job is submitted and again when the outcome is sent; each time every address it resolves
to must be public, unless private networks are allowed (EMOFUSION_CALLBACK_PRIVATE=1). The POST
then goes to the address that was just checked (pinned): the HTTP library never resolves the name
itself, so a DNS answer that changes between check and connect (rebinding) cannot aim it elsewhere.
The Host header and TLS (SNI, certificate check) still use the URL's hostname. Redirects are never
followed: a 3xx answer is a failed callback.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from ..errors import CallbackRefused  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

log = logging.getLogger("emofusion.serve.callbacks")

MAX_URL_LENGTH = 2048  # the width of analysis_jobs.callback_url
_MAX_RESPONSE_BYTES = 4096  # of a callback's answer body, read and dropped
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CallbackTarget:
    """The parts of a checked callback URL that the POST uses."""

    scheme: str  # "http" or "https"
    host: str  # the URL's hostname: for the Host header and TLS, never resolved by the HTTP library
    port: int
    path: str  # request target: path and query (the fragment is not sent)


class PinnedAddress(NamedTuple):
    """A checked address of the callback host, as getaddrinfo gave it: the socket connects here."""

    family: socket.AddressFamily
    sockaddr: tuple


def _parse(url: str) -> CallbackTarget:
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise CallbackRefused("callback_url must be printable ASCII without spaces "
                              "(percent-encode the path, write international host names as xn--)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackRefused("callback_url is not a valid URL (check the host and the port)") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise CallbackRefused("callback_url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("callback_url must not carry a user name or password (put a token in the path or query)")
    if port is not None and not 1 <= port <= 65535:
        raise CallbackRefused("callback_url port must be between 1 and 65535")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackTarget(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme], path)


def _resolve(target: CallbackTarget, allow_private: bool) -> PinnedAddress:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        raise CallbackRefused(f"callback_url host {target.host!r} does not resolve") from None
    if not infos:
        raise CallbackRefused(f"callback_url host {target.host!r} does not resolve")
    if not allow_private:
        for info in infos:
            if not ipaddress.ip_address(info[4][0]).is_global:
                raise CallbackRefused("callback_url must point to a public address "
                                      "(set EMOFUSION_CALLBACK_PRIVATE=1 to allow private networks)")
    family, _, _, _, sockaddr = infos[0]
    return PinnedAddress(family, sockaddr)


def check_callback_url(url: str, allow_private: bool) -> None:
    """Raise CallbackRefused unless `url` is an acceptable callback: http(s), a host, no user info,
    a port in 1..65535, at most MAX_URL_LENGTH printable ASCII characters, and (unless
    `allow_private`) a host whose every address is public. With `allow_private` the name is not
    resolved here (a DNS hiccup must not refuse the job); it is when the outcome is sent."""
    target = _parse(url)
    if not allow_private:
        _resolve(target, allow_private)


def resolve_callback(url: str, allow_private: bool) -> tuple[CallbackTarget, PinnedAddress]:
    """Check `url` as check_callback_url does, resolving its host once, and return where to send
    the POST: the URL's parts and the checked address to connect to (the first one resolved)."""
    target = _parse(url)
    return target, _resolve(target, allow_private)


def _connect(address: PinnedAddress, timeout: float) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address.sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a pinned address; `host` only names the server in the Host header."""

    def __init__(self, host: str, port: int, address: PinnedAddress, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """A TLS connection to a pinned address; SNI and the certificate check use `host`."""

    def __init__(self, host: str, port: int, address: PinnedAddress, timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(_connect(self.address, self.timeout), server_hostname=self.host)


def post_callback(url: str, payload: dict, *, allow_private: bool, timeout: float = 10.0) -> bool:
    """POST `payload` as JSON to `url`, re-checked and pinned now; True on a 2xx answer.

    Best effort: a refused URL, a network or TLS error, a redirect (not followed) or another non-2xx
    answer returns False and is logged with the job id (`payload["id"]`) and the kind of failure
    only, never the URL, which may carry the caller's token. `timeout` bounds the connect and each
    socket read or write."""
    job_id = payload.get("id")
    try:
        target, address = resolve_callback(url, allow_private)
        kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        connection = kind(target.host, target.port, address, timeout)
        try:
            connection.request("POST", target.path, body=json.dumps(payload).encode(),
                               headers={"Content-Type": "application/json", "User-Agent": "emofusion"})
            response = connection.getresponse()
            response.read(_MAX_RESPONSE_BYTES)
        finally:
            connection.close()
    except Exception as exc:
        log.warning("callback for analysis %s failed: %s", job_id, type(exc).__name__)
        return False
    if 300 <= response.status < 400:
        log.warning("callback for analysis %s failed: redirect not followed (HTTP %d)", job_id, response.status)
        return False
    if not 200 <= response.status < 300:
        log.warning("callback for analysis %s failed: HTTP %d", job_id, response.status)
        return False
    return True
