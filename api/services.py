"""What a request handler can reach: the process's services (runtime/bootstrap.py)."""
from __future__ import annotations

from flask import current_app, g, has_request_context

from runtime.bootstrap import Services


def services() -> Services:
    """The request's tenant's cluster (api/routing.py) when several are configured, else
    the process's one Services."""
    if has_request_context():
        routed = g.get("cluster_services")
        if routed is not None:
            return routed
    return current_app.extensions["usage_ledger"]
