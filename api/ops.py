"""Operations: liveness, readiness, metrics and the deployment config (no auth)."""
from __future__ import annotations

from flask_smorest import Blueprint

from api.answers import DeploymentConfigOut, HealthOut, ReadinessOut, answers, answers_text
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
    """The database is reachable; projections' lag and parked errors."""
    report = projection_report(services())
    report["status"] = "degraded" if report["parked_errors"] else "ready"
    return report


@blp.route("/metrics", methods=["GET"])
@answers_text("text/plain")
def metrics():
    """Prometheus metrics: request durations, ingested events, ledger and read-model positions
    and lag, webhook deliveries and License Manager syncs."""
    return metrics_response()
