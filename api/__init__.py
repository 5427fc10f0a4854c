"""The HTTP API: Flask app factory, one blueprint per surface."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

from flask import Flask, current_app, send_from_directory
from flask_smorest import Api as SmorestApi
from marshmallow import INCLUDE, Schema, fields

from api import admin, auditors, consistency, ingest, ops, usage
from api import audit_log, auth, corrections, docs_access, keys, licenses, nodes, policies, sessions, users
from api import budget_holds, budgets, pricing, usage_analytics
from api import axon, credit_admin, credits
from api import dashboard
from api.errors import handle_http_exception, register_error_handlers
from ledger.usage.rules import MAX_BODY_BYTES
from ledger.settings import Settings
from runtime.bootstrap import bootstrap


class ErrorDetail(Schema):
    class Meta:
        unknown = INCLUDE

    code = fields.String(required=True, metadata={"description": "UPPER_SNAKE error code"})
    message = fields.String(required=True)


class ErrorOut(Schema):
    """Every error answer: {"error": {"code", "message", ...details}} (api/errors.py)."""

    error = fields.Nested(ErrorDetail, required=True)


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error):
        return handle_http_exception(error)

    def _openapi_json(self):
        document = self.spec.to_dict()
        _numeric_bounds(document)
        return current_app.response_class(json.dumps(document, indent=2), mimetype="application/json")


# Handlers that answer plain dicts (no @blp.response schema) are documented with their
# success status and media types here, so the document names every answer they give.
_CREATED = {
    "/api/v1/admin/tenants", "/api/v1/admin/tenants/{tenant_id}/orgs", "/api/v1/admin/licenses",
    "/api/v1/admin/policies", "/api/v1/admin/entities", "/api/v1/budgets",
}
_ACCEPTED = {"/api/v1/heartbeats"}
_MEDIA = {
    "/metrics": ("text/plain",),
    "/api/v1/export/usage": ("text/csv",),
    "/api/v1/usage": ("application/json", "text/csv"),
    "/api/v1/policies/export": ("application/json", "text/csv"),
}


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


def document_success_answers(api: Api) -> None:
    for path, operations in api.spec._paths.items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            if any(str(s).startswith("2") for s in responses):
                continue
            status = "201" if method == "post" and path in _CREATED else "202" if path in _ACCEPTED else "200"
            responses[status] = {
                "description": "OK",
                "content": {media: {"schema": {}} for media in _MEDIA.get(path, ("application/json",))},
            }


def create_app(settings: Settings | None = None) -> Flask:
    """The app, with its services built from `settings` (the environment when None)."""
    app = Flask(__name__)
    app.config.update(
        API_TITLE="usage-ledger",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/static/",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES + 1024,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.extensions["usage_ledger"] = bootstrap(settings)

    api = Api(app)
    for blueprint in (ops.blp, admin.blp, ingest.blp, usage.blp, axon.blp, credits.blp, credit_admin.blp):
        api.register_blueprint(blueprint)
    for blueprint in (
        auditors.blp, sessions.blp, users.blp, keys.blp, licenses.blp, nodes.blp, docs_access.blp,
        policies.blp, corrections.blp, audit_log.blp,
    ):
        api.register_blueprint(blueprint)
    auth.register(app)
    for blueprint in (pricing.blp, pricing.admin_blp, budgets.blp, budget_holds.blp, usage_analytics.blp):
        api.register_blueprint(blueprint)
    document_success_answers(api)
    app.register_blueprint(dashboard.blp)  # the admin web page at / (reads the JSON API above)
    register_error_handlers(app)
    consistency.register(app)

    @app.route("/docs/static/<path:filename>")
    def swagger_assets(filename: str):
        from swagger_ui_bundle import swagger_ui_path

        return send_from_directory(swagger_ui_path, filename)

    logging.getLogger("usage_ledger").setLevel(logging.INFO)
    return app
