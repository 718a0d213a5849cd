"""A migration with two concurrent operations, killed after the first one finished.

``qualified_table``'s ``0002`` (``atomic = False``) builds a tenant index, then a unique
constraint (its unique index concurrently, then ``USING INDEX``). ``manage.py migrate`` runs
in a subprocess. A blocker session holds, in an open transaction, an index of the very name
the second operation creates (on another table): the second ``CREATE UNIQUE INDEX
CONCURRENTLY`` waits on it, with the first operation's index built and valid. The test
SIGKILLs ``migrate`` there and ends its server session. The migration is not recorded; the
next ``migrate`` adopts the first operation's index (no second build) and carries out the
second: each operation is idempotent, so several of them can share one migration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.support import dbapi, manage
from tests.support.pg import invalid_indexes

ROOT = Path(__file__).resolve().parents[2]
APP = "qualified_table"
DEADLINE = 60.0  # seconds any awaited state may take before the test fails


def _env() -> dict[str, str]:
    db = connection.settings_dict
    entry = {k: db[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    config = {"BUILD_LOCK_TIMEOUT": "60s", "BUILD_CLIENT_CHECK_INTERVAL": "100ms"}
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.scenario_settings",
        "TENANT_INDEXES_SCENARIO_DB": json.dumps(entry),
        "TENANT_INDEXES_SCENARIO_CONFIG": json.dumps(config),
        "TENANT_INDEXES_SCENARIO_APPS": json.dumps([f"tests.scenarios.{APP}"]),
        "PYTHONWARNINGS": "ignore",
        "PYTHONUNBUFFERED": "1",
    }


def _manage(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _migrate(*args: str) -> tuple[int, str]:
    proc = _manage("migrate", APP, *args, "--no-input", "-v", "1")
    out, _ = proc.communicate(timeout=DEADLINE * 2)
    return proc.returncode, out


def _query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def _objects() -> dict[str, tuple[bool, str]]:
    """Index name -> (valid, constraint type or '') on billing.invoice."""
    rows = _query(
        "SELECT i.relname, x.indisvalid, coalesce(c.contype::text, '') FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid "
        "WHERE x.indrelid = to_regclass('billing.invoice') AND NOT x.indisprimary"
    )
    return {name: (valid, kind) for name, valid, kind in rows}


def _recorded() -> list[str]:
    rows = _query("SELECT name FROM django_migrations WHERE app = %s ORDER BY name", [APP])
    return [name for (name,) in rows]


@pytest.fixture
def billing() -> Iterator[None]:
    _query("CREATE SCHEMA billing")
    _query("CREATE TABLE billing.elsewhere (x int)")
    try:
        yield
    finally:
        _query("DELETE FROM django_migrations WHERE app = %s", [APP])
        _query("DROP SCHEMA billing CASCADE")


@pytest.mark.django_db(transaction=True)
def test_migration__killed_after_its_first_concurrent_operation_finishes_on_rerun(
    billing: None,
) -> None:
    code, out = _migrate("0001")
    assert code == 0, out
    blocker = dbapi.connect_like(connection.settings_dict)
    try:
        blocker.execute("BEGIN")
        # Uncommitted: invisible to the operation's own look-up, but its CREATE waits on it.
        blocker.execute("CREATE INDEX invoice_tenant_number ON billing.elsewhere (x)")
        proc = _manage("migrate", APP, "--no-input", "-v", "1")
        waiting = manage.wait_for(
            "the second operation's CREATE UNIQUE INDEX to wait on the blocker",
            lambda: _query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%%invoice_tenant_number%%'"
            ),
        )
        # The first operation is done: its index is there and valid.
        assert _objects() == {"invoice_tenant_status": (True, "")}
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=DEADLINE)
        _query("SELECT pg_terminate_backend(%s)", [waiting[0][0]])
        manage.wait_for(
            "the killed migrate's session to end",
            lambda: not _query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [waiting[0][0]]),
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert _recorded() == ["0001_initial"]  # not recorded: the next migrate runs it again
    assert _objects() == {"invoice_tenant_status": (True, "")}
    code, out = _migrate()
    assert code == 0, out
    assert 'adopted the existing valid index "invoice_tenant_status"' in out, out
    assert 'built index "invoice_tenant_status"' not in out
    assert 'built unique constraint "invoice_tenant_number"' in out, out
    assert _recorded() == ["0001_initial", "0002_invoice_indexes"]
    assert _objects() == {
        "invoice_tenant_status": (True, ""),
        "invoice_tenant_number": (True, "u"),
    }
    assert invalid_indexes() == []
