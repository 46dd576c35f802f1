"""Implementations of the CLI commands (imported lazily by cli.py)."""
