"""Builds, the check and the health view behind a real PgBouncer.

- transaction pooling: ``migrate`` and ``repair_tenant_indexes`` refuse with exit 2 and the
  remedy, build nothing, and a concurrent client of the same pool sees no build setting;
- session pooling with a pool of 1: the build's progress monitor and pooler probe cannot
  get a server connection; the build finishes anyway (the pooler's query_wait_timeout is
  far beyond the test's deadline, so a build that waited for its monitor would fail);
- ``check_tenant_indexes`` and the health view use no session state: they answer through
  both pool modes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.integration.test_concurrent_builders import ROWS
from tests.integration.test_operations_killed import (
    DEADLINE,
    INDEX,
    SCENARIO_CONFIG,
    _index_state,
    _migrate,
)
from tests.support import dbapi, manage
from tests.support.pgbouncer import pgbouncer


def _run(entry: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    options = {"OPTIONS": entry["OPTIONS"]} if "OPTIONS" in entry else {}
    db = manage.database_entry(entry, **options, DISABLE_SERVER_SIDE_CURSORS=True)
    return manage.run(manage.scenario_env(db, SCENARIO_CONFIG), *args, timeout=DEADLINE)


def _client(entry: dict[str, Any]) -> dbapi.Session:
    return dbapi.connect_like(entry)


@pytest.fixture
def table(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock(), manage.killed_build_table(ROWS):
        yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pool_size", [1, 3])
@pytest.mark.parametrize(
    "command", [("migrate", "killed_build", "--no-input"), ("repair_tenant_indexes",)]
)
def test_transaction_pooling__build_refused_exit_2_nothing_leaks(
    table: None, pool_size: int, command: tuple[str, ...]
) -> None:
    with pgbouncer(connection.settings_dict, pool_mode="transaction", pool_size=pool_size) as entry:
        with _client(entry) as other:
            result = _run(entry, *command)
            leaked = {other.execute("SHOW lock_timeout").fetchone()[0] for _ in range(6)}
            locks = other.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            ).fetchone()[0]
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "transaction pooler" in result.stderr, result.stderr
    assert 'DATABASES["direct"]' in result.stderr, result.stderr
    assert leaked == {"0"}
    assert locks == 0
    assert _index_state() is None


@pytest.mark.django_db(transaction=True)
def test_session_pool_of_one__build_finishes_without_its_monitor(table: None) -> None:
    extra = {"query_wait_timeout": "300"}
    with pgbouncer(connection.settings_dict, pool_mode="session", pool_size=1, extra=extra) as e:
        result = _run(e, "migrate", "killed_build", "--no-input")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'built index "{INDEX}"' in result.stdout, result.stdout
    assert _index_state() == (True, True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_check_and_health_view_work_through_the_pooler(table: None, pool_mode: str) -> None:
    assert _migrate()[0] == 0
    with pgbouncer(connection.settings_dict, pool_mode=pool_mode, pool_size=2) as entry:
        check = _run(entry, "check_tenant_indexes", "killed_build", "--format", "json")
        view = _run(
            entry,
            "shell",
            "-c",
            "from django.test import Client; r = Client().get('/health/tenant-indexes/'); "
            "print(r.status_code, r.content.decode())",
        )
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["status"] == "ok"
    assert view.returncode == 0, view.stderr
    assert '200 {"status": "ok"}' in view.stdout, view.stdout
