"""`usage-ledger create-user` calls the same command as the admin API."""
from __future__ import annotations

import json

from click.testing import CliRunner

from tests.conftest import basic, usage
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


def test_create_tenant_org_and_client_from_the_command_line_then_ingest(h, database_url):
    """The provisioning commands of docs/operations.md, end to end: the client they print
    is one an agent can send usage with."""
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "SECRET_PEPPER": h.settings.secret_pepper}

    def run(*args: str) -> dict:
        result = runner.invoke(cli.main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert run("create-tenant", "globex", "--name", "Globex")["tenant_id"] == "globex"
    assert run("create-org", "globex", "labs", "--name", "Labs")["org_id"] == "labs"
    client = run("create-client", "globex", "labs", "--name", "labs agent")
    assert (client["tenant_id"], client["org_id"], client["name"]) == ("globex", "labs", "labs agent")
    headers = basic(client["client_id"], client["client_secret"])
    assert h.post_events(headers, [usage("cli-made-1")]).status_code == 202
    again = runner.invoke(cli.main, ["create-org", "globex", "labs", "--name", "Labs"], env=env)
    assert again.exit_code == 1 and json.loads(again.output)["error"]["code"] == "ORG_EXISTS", again.output
