"""The OpenAPI document's finishing touches: security schemes and each operation's
requirement, stable operation ids, the msgspec answer types as components, CSV media types.

The document is OpenAPI 3.1 (JSON Schema 2020-12), the dialect msgspec and apispec both
speak, so a nullable value is `anyOf [..., {type: null}]` or `type: [..., "null"]`.
"""
from __future__ import annotations

import re
from decimal import Decimal

import msgspec

from api.answers import ANSWER_TYPES, ITEMS_ONE_OF

OPENAPI_VERSION = "3.1.0"

SECURITY_SCHEMES = {
    "agentBasic": {"type": "http", "scheme": "basic", "description": "An agent client: client_id and client_secret."},
    "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key (`ul_...`) created in the portal, with scopes."},
    "session": {"type": "apiKey", "in": "cookie", "name": "ul_session",
                "description": "A portal session (POST /api/v1/auth/login); writes also need `X-Requested-With`."},
    "adminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-API-Key",
                 "description": "The operator's admin key; tenant routes also take X-Tenant-ID and X-Org-ID."},
}
_SCHEME_OF = {"client": "agentBasic", "key": "apiKey", "user": "session", "admin": "adminKey"}

# Who may call each operation (the credentials its handler authenticates); absent: public.
CALLERS: dict[str, tuple[str, ...]] = {
    "POST /api/v1/admin/tenants": ("admin",),
    "POST /api/v1/admin/tenants/{tenant_id}/orgs": ("admin",),
    "POST /api/v1/admin/clients": ("admin",),
    "POST /api/v1/admin/clients/{client_id}/rotate": ("admin",),
    "DELETE /api/v1/admin/clients/{client_id}": ("admin",),
    "POST /api/v1/events": ("client", "key"),
    "GET /api/v1/usage": ("client", "key", "admin", "user"),
    "GET /api/v1/usage/summary": ("client", "key", "admin", "user"),
    "GET /api/v1/export/usage": ("client", "key", "admin", "user"),
    "GET /v1/axon/usage": ("client", "key", "admin", "user"),
    "GET /v1/axon/audit": ("client", "key", "admin", "user"),
    "GET /api/usage": ("admin", "user"),
    "GET /api/usage/monthly": ("admin", "user"),
    "GET /api/usage/top-consumers": ("admin", "user"),
    "GET /api/usage/resource-types": ("admin", "user"),
    "PUT /api/v1/admin/credit-rates": ("admin",),
    "GET /api/v1/admin/credit-rates": ("admin",),
    "POST /api/v1/admin/entities": ("admin",),
    "POST /api/v1/admin/licenses/sync": ("admin",),
    "GET /api/v1/ledger": ("admin", "key"),  # a read:ledger key sees its own tenant's events
    "GET /api/v1/ledger/checkpoints": ("admin", "key"),
    "GET /api/v1/auth/me": ("user",),
    "POST /api/v1/auth/logout": ("user",),
    "POST /api/v1/admin/users": ("admin",),
    "GET /api/v1/admin/users": ("admin",),
    "PUT /api/v1/admin/users/{email}/permissions": ("admin",),
    "GET /api/v1/keys": ("user", "admin"),
    "POST /api/v1/keys": ("user", "admin"),
    "GET /api/v1/keys/{key_id}": ("user", "admin"),
    "DELETE /api/v1/keys/{key_id}": ("user", "admin"),
    "GET /api/v1/license/status": ("client", "key", "admin", "user"),
    "POST /api/v1/admin/licenses": ("admin",),
    "PUT /api/v1/admin/licenses/{org_id}": ("admin",),
    "DELETE /api/v1/admin/licenses/{org_id}": ("admin",),
    "POST /api/v1/heartbeats": ("client",),
    "GET /api/v1/nodes": ("user", "key", "admin"),
    "GET /api/v1/nodes/status": ("user", "key", "admin"),
    "GET /api/v1/nodes/{instance_id}": ("user", "key", "admin"),
    "GET /api/v1/admin/nodes/status": ("admin",),
    "GET /api/v1/docs/access": ("user",),
    "POST /api/v1/docs/access/grant": ("user",),
    "POST /api/v1/docs/access/revoke": ("user",),
    "POST /api/v1/admin/policies": ("admin",),
    "PUT /api/v1/admin/policies/{policy_id}": ("admin",),
    "DELETE /api/v1/admin/policies/{policy_id}": ("admin",),
    "GET /api/v1/policies/export": ("user", "key", "admin"),
    "POST /api/v1/events/{event_id}/void": ("admin", "user"),
    "POST /api/v1/events/{event_id}/amend": ("admin", "user"),
    "GET /api/v1/admin/audit-log": ("admin", "user"),
    "GET /api/v1/admin/audit-log/{entry_id}": ("admin", "user"),
    "GET /api/v1/pricing": ("client", "admin"),
    "PUT /api/v1/admin/pricing": ("admin",),
    "GET /api/v1/admin/pricing": ("admin",),
    "POST /api/v1/budgets": ("client",),
    "GET /api/v1/budgets": ("client", "user"),
    "GET /api/v1/budgets/{budget_id}": ("client", "user"),
    "PUT /api/v1/budgets/{budget_id}": ("client",),
    "DELETE /api/v1/budgets/{budget_id}": ("client",),
    "POST /api/v1/budgets/check": ("client",),
    "GET /api/v1/budgets/{budget_id}/status": ("client", "user"),
    "GET /api/v1/budgets/{budget_id}/alerts": ("client", "user"),
    "GET /api/v1/usage/breakdown": ("client", "admin", "user"),
    "GET /api/v1/usage/records": ("client", "admin", "user"),
    "GET /api/v1/admin/health": ("admin",),
    "GET /api/v1/budgets/holds/{hold_id}": ("client",),
    "POST /api/v1/budgets/holds/{hold_id}/commit": ("client",),
    "POST /api/v1/budgets/holds/{hold_id}/release": ("client",),
    "POST /api/v1/auth/password": ("user",),
    "POST /api/v1/admin/users/{email}/disable": ("admin",),
    "POST /api/v1/admin/users/{email}/enable": ("admin",),
    "PUT /api/v1/admin/users/{email}/password": ("admin",),
    "POST /api/v1/budgets/{budget_id}/webhook-secret/rotate": ("client",),
    "POST /v1/traces": ("client", "key"),
    "POST /api/v1/integrations/litellm": ("client", "key"),
}
PUBLIC = {
    "GET /api/v1/deployment/config", "GET /healthz", "GET /readyz", "GET /metrics",
    "GET /api/v1/ledger/public-key", "POST /api/v1/auth/login",
}
METHODS = ("get", "post", "put", "patch", "delete")


