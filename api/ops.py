"""Operations: liveness, readiness, metrics (bearer METRICS_TOKEN when set) and the
deployment config (no auth); the admin health report."""
from __future__ import annotations

import hmac

from flask import request
from flask_smorest import Blueprint

from api.answers import AdminHealthOut, DeploymentConfigOut, HealthOut, ReadinessOut, answers, answers_text
from api.auth import require_admin_key
from api.errors import error_response
from api.metrics import metrics_response
from api.services import services
from runtime.reports import projection_report

blp = Blueprint("ops", __name__, description="Operations")

DEPLOYMENT_MODES = {
    "saas": {"tenant_isolation": True, "show_node_usage": False, "show_platform_metrics": False, "show_deployments": False},
    "invpc": {"tenant_isolation": False, "show_node_usage": True, "show_platform_metrics": True, "show_deployments": True},
}


@blp.route("/api/v1/deployment/config", methods=["GET"])
@answers(DeploymentConfigOut)
def deployment_config():
    """Which portal surfaces this deployment shows."""
    mode = services().settings.deployment_mode
    return {"mode": mode, **DEPLOYMENT_MODES[mode]}


@blp.route("/healthz", methods=["GET"])
@answers(HealthOut)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@answers(ReadinessOut)
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
@answers_text("text/plain")
def metrics():
    """Prometheus metrics: request durations, ingested events, ledger and read-model positions
    and lag, webhook deliveries and License Manager syncs (bearer METRICS_TOKEN when set)."""
    if not metrics_allowed():
        return error_response(401, "UNAUTHENTICATED", "A valid Authorization: Bearer <METRICS_TOKEN> header is required")
    return metrics_response()


@blp.route("/api/v1/admin/health", methods=["GET"])
@answers(AdminHealthOut)
def admin_health():
    """Admin key: the ledger's position, each read model's position and lag, and every
    parked event with its projection, position, event type and error."""
    require_admin_key()
    report = projection_report(services())
    report["status"] = "degraded" if report["parked_errors"] else "ok"
    return report
