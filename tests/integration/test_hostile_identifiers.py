"""Schema, table and index names that need quoting, through every command.

The ``hostile_names`` scenario puts a tenant table in a schema, both with names that carry
a double quote, a space, mixed case, a dot and a semicolon, and declares two tenant indexes,
one named ``x" ON t (tenant_id); DROP TABLE canary; --``. ``migrate`` builds them,
``check_tenant_indexes`` and ``tenant_index_stats`` (with ``--explain``) read them in text
and JSON, ``repair_tenant_indexes`` rebuilds an INVALID one and creates a missing one, and
its ``--dry-run`` is fed to the real ``psql`` with ``ON_ERROR_STOP``. A ``canary`` table
beside them must survive all of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from tenant_indexes.sql import qualified_name, quote_identifier
from tests.scenarios.hostile_names.names import INJECTION, SCHEMA, SPACED, TABLE
from tests.support import manage

APP = "hostile_names"
QUALIFIED_TABLE = qualified_name(SCHEMA, TABLE)
TENANTS = ("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002")


def _run(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _json(name: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = manage.call(name, "--format", "json", *args)
    assert out, err
    return code, json.loads(out)


def _indexes() -> dict[str, bool]:
    """``{index name: indisvalid}`` of the scenario table."""
    rows = _run(
        "SELECT i.relname, x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = to_regclass(%s) AND NOT x.indisprimary",
        [QUALIFIED_TABLE],
    )
    return dict(rows)


def _canary() -> list[tuple[Any, ...]]:
    return _run("SELECT id FROM public.canary")


@pytest.fixture
def hostile_app() -> Iterator[None]:
    _run("CREATE TABLE public.canary (id integer)")
    _run("INSERT INTO public.canary VALUES (1)")
    _run(f"CREATE SCHEMA {quote_identifier(SCHEMA)}")
    _run("SELECT set_config('search_path', %s, false)", [f"{quote_identifier(SCHEMA)}, public"])
    try:
        with override_settings(
            INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.scenarios.hostile_names"],
            TENANT_INDEXES={"CHECK_SCHEMAS": [SCHEMA]},
        ):
            yield
    finally:
        _run("SET search_path TO DEFAULT")
        _run(f"DROP SCHEMA IF EXISTS {quote_identifier(SCHEMA)} CASCADE")
        _run("DROP TABLE IF EXISTS public.canary")
        _run("DELETE FROM django_migrations WHERE app = %s", [APP])


def _psql(sql: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    db = connection.settings_dict
    script = tmp_path / "repair.sql"
    script.write_text(sql)
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
    command = [shutil.which("psql") or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for flag, key in (("-h", "HOST"), ("-p", "PORT"), ("-U", "USER")):
        if db[key]:
            command += [flag, str(db[key])]
    command += ["-d", db["NAME"], "-f", str(script)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _break_indexes() -> None:
    """The injection-named index INVALID (a failed unique build), the other one missing."""
    _run(f"DROP INDEX {qualified_name(SCHEMA, SPACED)}")
    _run(f"DROP INDEX {qualified_name(SCHEMA, INJECTION)}")
    with pytest.raises(Exception, match="could not create unique index"):
        _run(
            f"CREATE UNIQUE INDEX CONCURRENTLY {quote_identifier(INJECTION)} "
            f"ON {QUALIFIED_TABLE} (tenant_id)"
        )
    assert _indexes() == {INJECTION: False}


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs the psql client")
@pytest.mark.django_db(transaction=True)
def test_hostile_names__round_trip_through_every_command(hostile_app: None, tmp_path: Path) -> None:
    # migrate builds both indexes, quoted.
    code, out, err = manage.call("migrate", APP, "--no-input")
    assert code == 0, out + err
    assert _indexes() == {INJECTION: True, SPACED: True}
    _run(
        f"INSERT INTO {QUALIFIED_TABLE} (tenant_id, n) "
        "SELECT (ARRAY[%s, %s]::uuid[])[1 + g %% 2], g FROM generate_series(1, 200) AS g",
        list(TENANTS),
    )
    _run(f"ANALYZE {QUALIFIED_TABLE}")

    # The check: both present and valid, in text and JSON.
    code, doc = _json("check_tenant_indexes", "--database", "default", APP)
    assert code == 0, doc
    states = {(ix["schema"], ix["table"], ix["name"]): ix["status"] for ix in doc["indexes"]}
    assert states == {(SCHEMA, TABLE, INJECTION): "ok", (SCHEMA, TABLE, SPACED): "ok"}, states
    code, out, err = manage.call("check_tenant_indexes", "--database", "default", APP)
    assert code == 0, out + err
    assert "Traceback" not in out + err

    # The statistics, with --explain: every index read, no database error.
    code, doc = _json("tenant_index_stats", "--database", "default", "--explain", APP)
    assert [d.get("error") for d in doc["databases"]] == [None], doc["databases"]
    assert {ix["name"] for ix in doc["indexes"]} >= {INJECTION, SPACED}, doc["indexes"]
    code, out, err = manage.call("tenant_index_stats", "--database", "default", "--explain", APP)
    assert "Traceback" not in out + err and "could not" not in out + err, out + err

    # The dry run, fed to psql, rebuilds the INVALID one, creates the missing one, and
    # drops nothing else.
    _break_indexes()
    code, doc = _json("check_tenant_indexes", "--database", "default", APP)
    assert code == 1
    hints = [f["hint"] for f in doc["findings"] if f["index"] == INJECTION]
    assert any(f"DROP INDEX CONCURRENTLY {qualified_name(SCHEMA, INJECTION)};" in h for h in hints)
    code, sql, err = manage.call("repair_tenant_indexes", "--database", "default", "--dry-run", APP)
    assert code == 1, sql + err  # needs repair
    assert f"DROP INDEX CONCURRENTLY IF EXISTS {qualified_name(SCHEMA, INJECTION)};" in sql, sql
    psql = _psql(sql, tmp_path)
    assert psql.returncode == 0, psql.stdout + psql.stderr + sql
    assert _indexes() == {INJECTION: True, SPACED: True}
    assert _canary() == [(1,)]

    # The repair itself.
    _break_indexes()
    code, out, err = manage.call("repair_tenant_indexes", "--database", "default", APP)
    assert code == 0, out + err
    assert _indexes() == {INJECTION: True, SPACED: True}
    code, doc = _json("check_tenant_indexes", "--database", "default", APP)
    assert code == 0 and doc["status"] == "ok", doc
    assert _canary() == [(1,)]
    assert _run("SELECT to_regclass('public.canary') IS NOT NULL") == [(True,)]
