"""Portal API keys: created, revoked, used."""
