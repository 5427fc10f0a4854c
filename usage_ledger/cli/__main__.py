"""`python -m usage_ledger.cli ...` runs the `usage-ledger` command."""
from usage_ledger.cli import main

main()
