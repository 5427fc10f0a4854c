"""`usage-ledger create-user` calls the same command as the admin API."""
from __future__ import annotations

import json

from click.testing import CliRunner

from usage_ledger import cli


def test_create_user_from_the_command_line_then_log_in(h, agent, database_url):
    runner = CliRunner()
    result = runner.invoke(
        cli.main,
        ["create-user", "acme", "prod", "cli@acme.test", "--password", "long enough pw", "--permission", "admin"],
        env={"DATABASE_URL": database_url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["permissions"] == ["admin"]
    assert h.login("cli@acme.test", "long enough pw").get("/api/v1/auth/me").json["permissions"] == ["admin"]
    again = runner.invoke(
        cli.main, ["create-user", "acme", "prod", "cli@acme.test", "--password", "long enough pw"], env={"DATABASE_URL": database_url}
    )
    assert again.exit_code == 1 and "USER_EXISTS" in again.output
