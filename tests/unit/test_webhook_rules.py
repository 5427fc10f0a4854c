"""The webhook rules on their own: which addresses a webhook may reach (DNS injected), how
its URL is shown, and the Standard Webhooks signature. No database, no network."""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ledger.budgets.webhooks import (
    FORBIDDEN_CODE,
    ForbiddenAddress,
    allowed_addresses,
    check_webhook_url,
    literal_address,
    new_secret,
    kept_url,
    shown_url,
    signature,
    signed_headers,
)
from workers.webhook_delivery import fair_order

PUBLIC = "93.184.215.14"


def resolver(table: dict[str, list[str]]):
    calls = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table.get(host, [])

    resolve.calls = calls
    return resolve


NO_DNS = resolver({})

FORBIDDEN_HOSTS = [
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "017700000001",
    "10.0.0.1", "172.16.3.4", "192.168.1.1", "100.64.0.1",  # private, shared (CGNAT)
    "169.254.169.254", "0xA9FEA9FE", "2852039166",  # cloud metadata, also as hex and integer
    "0.0.0.0", "0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "[::1]", "[::]", "[fe80::1]", "[fc00::1]", "[fd00:ec2::254]", "[ff02::1]",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:169.254.169.254]", "[2002:7f00:1::]",
    "metadata.google.internal",
]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_literal_forbidden_addresses_are_refused_in_every_form(host):
    with pytest.raises(ForbiddenAddress) as refused:
        check_webhook_url(f"http://{host}:8080/hook", NO_DNS)
    assert refused.value.code == FORBIDDEN_CODE == "WEBHOOK_URL_FORBIDDEN"
    assert refused.value.kind == "invalid"  # answered 422


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "10.1.2.3", "[::1]", "[fc00::1]", "[::ffff:127.0.0.1]"])
def test_the_development_override_allows_loopback_and_private(host):
    check_webhook_url(f"http://{host}/hook", NO_DNS, allow_private=True)


@pytest.mark.parametrize("host", ["169.254.169.254", "[fe80::1]", "224.0.0.1", "0.0.0.0", "metadata.google.internal"])
def test_the_override_never_allows_metadata_link_local_multicast_or_unspecified(host):
    with pytest.raises(ForbiddenAddress):
        check_webhook_url(f"http://{host}/hook", NO_DNS, allow_private=True)


def test_literal_forms_parse_as_the_socket_layer_would():
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert str(literal_address("0x7f000001")) == "127.0.0.1"
    assert str(literal_address("127.1")) == "127.0.0.1"
    assert str(literal_address("[::1]")) == "::1"
    assert literal_address("hooks.example.com") is None


def test_a_name_is_judged_by_what_it_resolves_to():
    dns = resolver({"hooks.example.com": [PUBLIC], "internal.example.com": ["10.0.0.7"],
                    "mixed.example.com": [PUBLIC, "127.0.0.1"], "v6.example.com": ["::ffff:10.0.0.1"]})
    check_webhook_url("https://hooks.example.com/x", dns)
    for host in ("internal.example.com", "mixed.example.com", "v6.example.com"):
        with pytest.raises(ForbiddenAddress):
            check_webhook_url(f"https://{host}/x", dns)
    assert dns.calls == ["hooks.example.com", "internal.example.com", "mixed.example.com", "v6.example.com"]


def test_a_name_that_does_not_resolve_is_accepted_at_write_time():
    check_webhook_url("https://not-yet.example.invalid/hook", NO_DNS)
    assert allowed_addresses("https://not-yet.example.invalid/hook", NO_DNS) == []


def test_public_addresses_are_allowed_and_other_schemes_are_left_to_validation():
    assert [str(a) for a in allowed_addresses(f"http://{PUBLIC}/x", NO_DNS)] == [PUBLIC]
    check_webhook_url("ftp://127.0.0.1/x", NO_DNS)  # not http(s): the budget's validation refuses it
    check_webhook_url("http://127.0.0.1:notaport/x", NO_DNS)


def test_urls_are_shown_without_userinfo_query_or_fragment():
    assert shown_url("https://user:pw@hooks.example.com:8443/a/b?token=s3cret#frag") == "https://hooks.example.com:8443/a/b"
    assert shown_url("https://hooks.example.com/a") == "https://hooks.example.com/a"
    assert shown_url(None) is None


def test_tokens_in_a_webhook_path_are_shown_by_their_last_characters_only():
    slack = "https://hooks.slack.com/services/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"
    assert shown_url(slack) == "https://hooks.slack.com/services/T024BE7LD/B01ABCD2EFG/…k1L2"
    discord = "https://discord.com/api/webhooks/1234567890123456789/AbCdEf-GhIjKl_MnOpQrStUvWxYz0123456789"
    assert shown_url(discord) == "https://discord.com/api/webhooks/1234567890123456789/…6789"  # the id is no secret
    teams = "https://acme.webhook.office.com/webhookb2/IncomingWebhook/5f1e2d3c4b5a69788796a5b4c3d2e1f0/x"
    assert shown_url(teams) == "https://acme.webhook.office.com/webhookb2/IncomingWebhook/…e1f0/x"
    words = "https://hooks.example.com/budget-alerts-production/IncomingWebhook"  # readable paths stay
    assert shown_url(words) == words


def test_an_update_that_sends_the_shown_url_back_keeps_the_stored_one():
    stored = "https://hooks.slack.com/services/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?x=1"
    assert kept_url(shown_url(stored), stored) == stored
    assert kept_url("https://hooks.example.com/new", stored) == "https://hooks.example.com/new"
    assert kept_url(None, stored) is None and kept_url(stored, None) == stored


def test_secrets_are_whsec_base64_of_enough_random_bytes():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    assert new_secret() != secret


def test_the_signature_is_standard_webhooks():
    secret = new_secret()
    stamp = int(datetime.now(timezone.utc).timestamp())
    body = b'{"type":"budget.threshold_crossed"}'
    headers = signed_headers(secret, "msg_1", stamp, body)
    assert Webhook(secret).verify(body, headers) == {"type": "budget.threshold_crossed"}
    expected = hmac.new(base64.b64decode(secret[6:]), f"msg_1.{stamp}.".encode() + body, hashlib.sha256).digest()
    assert signature(secret, "msg_1", stamp, body) == "v1," + base64.b64encode(expected).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_fair_order_interleaves_tenants():
    items = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("c", 2)]
    assert list(fair_order(items, lambda i: i[0])) == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2), ("a", 3)]


def test_delivery_errors_show_as_generic_codes_also_when_recorded_by_earlier_releases():
    from ledger.budgets.webhooks import shown_error

    assert [shown_error(e) for e in ("timeout", "http_status_502", "HTTP 500", None)] == ["timeout", "http_status_502",
                                                                                         "http_status_500", None]
    assert shown_error("URLError: [Errno 111] Connection refused") == "connection_failed"
    assert shown_error("RemoteDisconnected: Remote end closed connection without response") == "connection_failed"
    assert shown_error("TimeoutError: timed out") == "timeout"