def finish(document: dict) -> dict:
    """The document as served: schemes, requirements, ids and components added in place."""
    components = document.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    _, found = msgspec.json.schema_components(ANSWER_TYPES, ref_template="#/components/schemas/{name}")
    for name, schema in found.items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two schemas are named {name}")
        schemas[name] = schema
    for (name, prop), kinds in ITEMS_ONE_OF.items():
        schemas[name]["properties"][prop]["items"] = {"anyOf": [{"$ref": f"#/components/schemas/{k}"} for k in kinds]}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            key = f"{method.upper()} {path}"
            operation["operationId"] = operation_id(method, path)
            if key in PUBLIC:
                operation["security"] = []
            elif key in CALLERS:
                operation["security"] = [{_SCHEME_OF[kind]: []} for kind in CALLERS[key]]
            else:
                raise ValueError(f"{key} declares neither its callers nor that it is public (api/openapi.py)")
    _numeric_bounds(document)
    return document


def operation_id(method: str, path: str) -> str:
    """`get_api_v1_budgets_budget_id_status`: derived from method and path, so it changes only
    when the route does."""
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_").lower()
    return f"{method.lower()}_{words or 'root'}"


def _numeric_bounds(value) -> None:
    """apispec leaves the bounds of Decimal fields as Decimals, which JSON renders as strings
    ("0"); JSON Schema wants numbers."""
    if isinstance(value, dict):
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(value.get(bound), (str, Decimal)):
                number = float(value[bound])
                value[bound] = int(number) if number.is_integer() else number
        for item in value.values():
            _numeric_bounds(item)
    elif isinstance(value, list):
        for item in value:
            _numeric_bounds(item)

