"""The HTTP API: Flask app factory, one blueprint per surface."""
from __future__ import annotations

import json
import logging

from flask import Flask, current_app, send_from_directory
from flask_smorest import Api as SmorestApi
from marshmallow import INCLUDE, Schema, fields

from api import admin, auditors, consistency, ingest, ops, usage
from api import audit_log, auth, corrections, docs_access, keys, licenses, nodes, policies, sessions, users
from api import budget_holds, budgets, pricing, usage_analytics
from api import axon, credit_admin, credits
from api import dashboard, metrics
from api import litellm, otlp
from api.errors import handle_http_exception, register_error_handlers
from api.openapi import OPENAPI_VERSION, finish
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
        document = finish(self.spec.to_dict())
        return current_app.response_class(json.dumps(document, indent=2), mimetype="application/json")


def create_app(settings: Settings | None = None) -> Flask:
    """The app, with its services built from `settings` (the environment when None)."""
    app = Flask(__name__)
    app.config.update(
        API_TITLE="usage-ledger",
        API_VERSION="1.0",
        OPENAPI_VERSION=OPENAPI_VERSION,
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/static/",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES + 1024,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.extensions["usage_ledger"] = bootstrap(settings)
    if app.extensions["usage_ledger"].settings.ledger_clusters:
        from api import routing

        routing.register(app, app.extensions["usage_ledger"])  # LEDGER_CLUSTERS: route each request to its tenant's cluster

    api = Api(app)
    for blueprint in (ops.blp, admin.blp, ingest.blp, usage.blp, axon.blp, credits.blp, credit_admin.blp):
        api.register_blueprint(blueprint)
    for blueprint in (
        auditors.blp, sessions.blp, users.blp, keys.blp, licenses.blp, nodes.blp, docs_access.blp,
        policies.blp, corrections.blp, audit_log.blp,
    ):
        api.register_blueprint(blueprint)
    auth.register(app)
    for blueprint in (pricing.blp, pricing.admin_blp, budgets.blp, budget_holds.blp, usage_analytics.blp, otlp.blp, litellm.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(dashboard.blp)  # the admin web page at / (reads the JSON API above)
    register_error_handlers(app)
    consistency.register(app)
    metrics.register(app)

    @app.route("/docs/static/<path:filename>")
    def swagger_assets(filename: str):
        from swagger_ui_bundle import swagger_ui_path

        return send_from_directory(swagger_ui_path, filename)

    logging.getLogger("usage_ledger").setLevel(logging.INFO)
    return app
