"""Row-level security behind a real PgBouncer in transaction pooling: the tenant never leaks.

Two clients share ONE server connection (pool size 1) and run 1,000 transactions in a random
interleaving, each as the application's non-owner role. A transaction that sets its tenant the
way the scope does (``set_config(..., true)``) sees only that tenant's rows; one that sets
nothing sees no rows and finds no value left by the other client. A control shows the detector
works: a session-level ``set_config(..., false)`` does leak to the other client.
"""

from __future__ import annotations

import os
import random

import pytest
from django.db import connection

from tenant_indexes.helpdesk.models import Tenant
from tenant_indexes.rls import rls_setting
from tests.scopingapp.models import Secret
from tests.support import dbapi
from tests.support.pgbouncer import pgbouncer

ROLE = f"ti_bouncer_app_{os.getpid()}"


def _connect(entry: dict) -> dbapi.Session:
    # dbapi sessions make no prepared statements, which a transaction pool would share.
    return dbapi.connect_like(entry)


@pytest.fixture
def committed_rows(transactional_db: None):  # type: ignore[no-untyped-def]
    a = Tenant.objects.create(name="A", slug="a")
    b = Tenant.objects.create(name="B", slug="b")
    Secret.objects.bulk_create(
        [Secret(tenant=a, body=f"a-{i}") for i in range(3)]
        + [Secret(tenant=b, body=f"b-{i}") for i in range(2)]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {ROLE} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
        cursor.execute(f"GRANT SELECT ON scopingapp_secret TO {ROLE}")
    try:
        yield a, b
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {ROLE}")
            cursor.execute(f"DROP ROLE {ROLE}")


def _transaction(client: dbapi.Session, tenant: object | None) -> tuple[object, ...]:
    name = rls_setting()
    client.execute("BEGIN")
    try:
        client.execute(f"SET LOCAL ROLE {ROLE}")
        leftover = client.execute("SELECT current_setting(%s, true)", [name]).fetchone()[0]
        if tenant is not None:
            client.execute("SELECT set_config(%s, %s, true)", [name, str(tenant)])
        count, tenants = client.execute(
            "SELECT count(*), array_agg(DISTINCT tenant_id::text) FROM scopingapp_secret"
        ).fetchone()
        pid = client.execute("SELECT pg_backend_pid()").fetchone()[0]
    finally:
        client.execute("COMMIT")
    return leftover, count, tenants, pid


def test_rls_pgbouncer__1000_interleaved_transactions_never_leak(committed_rows) -> None:  # type: ignore[no-untyped-def]
    a, b = committed_rows
    rows = {str(a.pk): 3, str(b.pk): 2}
    rng = random.Random(20261201)
    pids, outcomes = set(), {"set": 0, "unset": 0}
    with pgbouncer(connection.settings_dict, pool_mode="transaction", pool_size=1) as entry:
        with _connect(entry) as first, _connect(entry) as second:
            clients = [(first, str(a.pk)), (second, str(b.pk))]
            for _ in range(1000):
                client, tenant = rng.choice(clients)
                sets = rng.random() < 0.7
                leftover, count, tenants, pid = _transaction(client, tenant if sets else None)
                pids.add(pid)
                assert leftover in (None, ""), "a tenant value reached another transaction"
                if sets:
                    assert (count, tenants) == (rows[tenant], [tenant])
                    outcomes["set"] += 1
                else:
                    assert count == 0  # no tenant: no rows, never the other client's
                    outcomes["unset"] += 1
            # The control: a session-level value does leak through the shared connection.
            first.execute("SELECT set_config(%s, %s, false)", [rls_setting(), str(a.pk)])
            leaked, count, _, _ = _transaction(second, None)
            first.execute("RESET ALL")
    assert len(pids) == 1  # both clients really shared one server connection
    assert outcomes["set"] > 500 and outcomes["unset"] > 200
    assert (leaked, count) == (str(a.pk), 3)
