"""Usage: metered events as accepted at ingest, and their corrections (void, amend)."""
