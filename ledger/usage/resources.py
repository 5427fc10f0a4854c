"""The resource-type registry: fixed in code, never data."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    slug: str
    name: str
    category: str  # ai | compute | storage
    mode: str  # event (per occurrence) | gauge (point-in-time level)
    unit: str


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("ai", "AI", "ai", "event", "dollar"),
    ResourceType("agent_run", "Agent Run", "ai", "event", "run"),
    ResourceType("app_compute", "App Compute", "compute", "event", "second"),
    ResourceType("job_compute", "Job Compute", "compute", "event", "second"),
    ResourceType("app_storage", "App Storage", "storage", "gauge", "byte"),
    ResourceType("workspace_storage", "Workspace Storage", "storage", "gauge", "byte"),
    ResourceType("file_storage", "File Storage", "storage", "gauge", "byte"),
    ResourceType("es_index_count", "ES Index Count", "storage", "gauge", "index"),
)
RESOURCE_TYPE_SLUGS = frozenset(r.slug for r in RESOURCE_TYPES)
