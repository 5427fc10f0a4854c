"""Budgets: spend limits per scope and period, threshold alerts and their delivery."""
