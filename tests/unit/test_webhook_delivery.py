"""Sending one webhook, against receivers on 127.0.0.1 (the addresses come from an injected
resolver, the override for private targets is on): the connection goes to the address that
was checked while TLS and the Host header carry the name, and a receiver that trickles its
answer is cut at the total deadline. No database."""
from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from workers import webhook_delivery
from workers.webhook_delivery import Limits, send

NAME = "hooks.example.test"
LIMITS = Limits(connect_seconds=1, total_seconds=1.5, allow_private=True)


def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


class Server:
    """Accepts on 127.0.0.1 and hands each connection to `handle` in a thread."""

    def __init__(self, handle, tls: ssl.SSLContext | None = None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handle, self.tls, self.seen = handle, tls, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:  # the whole request, so closing never resets it
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length and (chunk := conn.recv(65536)):
                body += chunk
            self.seen.append(head.split(b"\r\n"))
            self.handle(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def no_content(conn) -> None:
    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    return cert_file, server_tls


def test_https_connects_to_the_checked_address_and_verifies_the_name(certificate, monkeypatch):
    cert_file, server_tls = certificate
    limits = Limits(allow_private=True)  # the full 3 s / 10 s: a handshake on a busy machine is slow
    server = Server(no_content, tls=server_tls)
    try:
        url = f"https://{NAME}:{server.port}/hook?k=1"
        assert send(url, b"{}", {}, loopback, limits).error == "connection_failed"  # not in the system's trust store
        monkeypatch.setattr(webhook_delivery, "tls_context", lambda: ssl.create_default_context(cafile=str(cert_file)))
        outcome = send(url, b"{}", {"webhook-id": "m1"}, loopback, limits)
        assert (outcome.status, outcome.error, outcome.delivered) == (204, "", True)
        assert server.seen[-1][0] == b"POST /hook?k=1 HTTP/1.1" and f"Host: {NAME}:{server.port}".encode() in server.seen[-1]
        other = send(f"https://other.example.test:{server.port}/hook", b"{}", {}, loopback, limits)
        assert other.error == "connection_failed"  # the certificate is checked against the name, not the address
    finally:
        server.close()


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_deadline():
    def trickle(conn) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):
            conn.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.2)  # noqa: sleep-ok (a slow receiver sending its answer; not a wait for projections)

    server = Server(trickle)
    try:
        started = time.monotonic()
        outcome = send(f"http://{NAME}:{server.port}/hook", b"{}", {}, loopback, LIMITS)
        assert outcome.error == "timeout" and time.monotonic() - started < LIMITS.total_seconds + 1
    finally:
        server.close()


def test_answers_and_failures_become_generic_codes():
    def status_500(conn) -> None:
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nstack")

    server = Server(status_500)
    try:
        assert send(f"http://{NAME}:{server.port}/", b"{}", {}, loopback, LIMITS).error == "http_status_500"
        assert send(f"http://{NAME}:{server.port}/", b"{}", {}, lambda h, p: [], LIMITS).error == "connection_failed"
        assert send(f"http://{NAME}:{server.port}/", b"{}", {}, loopback, Limits()).error == "forbidden_address"
        assert send("gopher://x/", b"{}", {}, loopback, LIMITS).error == "invalid_url"
    finally:
        server.close()


def test_limits_are_capped_at_3_and_10_seconds():
    assert (Limits(30, 60).connect_seconds, Limits(30, 60).total_seconds) == (3, 10)
