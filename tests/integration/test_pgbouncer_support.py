"""The test PgBouncer is a real transaction pooler: a proof the pooler tests rely on."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.support import dbapi
from tests.support.pgbouncer import pgbouncer


def _connect(entry: dict) -> dbapi.Session:
    return dbapi.connect_like(entry)


@pytest.mark.django_db
def test_pgbouncer__transaction_pool_shares_one_server_session_between_clients() -> None:
    """With a pool of 1, a session setting made by one client is seen by the other: the
    leak that session state behind a transaction pooler causes."""
    with pgbouncer(connection.settings_dict, pool_mode="transaction", pool_size=1) as entry:
        with _connect(entry) as first, _connect(entry) as second:
            first.execute("SET lock_timeout = '7s'")
            leaked = second.execute("SHOW lock_timeout").fetchone()[0]
            pids = {
                first.execute("SELECT pg_backend_pid()").fetchone()[0],
                second.execute("SELECT pg_backend_pid()").fetchone()[0],
            }
    assert leaked == "7s"
    assert len(pids) == 1


@pytest.mark.django_db
def test_pgbouncer__session_pool_keeps_settings_per_client() -> None:
    with pgbouncer(connection.settings_dict, pool_mode="session", pool_size=2) as entry:
        with _connect(entry) as first, _connect(entry) as second:
            first.execute("SET lock_timeout = '7s'")
            assert second.execute("SHOW lock_timeout").fetchone()[0] == "0"
