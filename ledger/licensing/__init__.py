"""Licensing: organization licences, node heartbeats, License Manager sync."""
