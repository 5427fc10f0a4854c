"""Audit: attempts at admin-relevant actions that failed or were refused."""
