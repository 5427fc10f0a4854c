"""Pricing and credits: effective-dated model prices and credit rates."""
