"""Operations: liveness, readiness, metrics (bearer METRICS_TOKEN when set) and the
deployment config (no auth); the admin health report."""
from __future__ import annotations

import hmac

from flask import Response, request
from flask_smorest import Blueprint

from api.auth import require_admin_key
from api.errors import error_response
from api.services import services
from runtime.reports import projection_report

blp = Blueprint("ops", __name__, description="Operations")

DEPLOYMENT_MODES = {
    "saas": {"tenant_isolation": True, "show_node_usage": False, "show_platform_metrics": False, "show_deployments": False},
    "invpc": {"tenant_isolation": False, "show_node_usage": True, "show_platform_metrics": True, "show_deployments": True},
}


@blp.route("/api/v1/deployment/config", methods=["GET"])
def deployment_config():
    """Which portal surfaces this deployment shows."""
    mode = services().settings.deployment_mode
    return {"mode": mode, **DEPLOYMENT_MODES[mode]}


@blp.route("/healthz", methods=["GET"])
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
def readyz():
    """Ready (the database answers) or not: `{"status": "ready" | "degraded"}`, 503 when the
    database is down. Positions, lag and parked errors only with the admin key."""
    report = projection_report(services())
    report["status"] = "degraded" if report["parked_errors"] else "ready"
    if _is_admin():
        return report
    return {"status": report["status"]}


def _is_admin() -> bool:
    configured = services().settings.admin_api_key
    presented = request.headers.get("X-Admin-API-Key", "")
    return bool(configured) and hmac.compare_digest(presented.encode(), configured.encode())


def metrics_allowed() -> bool:
    """With METRICS_TOKEN set, /metrics needs `Authorization: Bearer <token>`."""
    token = services().settings.metrics_token
    if not token:
        return True
    presented = request.headers.get("Authorization", "")
    return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


@blp.route("/metrics", methods=["GET"])
def metrics():
    """Prometheus text: ledger position and projection lag (bearer METRICS_TOKEN when set)."""
    if not metrics_allowed():
        return error_response(401, "UNAUTHENTICATED", "A valid Authorization: Bearer <METRICS_TOKEN> header is required")
    try:
        report = projection_report(services())
    except Exception:  # metrics must answer even when the database does not
        return error_response(503, "DATABASE_UNAVAILABLE", "The database is not reachable right now")
    lines = [
        "# TYPE usage_ledger_position gauge",
        f"usage_ledger_position {report['ledger_position']}",
        "# TYPE usage_ledger_projection_lag gauge",
    ]
    for name, state in report["projections"].items():
        lines.append(f'usage_ledger_projection_lag{{projection="{name}"}} {state["lag"]}')
    lines += ["# TYPE usage_ledger_parked_errors gauge", f"usage_ledger_parked_errors {len(report['parked_errors'])}"]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


@blp.route("/api/v1/admin/health", methods=["GET"])
def admin_health():
    """Admin key: the ledger's position, each read model's position and lag, and every
    parked event with its projection, position, event type and error."""
    require_admin_key()
    report = projection_report(services())
    report["status"] = "degraded" if report["parked_errors"] else "ok"
    return report
