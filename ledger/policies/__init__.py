"""Policies: an organization's governance policies."""
