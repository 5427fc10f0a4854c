"""The admin dashboard: one HTML page at `/` and its static files.

The page holds no data. Its script reads the same JSON endpoints as any other client, with
the session cookie, and renders them (charts with the vendored Chart.js). The server only
decides whether the page opens on the login form or on the dashboard (a valid session
cookie), so a first visit makes no request that is bound to answer 401, and tells the page
whether documentation access is configured, so that it never asks for a list that is bound
to answer 503 (a browser logs every failed request as a console error).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, make_response, render_template, request

from api.auth import SESSION_COOKIE, find_session
from api.services import services

STATIC = Path(__file__).parent / "static" / "dashboard"

blp = Blueprint(
    "dashboard",
    __name__,
    static_folder=str(STATIC),
    static_url_path="/dashboard/static",
    template_folder="templates",
)

# Everything the page loads is served from here: no CDN, no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@lru_cache(maxsize=1)
def asset_version() -> str:
    """Changes with the page's own script and style, so browsers never run a stale pair."""
    digest = hashlib.sha256()
    for name in ("dashboard.js", "dashboard.css"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


def _session_state() -> str:
    """'yes' (a live session), 'no' (none: show the login form), or 'unknown' (the
    database could not be asked: the script finds out, and shows the error)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return "no"
    try:
        return "yes" if find_session(token) is not None else "no"
    except Exception:  # noqa: BLE001 - a database outage must not turn the page into an error page
        return "unknown"


def _docs_access_configured() -> bool:
    settings = services().settings
    return bool(settings.cf_api_token and settings.cf_account_id and settings.cf_access_group_id)


@blp.route("/", methods=["GET"])
def dashboard_page():
    """The dashboard (or the login form)."""
    html = render_template(
        "dashboard.html", session_state=_session_state(), version=asset_version(),
        docs_access="configured" if _docs_access_configured() else "unconfigured",
    )
    response = make_response(html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    return response
