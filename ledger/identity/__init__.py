"""Identity: tenants, organizations, agent clients, portal users and their sessions, named entities."""
