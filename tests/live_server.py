"""The Flask app served over real HTTP on 127.0.0.1, for clients that need an endpoint
(OpenTelemetry exporters, LiteLLM's loggers)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import make_server


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve `app` on a free port of 127.0.0.1 in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
