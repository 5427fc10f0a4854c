"""The write side: domain events, the rules that make them, and the ledger that stores them."""
