"""What a request handler can reach: the process's services (runtime/bootstrap.py)."""
from __future__ import annotations

from flask import current_app

from runtime.bootstrap import Services


def services() -> Services:
    return current_app.extensions["usage_ledger"]
