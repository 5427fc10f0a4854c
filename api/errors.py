"""The one place where errors become JSON: {"error": {"code", "message", ...}}."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ledger.errors import DomainError

log = logging.getLogger("usage_ledger.api")

STATUS_BY_KIND = {
    "invalid": 422,
    "malformed": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "throttled": 429,
    "upstream": 502,
    "unavailable": 503,
}
RETRY_AFTER_SECONDS = "1"
_INVALID_JSON = "Invalid JSON body."  # webargs' message for a body that does not parse
_JSON_WITHOUT_CONTENT_TYPE = ("/api/v1/events", "/api/v1/budgets/check")  # decoded whatever the Content-Type


def error_response(status: int, code: str, message: str, **details):
    body = {"error": {"code": code, "message": message, **details}}
    response = jsonify(body)
    response.status_code = status
    if status in (429, 503):
        response.headers["Retry-After"] = str(details.get("retry_after") or RETRY_AFTER_SECONDS)
    return response


def _code_for_status(status: int) -> str:
    return {
        400: "BAD_REQUEST",
        401: "UNAUTHENTICATED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        409: "CONFLICT",
        413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        422: "VALIDATION_FAILED",
        429: "TOO_MANY_REQUESTS",
    }.get(status, "HTTP_ERROR")


def handle_http_exception(error: HTTPException):
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 400 and messages and "json" in messages and _INVALID_JSON in messages["json"]:
        return error_response(400, "MALFORMED_JSON", "The request body is not valid JSON")
    if messages:  # webargs / marshmallow validation of query or body
        return error_response(422, "VALIDATION_FAILED", "The request is not valid", fields=_flatten(messages))
    response = error_response(status, _code_for_status(status), error.description or error.name)
    if status == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _flatten(messages: dict) -> dict:
    """webargs nests messages by location ({"query": {"field": [...]}}); clients want fields."""
    flat: dict = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        status = 400 if error.code == "MALFORMED_JSON" else STATUS_BY_KIND.get(error.kind, 400)  # a body that does not parse
        return error_response(status, error.code, error.message, **error.details)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        return handle_http_exception(error)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(error: Exception):
        log.warning("database unavailable: %s", error)
        return error_response(503, "DATABASE_UNAVAILABLE", "The database is not reachable right now")

    @app.errorhandler(OverflowError)
    @app.errorhandler(DataError)
    def _out_of_range(error: Exception):
        # a number (or text) from the request that the database cannot hold, e.g. an offset
        # or position of 10**30: SQLite raises OverflowError, PostgreSQL a DataError
        log.warning("value out of range: %s", error)
        return error_response(422, "VALUE_OUT_OF_RANGE", "A value in the request is out of the range the service accepts")

    @app.errorhandler(RecursionError)
    def _too_deep(error: RecursionError):
        # the JSON decoders recurse once per nesting level: a body nested thousands deep
        # is the client's fault, whichever decoder met it first
        if request.is_json or request.path in _JSON_WITHOUT_CONTENT_TYPE:
            return error_response(422, "JSON_TOO_DEEP", "The JSON body is nested too deeply")
        return _unexpected(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return error_response(503, "DATABASE_UNAVAILABLE", "The database is not reachable right now")
        log.exception("unhandled error")
        return error_response(500, "INTERNAL_ERROR", "An unexpected error occurred")
