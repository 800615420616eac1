"""A real PostgreSQL server for the store tests (started from the local binaries, never mocked)."""

from __future__ import annotations

import pytest

from ltrr.store.pg_local import find_pg_bin, shared_server


@pytest.fixture
def pg_dsn() -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb/pg_ctl/postgres) on this machine")
    return shared_server().new_database()
