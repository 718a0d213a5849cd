"""django-tenants, the real package: 50 tenant schemas migrated, one drifted, healed.

The project (``tests/djtenants``) runs in subprocesses with its own settings and
django-tenants' backend, against a database of its own: ``migrate_schemas --shared``,
50 tenants (``make_tenants``), the shop's table by the standard executor, then its
concurrent index (``AddIndexConcurrently``, ``atomic = False``) by the multiprocessing one.
No ``CHECK_SCHEMAS``: the check and the repair find the schemas in the tenant model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper

pytest.importorskip("django_tenants")

ROOT = Path(__file__).resolve().parents[2]
TENANTS = [f"tenant_{n:03d}" for n in range(1, 51)]
INDEX = "order_tenant_status"


@dataclass
class TenantsProject:
    env: dict[str, str]
    database: DatabaseWrapper

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.manage(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.database.cursor() as cursor:
            cursor.execute(sql, params or [])
            return list(cursor.fetchall())

    def index_schemas(self) -> dict[str, bool]:
        """``{schema: valid}`` of every copy of the shop's index."""
        rows = self.query(
            "SELECT n.nspname, x.indisvalid FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_namespace n ON n.oid = i.relnamespace WHERE i.relname = %s",
            [INDEX],
        )
        return dict(rows)

    def check(self) -> tuple[int, dict[str, Any]]:
        result = self.manage("check_tenant_indexes", "--format", "json")
        assert result.stdout, result.stderr
        return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def project(django_db_setup: None, django_db_blocker: Any) -> Iterator[TenantsProject]:
    name = f"ti_djtenants_{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        server = DatabaseWrapper(
            {**connection.settings_dict, "NAME": "postgres"}, alias="djtenants_server"
        )
        database = DatabaseWrapper({**connection.settings_dict, "NAME": name}, alias="djtenants")
        with server.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            keys = ("ENGINE", "NAME", "USER", "HOST", "PASSWORD", "PORT")
            entry = {k: database.settings_dict[k] for k in keys}
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.djtenants.settings",
                "TENANT_INDEXES_SCENARIO_DB": json.dumps(entry),
                "PYTHONPATH": str(ROOT),
            }
            project = TenantsProject(env, database)
            project.ok("migrate_schemas", "--shared", "--noinput")
            project.ok("make_tenants", str(len(TENANTS)))
            project.ok("migrate_schemas", "djt_shop", "0001", "--noinput")
            yield project
        finally:
            database.close()
            with server.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            server.close()


def test_djtenants__migrate_schemas_builds_the_index_concurrently_in_every_schema(
    project: TenantsProject,
) -> None:
    assert project.index_schemas() == {}
    out = project.ok("migrate_schemas", "--executor=multiprocessing", "--noinput")
    # Every tenant's copy, valid; none in public (the shop is a tenant app only).
    assert project.index_schemas() == dict.fromkeys(TENANTS, True)
    assert out.count(f'built index "{INDEX}" on "shop_order" concurrently') == len(TENANTS)
    # The builds ran side by side: the advisory lock is per (schema, index), so none of
    # them waited for another schema's build of the same index name.
    assert "waiting for another build" not in out

    # Back, and forward again, the other way round.
    project.ok("migrate_schemas", "djt_shop", "0001", "--executor=multiprocessing", "--noinput")
    assert project.index_schemas() == {}
    project.ok("migrate_schemas", "--noinput")
    assert project.index_schemas() == dict.fromkeys(TENANTS, True)

    code, doc = project.check()
    assert (code, doc["status"], doc["findings"]) == (0, "ok", [])
    checked = {(ix["schema"], ix["table"]) for ix in doc["indexes"] if ix["name"] == INDEX}
    assert checked == {(t, "shop_order") for t in TENANTS}
    # The shared app's tenant table (the domain's tenant key), in public only.
    shared = {(ix["schema"], ix["table"]) for ix in doc["indexes"] if ix["name"] != INDEX}
    assert shared == {("public", "djt_customers_domain")}
    schemas = project.ok(
        "shell",
        "-c",
        "from tenant_indexes.targeting import check_schemas as c; print(c('default'))",
    )
    assert schemas.strip().splitlines()[-1] == repr(TENANTS)
    # Django 5.2's commands.E001: django-tenants' migrate shares makemigrations' autodetector.
    project.ok("check")


def test_djtenants__check_reports_exactly_the_drifted_schema_and_repair_heals_it(
    project: TenantsProject,
) -> None:
    if project.index_schemas() != dict.fromkeys(TENANTS, True):
        project.ok("migrate_schemas", "--noinput")
    with project.database.cursor() as cursor:
        cursor.execute(f'DROP INDEX "tenant_017"."{INDEX}"')
    code, doc = project.check()
    assert (code, doc["status"]) == (1, "error")
    # One pass over every schema: the one that lacks what the 49 others have, nothing else.
    assert sorted((f["id"], f["schema"], f["table"], f["index"]) for f in doc["findings"]) == [
        ("tenant_indexes.E001", "tenant_017", "shop_order", INDEX),
        ("tenant_indexes.E004", "tenant_017", "shop_order", None),
    ]

    dry = project.manage("repair_tenant_indexes", "--dry-run")
    assert f'CREATE INDEX CONCURRENTLY "{INDEX}" ON "tenant_017"."shop_order"' in dry.stdout
    assert dry.stdout.count("CREATE INDEX CONCURRENTLY") == 1
    project.ok("repair_tenant_indexes", "--jobs", "4")
    assert project.index_schemas() == dict.fromkeys(TENANTS, True)
    code, doc = project.check()
    assert (code, doc["status"], doc["findings"]) == (0, "ok", [])


def test_djtenants__an_undeclared_index_one_schema_lacks_is_drift(project: TenantsProject) -> None:
    """An index made by hand in 49 schemas, no model declaring it: W040 on the 50th."""
    if project.index_schemas() != dict.fromkeys(TENANTS, True):
        project.ok("migrate_schemas", "--noinput")
    with project.database.cursor() as cursor:
        for schema in TENANTS:
            if schema != "tenant_033":
                cursor.execute(f'CREATE INDEX order_by_status ON "{schema}".shop_order (status)')
    try:
        code, doc = project.check()
        found = [(f["id"], f["schema"], f["table"], f["index"]) for f in doc["findings"]]
        assert found == [("tenant_indexes.W040", "tenant_033", "shop_order", "order_by_status")]
        assert (code, doc["status"]) == (0, "warning")
        (hint,) = [f["hint"] for f in doc["findings"]]
        create = hint.split(": ", 1)[1].split("; or drop", 1)[0]
        assert create.startswith('CREATE INDEX CONCURRENTLY "order_by_status" ON "tenant_033"')
        with project.database.cursor() as cursor:
            cursor.execute(create)
        code, doc = project.check()
        assert (code, doc["status"], doc["findings"]) == (0, "ok", [])
    finally:
        with project.database.cursor() as cursor:
            for schema in TENANTS:
                cursor.execute(f'DROP INDEX IF EXISTS "{schema}".order_by_status')
