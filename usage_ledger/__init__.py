"""usage-ledger: the installable entry points (the `usage-ledger` command lives in usage_ledger.cli)."""
