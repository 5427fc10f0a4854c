"""Sending one budget webhook safely, and choosing which deliveries go out together.

`send` resolves the URL's host again for every delivery, refuses it when any address is
forbidden (`ledger.budgets.webhooks`), and connects to the address it checked, sending the
host name in the Host header and as TLS server name: a DNS answer that changes between the
check and the connection (rebinding) gets nowhere. The connection has its own timeout
(at most 3 s) and the whole delivery a deadline (at most 10 s), after which its socket is
shut. What went wrong is told as a generic code (`connection_failed`, `timeout`,
`forbidden_address`, `invalid_url`, `http_status_500`), never as socket text.

`fair_order` interleaves tenants round-robin and keeps at most `per_tenant` of one
tenant's deliveries in a pass, so a tenant whose receivers never answer holds at most its
own share of the pool.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import TypeVar
from urllib.parse import urlsplit

from ledger.budgets.webhooks import ForbiddenAddress, IPAddress, Resolver, allowed_addresses, url_host_port

T = TypeVar("T")
MAX_CONNECT_SECONDS = 3.0
MAX_TOTAL_SECONDS = 10.0
_READ_LIMIT = 64 * 1024  # the receiver's answer is read (to finish the exchange) and dropped


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str = ""  # "" when delivered (2xx)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Limits:
    connect_seconds: float = MAX_CONNECT_SECONDS
    total_seconds: float = MAX_TOTAL_SECONDS
    allow_private: bool = False

    def __post_init__(self):
        object.__setattr__(self, "connect_seconds", min(self.connect_seconds, MAX_CONNECT_SECONDS))
        object.__setattr__(self, "total_seconds", min(self.total_seconds, MAX_TOTAL_SECONDS))


class _Pinned:
    """Connects to the checked address instead of resolving the host name again."""

    address: IPAddress
    connect_seconds: float

    def _pinned_socket(self) -> socket.socket:
        sock = socket.create_connection((str(self.address), self.port), timeout=self.connect_seconds)
        sock.settimeout(self.timeout)
        return sock

    def abort(self) -> None:
        """Shut the socket from another thread: a blocked read returns at once."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class PinnedHTTPConnection(_Pinned, http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: IPAddress, connect_seconds: float, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address, self.connect_seconds = address, connect_seconds

    def connect(self) -> None:
        self.sock = self._pinned_socket()


def tls_context() -> ssl.SSLContext:
    """The system's trust store, certificate and host name checked."""
    return ssl.create_default_context()


class PinnedHTTPSConnection(_Pinned, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: IPAddress, connect_seconds: float, timeout: float):
        self.tls = tls_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address, self.connect_seconds = address, connect_seconds

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(self._pinned_socket(), server_hostname=self.host)


def send(url: str, body: bytes, headers: dict[str, str], resolve: Resolver, limits: Limits) -> Outcome:
    """POST `body` to `url`; never raises for what the network or the receiver does."""
    try:
        parts = urlsplit(url)
        host, port = url_host_port(url)
        addresses = allowed_addresses(url, resolve, limits.allow_private)
    except ForbiddenAddress:
        return Outcome(None, "forbidden_address")
    except ValueError:
        return Outcome(None, "invalid_url")
    if parts.scheme not in ("http", "https") or not host:
        return Outcome(None, "invalid_url")
    if not addresses:  # the name does not resolve (now)
        return Outcome(None, "connection_failed")
    kind = PinnedHTTPSConnection if parts.scheme == "https" else PinnedHTTPConnection
    conn = kind(host, port, addresses[0], limits.connect_seconds, limits.total_seconds)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        conn.abort()

    watchdog = threading.Timer(limits.total_seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(_READ_LIMIT)
        status = response.status
    except TimeoutError:
        return Outcome(None, "timeout")
    except (OSError, http.client.HTTPException, ValueError):
        return Outcome(None, "timeout" if expired.is_set() else "connection_failed")
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():
        return Outcome(None, "timeout")
    return Outcome(status, "" if 200 <= status < 300 else f"http_status_{status}")


def fair_order(items: Iterable[T], tenant_of: Callable[[T], str]) -> Iterator[T]:
    """The items round-robin across tenants (first come first within a tenant)."""
    queues: dict[str, list[T]] = {}
    for item in items:
        queues.setdefault(tenant_of(item), []).append(item)
    for wave in zip_longest(*queues.values()):
        yield from (item for item in wave if item is not None)
