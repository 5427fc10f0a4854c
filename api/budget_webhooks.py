"""Budget webhooks at the edge: the address check of a written webhook_url, the one-time
reveal of a budget's signing secret, and its rotation.

The address rules are `ledger.budgets.webhooks`; the resolver is the system's unless the
app was given another (`app.extensions["webhook_resolver"]`, for tests). A secret is issued
when a budget gets a webhook_url and has none, answered once as `webhook_secret`, and
forgotten when the URL or the budget goes.
"""
from __future__ import annotations

from flask import current_app

from api.services import services
from ledger.budgets.events import BudgetWebhookSecretRotated
from ledger.budgets.webhooks import Resolver, check_webhook_url, system_resolver
from ledger.errors import Invalid
from projections.webhook_secrets import WebhookSecrets


def _resolver() -> Resolver:
    return current_app.extensions.get("webhook_resolver", system_resolver)


def _secrets() -> WebhookSecrets:
    svc = services()
    return WebhookSecrets(svc.engine, svc.settings.secret_pepper)


def check_url(fields: dict) -> None:
    """422 WEBHOOK_URL_FORBIDDEN when the written webhook_url reaches a forbidden address."""
    if fields.get("webhook_url"):
        check_webhook_url(fields["webhook_url"], _resolver(), services().settings.webhook_allow_private_addresses)


def after_write(tenant_id: str, budget_id: str, webhook_url: str | None) -> dict:
    """Keep the budget's secret in step with its URL; `{"webhook_secret": ...}` when one
    was issued now (the only time it is ever shown), else {}."""
    secrets = _secrets()
    if not webhook_url:
        secrets.forget(tenant_id, budget_id)
        return {}
    if secrets.exists(tenant_id, budget_id):
        return {}
    return {"webhook_secret": secrets.issue(tenant_id, budget_id, services().settings.clock.now())}


def forget(tenant_id: str, budget_id: str) -> None:
    _secrets().forget(tenant_id, budget_id)


def rotate(tenant_id: str, budget_id: str, author: str, client_id: str) -> tuple[str, int]:
    """A new secret for a budget that has a webhook (audited, without the secret)."""
    svc = services()
    budget = svc.ledger.budgets.require_budget(tenant_id, budget_id)
    if not budget.terms.webhook_url:
        raise Invalid("WEBHOOK_NOT_SET", f"Budget {budget_id} has no webhook_url", field="webhook_url")
    event = BudgetWebhookSecretRotated(
        tenant_id=budget.tenant_id, org_id=budget.org_id, recorded_at=svc.settings.clock.now(), actor=author,
        budget_id=budget_id, client_id=client_id,
    )
    position = svc.ledger.journal.record_fact(event)
    return _secrets().issue(tenant_id, budget_id, svc.settings.clock.now()), position
