"""Docs access: who may read the protected documentation (Cloudflare Access group)."""
