"""Operations: liveness, readiness, metrics and the deployment config (no auth)."""
from __future__ import annotations

from flask import Response
from flask_smorest import Blueprint

from api.answers import DeploymentConfigOut, HealthOut, ReadinessOut, answers, answers_text
from api.errors import error_response
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
    """Prometheus text: ledger position and projection lag."""
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
