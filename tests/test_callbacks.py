"""Callback URLs against real local HTTP(S) servers: checked at submit and at send time, pinned, never redirected."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from emofusion.serve.callbacks import (
    MAX_URL_LENGTH,
    CallbackRefused,
    CallbackTarget,
    check_callback_url,
    post_callback,
    resolve_callback,
)

PAYLOAD = {"id": "job-1", "status": "succeeded", "result": {"emotions": ["happy"]}}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(SimpleNamespace(path=self.path, headers=self.headers, body=body))
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Hook(HTTPServer):
    """A callback receiver on 127.0.0.1 (ephemeral port) that counts the connections and keeps the requests."""

    def __init__(self, status: int, location: str | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.location = status, location
        self.connections = 0
        self.requests: list[SimpleNamespace] = []

    @property
    def port(self) -> int:
        return self.server_port

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True


@pytest.fixture
def serve():
    """serve(status=204, location=None, tls=None) -> a running Hook (TLS with an ssl server context)."""
    hooks: list[Hook] = []

    def start(status: int = 204, location: str | None = None, tls: ssl.SSLContext | None = None) -> Hook:
        hook = Hook(status, location)
        if tls is not None:
            hook.socket = tls.wrap_socket(hook.socket, server_side=True)
        threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        hooks.append(hook)
        return hook

    yield start
    for hook in hooks:
        hook.shutdown()
        hook.server_close()


@pytest.fixture
def resolve(monkeypatch):
    """resolve(*answers) makes socket.getaddrinfo give the k-th call the k-th answer (the last one repeats);
    an answer is an address or a tuple of addresses. Returns the list of names asked, which grows."""
    asked: list[str] = []

    def install(*answers: str | tuple[str, ...]) -> list[str]:
        def getaddrinfo(host, port, *args, **kwargs):
            asked.append(host)
            answer = answers[min(len(asked), len(answers)) - 1]
            infos = []
            for ip in (answer,) if isinstance(answer, str) else answer:
                if ":" in ip:
                    infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0)))
                else:
                    infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)))
            return infos

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return asked

    return install


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A test CA (ca: its PEM file) and a server context whose certificate names callback.test only."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(timezone.utc)

    def certificate(name: str, key, issuer: x509.Name, issuer_key, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        else:
            builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emofusion test CA")])
    ca_cert = certificate("emofusion test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_cert = certificate("callback.test", leaf_key, ca_name, ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return SimpleNamespace(ca=folder / "ca.pem", server=server)


# -- sending ------------------------------------------------------------------------------------------------------
def test_payload_arrives_as_json(serve):
    hook = serve()
    assert post_callback(f"http://127.0.0.1:{hook.port}/hooks/done?token=abc#frag", PAYLOAD, allow_private=True)
    (request,) = hook.requests
    assert request.path == "/hooks/done?token=abc"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == PAYLOAD


@pytest.mark.parametrize("status, delivered", [(200, True), (204, True), (404, False), (500, False)])
def test_only_a_2xx_answer_counts_as_delivered(serve, status, delivered):
    hook = serve(status=status)
    assert post_callback(f"http://127.0.0.1:{hook.port}/hook", PAYLOAD, allow_private=True) is delivered


@pytest.mark.parametrize("status", [302, 307])
def test_redirects_are_not_followed(serve, status, caplog):
    metadata = serve(status=200)
    hook = serve(status=status, location=f"http://127.0.0.1:{metadata.port}/latest/meta-data/iam")
    with caplog.at_level(logging.WARNING, logger="emofusion.serve.callbacks"):
        assert not post_callback(f"http://127.0.0.1:{hook.port}/hook", PAYLOAD, allow_private=True)
    assert len(hook.requests) == 1
    assert metadata.connections == 0 and metadata.requests == []
    assert "redirect not followed" in caplog.text and "job-1" in caplog.text


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_private_callback_is_refused_at_send_time_without_connecting(serve, host, caplog):
    hook = serve()
    with caplog.at_level(logging.WARNING, logger="emofusion.serve.callbacks"):
        assert not post_callback(f"http://{host}:{hook.port}/hook?token=s3cret", PAYLOAD, allow_private=False)
    assert hook.connections == 0
    assert "job-1" in caplog.text and "CallbackRefused" in caplog.text
    assert "s3cret" not in caplog.text and host not in caplog.text, "the URL (and its token) is never logged"


def test_send_time_check_defeats_dns_rebinding(serve, resolve):
    hook = serve()
    url = f"http://rebind.test:{hook.port}/hook"
    asked = resolve("93.184.216.34", "127.0.0.1")
    check_callback_url(url, allow_private=False)  # at submit time the name was public
    assert not post_callback(url, PAYLOAD, allow_private=False)  # at send time it points home
    assert asked == ["rebind.test", "rebind.test"]
    assert hook.connections == 0


def test_post_connects_to_the_checked_address_and_names_the_host(serve, resolve):
    hook = serve()
    asked = resolve("127.0.0.1", "127.0.0.2")  # a second lookup would answer an address nobody listens on
    assert post_callback(f"http://hooks.example.test:{hook.port}/hook", PAYLOAD, allow_private=True)
    assert asked == ["hooks.example.test"], "resolved once, by the check; the HTTP library never resolves"
    assert hook.requests[0].headers["Host"] == f"hooks.example.test:{hook.port}"


def test_https_is_pinned_and_verifies_the_url_hostname(serve, resolve, tls, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))  # the default context trusts the test CA
    hook = serve(tls=tls.server)
    asked = resolve("127.0.0.1")
    assert post_callback(f"https://callback.test:{hook.port}/hook", PAYLOAD, allow_private=True)
    assert hook.requests[0].headers["Host"] == f"callback.test:{hook.port}"
    assert json.loads(hook.requests[0].body) == PAYLOAD
    assert not post_callback(f"https://other.test:{hook.port}/hook", PAYLOAD, allow_private=True), \
        "the certificate is checked against the URL's hostname, not the pinned address"
    assert len(hook.requests) == 1 and asked == ["callback.test", "other.test"]


def test_unresolvable_host_fails_the_post(resolve, caplog):
    resolve(())
    with caplog.at_level(logging.WARNING, logger="emofusion.serve.callbacks"):
        assert not post_callback("http://gone.test/hook", PAYLOAD, allow_private=True)
    assert "CallbackRefused" in caplog.text


# -- checking -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "http://", "http:///hook", "http://:80/hook",
    "http://user:pw@example.com/hook", "http://token@example.com/hook", "http://example.com@127.0.0.1/hook",
    "http://example.com:0/hook", "http://example.com:65536/hook", "http://example.com:x/hook", "http://[::1/hook",
    "http://example.com/" + "a" * MAX_URL_LENGTH, "http://exa mple.com/", "http://example.com/a\nb",
    "http://bücher.example/hook",
])
def test_check_refuses_malformed_urls_before_any_lookup(url, resolve):
    asked = resolve("93.184.216.34")
    for allow_private in (False, True):
        with pytest.raises(CallbackRefused):
            check_callback_url(url, allow_private)
    assert asked == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.1/hook",
    "http://[::1]/hook", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/", "http://[fd00::1]/",
])
def test_check_refuses_private_addresses(url):
    with pytest.raises(CallbackRefused, match="public address"):
        check_callback_url(url, allow_private=False)
    check_callback_url(url, allow_private=True)


def test_check_refuses_a_name_with_any_private_address(resolve):
    resolve(("93.184.216.34", "10.0.0.7"))
    with pytest.raises(CallbackRefused, match="public address"):
        check_callback_url("https://hooks.example.com/x", allow_private=False)


def test_check_resolves_only_when_private_networks_are_refused(resolve):
    asked = resolve(())
    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_callback_url("https://gone.test/x", allow_private=False)
    check_callback_url("https://gone.test/x", allow_private=True)
    assert asked == ["gone.test"]


def test_resolve_callback_returns_the_parts_and_the_checked_address(resolve):
    resolve("93.184.216.34")
    target, address = resolve_callback("https://Hooks.Example.com/x?token=1#f", allow_private=False)
    assert target == CallbackTarget("https", "hooks.example.com", 443, "/x?token=1")
    assert address.family == socket.AF_INET and address.sockaddr == ("93.184.216.34", 443)
