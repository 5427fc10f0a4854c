"""Every read model the workers keep up to date, in one list."""
from __future__ import annotations

from projections.framework import Projection
from projections.usage import UsageProjection


def all_projections(prefix: str = "") -> list[Projection]:
    return [UsageProjection(prefix)]


def by_name(name: str, prefix: str = "") -> Projection:
    for projection in all_projections(prefix):
        if projection.name == name:
            return projection
    raise KeyError(name)
