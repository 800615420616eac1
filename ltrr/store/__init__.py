"""Durable state: the SQLite event log and atomic, pickle-free directory persistence."""
