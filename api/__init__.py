"""The HTTP API: Flask app factory, one blueprint per surface."""
from __future__ import annotations

import logging

from flask import Flask, send_from_directory
from flask_smorest import Api as SmorestApi

from api import admin, auditors, consistency, ingest, ops, usage
from api import audit_log, auth, corrections, docs_access, keys, licenses, nodes, policies, sessions, users
from api import budgets, pricing, usage_analytics
from api import axon, credit_admin, credits
from api import dashboard
from api.errors import handle_http_exception, register_error_handlers
from api.services import Services
from ledger.application import Ledger
from ledger.ingest import MAX_BODY_BYTES
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.credits_queries import credit_rate_loader
from projections.db import make_engine
from projections.pricing_queries import PriceBookCache


class Api(SmorestApi):
    def handle_http_exception(self, error):
        return handle_http_exception(error)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
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
    store = LedgerStore(settings.database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout)
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout)
    ledger = Ledger(
        store, settings, price_book=PriceBookCache(engine), credit_rates=credit_rate_loader(engine)
    )  # prices and credit rates in force come from their read models
    app.extensions["usage_ledger"] = Services(settings, store, ledger, engine)

    api = Api(app)
    for blueprint in (ops.blp, admin.blp, ingest.blp, usage.blp, axon.blp, credits.blp, credit_admin.blp):
        api.register_blueprint(blueprint)
    for blueprint in (
        auditors.blp, sessions.blp, users.blp, keys.blp, licenses.blp, nodes.blp, docs_access.blp,
        policies.blp, corrections.blp, audit_log.blp,
    ):
        api.register_blueprint(blueprint)
    auth.register(app)
    for blueprint in (pricing.blp, pricing.admin_blp, budgets.blp, usage_analytics.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(dashboard.blp)  # the admin web page at / (reads the JSON API above)
    register_error_handlers(app)
    consistency.register(app)

    @app.route("/docs/static/<path:filename>")
    def swagger_assets(filename: str):
        from swagger_ui_bundle import swagger_ui_path

        return send_from_directory(swagger_ui_path, filename)

    logging.getLogger("usage_ledger").setLevel(logging.INFO)
    return app
