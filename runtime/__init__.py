"""Composition: builds what a process needs (ledger store, application, read-model engine)
from Settings. Sits between projections and the edges (api, workers, the command line)."""
