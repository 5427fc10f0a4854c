"""POST /api/v1/events: agents append usage events (SPEC.md §3)."""
from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from api.answers import IngestOut, answers, events_body
from api.auth import authenticate
from api.consistency import appended
from api.services import services
from api.usage_codec import decode_usage_body
from ledger.errors import TooLarge
from ledger.usage.rules import MAX_BODY_BYTES

blp = Blueprint("events", __name__, url_prefix="/api/v1", description="Usage event ingest")

@blp.route("/events", methods=["POST"])
@blp.doc(requestBody=events_body())
@answers(IngestOut, status=202)
def post_events():
    """Append one usage event or a batch of up to 1,000, all or nothing (client or API key with write:logs)."""
    principal = authenticate("client", "key", scope="write:logs")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge("PAYLOAD_TOO_LARGE", f"Request body exceeds {MAX_BODY_BYTES} bytes")
    items = decode_usage_body(request.get_data(cache=False))
    result = services().ledger.usage.record(principal.as_actor(), items)
    appended(result.position)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "position": result.position}, 202
