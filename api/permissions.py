"""Permission checks for the portal surfaces (seed 003 "pre-blocks").

Until portal sessions and API keys land, the callers are admin-key principals (which may
do everything, see Principal.can); a session user or key will be checked against its
permissions / scopes by the same call.
"""
from __future__ import annotations

from api.auth import Principal
from ledger.errors import Forbidden

BILLING_MANAGE = "permission.billing.manage"
TENANT_SUPERUSER = "permission.tenant.superuser"


def require_permission(principal: Principal, permission: str) -> Principal:
    if not principal.can(permission):
        raise Forbidden("PERMISSION_DENIED", f"This needs the {permission} permission", permission=permission)
    return principal
