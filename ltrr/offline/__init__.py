"""Offline use: replay, metrics, off-policy evaluation, reports."""
