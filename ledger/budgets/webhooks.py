"""Budget webhooks as pure rules: which addresses a webhook may reach, how its URL is shown,
and how a delivery is signed (Standard Webhooks). Resolving a host name is injected, so
every rule here is tested without a network.

Addresses: a webhook may only reach public unicast addresses. Loopback, private (RFC 1918,
unique local), link-local (which holds the cloud metadata services), shared (CGNAT),
multicast, unspecified, reserved and documentation ranges are forbidden, in IPv4 and IPv6,
also written as an integer (`2130706433`), in hex (`0x7f000001`), octal or short
(`127.1`) form, or mapped into IPv6 (`::ffff:127.0.0.1`). A deployment may allow loopback
and private targets for development (`WEBHOOK_ALLOW_PRIVATE_ADDRESSES=true`).

Signing (standardwebhooks.com): headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`, keyed with the
base64-decoded part of the budget's own `whsec_` secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from ledger.errors import Invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# a resolver: host name and port -> the addresses it resolves to (empty when it does not)
Resolver = Callable[[str, int], list[str]]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
FORBIDDEN_CODE = "WEBHOOK_URL_FORBIDDEN"

# addresses no webhook may reach whatever the setting; the metadata services of the
# clouds sit in link-local space (169.254.169.254, fd00:ec2::254) or on these names
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not public, not "private" in ipaddress
_EC2_METADATA_V6 = ipaddress.ip_network("fd00:ec2::/32")


class ForbiddenAddress(Invalid):
    """The answer names no address and no reason, so it tells nothing of internal DNS."""

    MESSAGE = ("webhook_url must point at a public address (not loopback, private, link-local, multicast, "
               "reserved or a cloud metadata service)")

    def __init__(self, reason: str):
        super().__init__(FORBIDDEN_CODE, self.MESSAGE, field="webhook_url")
        self.reason = reason


def literal_address(host: str) -> IPAddress | None:
    """The address a host part names literally, in any form the socket layer accepts
    (dotted, short, integer, hex, octal IPv4; IPv6 with or without brackets), else None."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton is what connect() would make of "127.1", "2130706433", "0x7f.1", "0177.0.0.1"
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def forbidden_reason(address: IPAddress, allow_private: bool = False) -> str | None:
    """Why a webhook may not reach `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return forbidden_reason(embedded, allow_private)
        if address in _EC2_METADATA_V6:
            return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local or cloud metadata address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return None if allow_private else "a loopback address"
    if address.is_reserved:
        return "a reserved address"
    shared = isinstance(address, ipaddress.IPv4Address) and address in _SHARED
    if address.is_private or shared:
        return None if allow_private else "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or ""), port


def allowed_addresses(url: str, resolve: Resolver, allow_private: bool = False) -> list[IPAddress]:
    """The addresses a delivery to `url` may connect to: every address its host is or
    resolves to, all of them allowed. ForbiddenAddress when any is not (a name that
    resolves to one public and one private address is refused: the resolver could pick
    either); an empty list when the name does not resolve."""
    host, port = url_host_port(url)
    if host.lower().rstrip(".") in _METADATA_HOSTS:
        raise ForbiddenAddress("a cloud metadata service")
    literal = literal_address(host)
    addresses = [literal] if literal is not None else [a for a in map(literal_address, resolve(host, port)) if a]
    for address in addresses:
        reason = forbidden_reason(address, allow_private)
        if reason is not None:
            raise ForbiddenAddress(reason)
    return addresses


def check_webhook_url(url: str | None, resolve: Resolver, allow_private: bool = False) -> None:
    """The write-time check: refuse a URL whose host is or resolves to a forbidden address.
    A name that does not resolve now is accepted (delivery checks again). URLs that are not
    http(s) are left to the budget's own validation."""
    try:
        if url and urlsplit(url).scheme in ("http", "https"):
            allowed_addresses(url, resolve, allow_private)
    except ValueError:  # an unparsable URL or port: the budget's validation names it
        return


# A path segment this long that mixes character classes is taken for a token: incoming-webhook
# URLs carry theirs in the path (hooks.slack.com/services/T…/B…/<token>, discord.com/api/
# webhooks/<id>/<token>, …webhook.office.com/…/IncomingWebhook/<hex>/<guid>).
TOKEN_SEGMENT_LENGTH = 16
SHOWN_TOKEN_TAIL = 4  # the characters of a token shown, so that its owner recognises it
_CHARACTER_CLASSES = (str.islower, str.isupper, str.isdigit)


def shown_url(url: str | None) -> str | None:
    """The URL as answers, exports and the audit log show it: without userinfo, query or
    fragment, and each path segment that looks like a token cut to its last characters
    ("…Xb4Q"). Deliveries use the URL as stored."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, _shown_path(parts.path), "", ""))
    except ValueError:
        return _shown_path(url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2])


def _shown_path(path: str) -> str:
    return "/".join(_shown_segment(segment) for segment in path.split("/"))


def _shown_segment(segment: str) -> str:
    if len(segment) < TOKEN_SEGMENT_LENGTH:
        return segment
    mixed = sum(1 for is_class in _CHARACTER_CLASSES if any(map(is_class, segment))) >= 2
    return "…" + segment[-SHOWN_TOKEN_TAIL:] if mixed else segment


def kept_url(given: str | None, stored: str | None) -> str | None:
    """The webhook URL an update keeps: the stored one when the caller sent it back as
    answers show it (a read-modify-write of the budget must not replace the real URL with
    its shortened form), else the one given."""
    if given and stored and given != stored and given == shown_url(stored):
        return stored
    return given


DELIVERY_ERRORS = frozenset({"connection_failed", "timeout", "forbidden_address", "invalid_url"})
_LEGACY_HTTP = re.compile(r"^HTTP (\d{3})$")
_HTTP_STATUS = re.compile(r"^http_status_\d{3}$")


def shown_error(error: str | None) -> str | None:
    """A delivery error as tenants see it: a generic code. Errors recorded by earlier
    releases held socket text ("ConnectionRefusedError: …", "HTTP 500"); they show as codes."""
    if not error or error in DELIVERY_ERRORS or _HTTP_STATUS.match(error):
        return error
    legacy = _LEGACY_HTTP.match(error)
    if legacy:
        return f"http_status_{legacy.group(1)}"
    return "timeout" if "timed out" in error.lower() or "timeout" in error.lower() else "connection_failed"


# secrets and signatures ----------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def system_resolver(host: str, port: int) -> list[str]:
    """Every address of `host` (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(info[4][0] for info in infos))

