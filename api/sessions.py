"""Portal sessions: log in, log out, who am I."""
from __future__ import annotations

from flask import jsonify, make_response, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import SESSION_COOKIE, authenticate
from api.consistency import appended
from api.formats import timestamp
from api.services import services
from api.throttle import check_login, login_failed, login_succeeded
from ledger.errors import Unauthenticated

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Portal sessions")


class LoginIn(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024), load_only=True)


class PasswordChangeIn(Schema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=1024))


class SessionOut(Schema):
    email = fields.String()
    tenant_id = fields.String()
    org_id = fields.String()
    permissions = fields.List(fields.String())
    session_id = fields.String()
    expires_at = fields.String()


def _session_json(session) -> dict:
    return {**session.user.public(), "session_id": session.session_id, "expires_at": timestamp(session.expires_at)}


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginIn())
@blp.response(200, SessionOut)
@blp.alt_response(401, schema="ErrorOut", description="Unknown e-mail or wrong password")
@blp.alt_response(429, schema="ErrorOut", description="TOO_MANY_ATTEMPTS: too many failures for this account or address (Retry-After)")
def login(body):
    """Log in with e-mail and password; sets an HttpOnly, SameSite=Strict session cookie.
    After 5 failures in 15 minutes the account is locked out (429, Retry-After), longer each time."""
    check_login(body["email"])
    try:
        session = services().ledger.identity.login(body["email"], body["password"])
    except Unauthenticated as error:
        if error.code == "INVALID_CREDENTIALS":
            login_failed(body["email"])
        raise
    login_succeeded(body["email"])
    return _with_cookie(session)


def _with_cookie(session):
    appended(session.position)
    settings = services().settings
    response = _response(_session_json(session))
    secure = request.is_secure if settings.session_cookie_secure is None else settings.session_cookie_secure
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(settings.session_ttl_hours * 3600),
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/",
    )
    return response


@blp.route("/password", methods=["POST"])
@blp.arguments(PasswordChangeIn())
@blp.response(200, SessionOut)
@blp.alt_response(401, schema="ErrorOut", description="The current password is not right")
def change_password(body):
    """Change your own password: every session of yours ends, and this answer starts a new
    one (a new cookie)."""
    principal = authenticate("user")
    check_login(principal.email)
    try:
        session = services().ledger.identity.change_own_password(principal.session, body["current_password"], body["new_password"])
    except Unauthenticated as error:
        if error.code == "INVALID_CREDENTIALS":
            login_failed(principal.email)
        raise
    return _with_cookie(session)


@blp.route("/logout", methods=["POST"])
@blp.response(204)
def logout():
    """End the session everywhere and clear the cookie."""
    principal = authenticate("user")
    appended(services().ledger.identity.logout(principal.session))
    response = _response(None, status=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return response


@blp.route("/me", methods=["GET"])
@blp.response(200, SessionOut)
def me():
    """The logged-in user, the org and the current permissions."""
    principal = authenticate("user")
    return _session_json(principal.session)


def _response(body, status: int = 200):
    return make_response(jsonify(body) if body is not None else "", status)
