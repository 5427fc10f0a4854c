"""POST /api/v1/events: agents append usage events, as our JSON or as CloudEvents
(chosen by Content-Type; decoded in api/cloudevents.py)."""
from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from api import cloudevents
from api.answers import IngestOut, answers, events_body
from api.auth import authenticate
from api.consistency import appended
from api.services import services
from api.usage_codec import decode_usage_body
from ledger.errors import TooLarge
from ledger.usage.rules import MAX_BODY_BYTES

blp = Blueprint("events", __name__, url_prefix="/api/v1", description="Usage event ingest")

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object", "description": "one usage event"},
                        {
                            "type": "object",
                            "properties": {"events": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}},
                            "required": ["events"],
                        },
                    ]
                }
            },
            cloudevents.STRUCTURED: {"schema": {"type": "object", "description": "one CloudEvent; data holds the usage fields"}},
            cloudevents.BATCH: {"schema": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}},
        },
    },
    "responses": {
        "202": {
            "description": "Accepted",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "duplicates": {"type": "integer"},
                            "position": {"type": "integer"},
                        },
                    }
                }
            },
        }
    },
}


@blp.route("/events", methods=["POST"])
@blp.doc(requestBody=events_body())
@answers(IngestOut, status=202)
def post_events():
    """Append one usage event or a batch of up to 1,000, all or nothing (client or API key with write:logs)."""
    principal = authenticate("client", "key", scope="write:logs")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge("PAYLOAD_TOO_LARGE", f"Request body exceeds {MAX_BODY_BYTES} bytes")
    body = request.get_data(cache=False)
    if cloudevents.is_cloudevent(request.mimetype, request.headers):
        items = cloudevents.usage_items(request.mimetype, request.headers, body)
    else:
        items = decode_usage_body(body)
    result = services().ledger.usage.record(principal.as_actor(), items)
    appended(result.position)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "position": result.position}, 202
