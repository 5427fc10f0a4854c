"""`make test` runs the test files in parallel with pytest-xdist's `loadgroup`, and the files
that hold many PostgreSQL connections must run one after another on one worker
(tests/conftest.py). pytest-xdist puts a test in its group by adding `@group` to the test's
id; pytest 9.2 moved the id where pytest-xdist 3.8 cannot change it, so every test silently
ran apart, and two such files together took the server's 100 connections. This fails when
the groups are lost again."""
from __future__ import annotations

import pytest

from tests.conftest import MANY_CONNECTIONS


def test_every_test_runs_in_its_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only under `make test` (pytest-xdist --dist loadgroup)")
    root = request.config.rootpath
    lost = []
    for item in request.session.items:
        group = "many-connections" if item.path.name in MANY_CONNECTIONS else str(item.path.relative_to(root))
        if not item.nodeid.endswith(f"@{group}"):
            lost.append(item.nodeid)
    assert not lost, f"{len(lost)} tests run outside their group, e.g. {lost[:3]}"
