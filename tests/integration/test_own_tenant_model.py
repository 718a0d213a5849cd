"""A project of its own: only ``"tenant_indexes"`` installed, its own ``Organization``.

The project (``tests/scenarios/own_tenant``) names its tenant model once in
``TENANT_INDEXES["TENANT_MODEL"]`` (a bigint key) and calls every tenant foreign key
``organization``. Each step runs ``manage.py`` in a subprocess with the project's settings
against a database of its own, which already holds an unrelated ``users`` table, as an
existing SaaS database would: ``makemigrations`` (the tenant indexes, concurrently),
``migrate``, ``check_tenant_indexes``, ``check --database``, ``repair_tenant_indexes``
and ``shell``.

The last test is a project with neither ``TENANT_MODEL`` nor the help desk and a bare
``TenantForeignKey()``: ``manage.py check`` reports ``tenant_indexes.E010``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper

from tests.support import manage
from tests.support.helpdesk import HELPDESK_TABLES

MIGRATIONS = manage.ROOT / "tests" / "scenarios" / "own_tenant" / "accounts" / "migrations"
OWN_TABLES = {"organizations", "projects", "members", "invoices"}
# The project's declared tenant indexes and their key columns (None: an expression).
DECLARED = {
    "projects_org_status": ("projects", ["organization_id", "status"]),
    "members_org_lower_email": ("members", ["organization_id", None]),
}


@dataclass
class OwnProject:
    """The scenario project: its environment, its database and its migrations copy."""

    env: dict[str, str]
    database: DatabaseWrapper
    migrations: Path
    makemigrations: subprocess.CompletedProcess[str]

    def manage(self, *args: str, settings: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if settings:
            env["DJANGO_SETTINGS_MODULE"] = settings
        return run_manage(env, *args)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.database.cursor() as cursor:
            cursor.execute(sql, params or [])
            return list(cursor.fetchall())

    def execute(self, sql: str) -> None:
        with self.database.cursor() as cursor:
            cursor.execute(sql)

    def index_keys(self, table: str) -> dict[str, list[str | None]]:
        """``{index: key columns}`` of one table, ``None`` for an expression key."""
        rows = self.query(
            """
            SELECT i.relname,
                   array(SELECT a.attname
                           FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n)
                           LEFT JOIN pg_attribute a
                             ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
                          ORDER BY k.n)
              FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid
             WHERE ix.indrelid = to_regclass(%s)
            """,
            [table],
        )
        return {name: list(keys) for name, keys in rows}


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return manage.run(env, *args, timeout=300)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def project(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnProject]:
    """The project migrated on a fresh database that already has a ``users`` table."""
    name = f"ti_own_tenant_{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        # CREATE DATABASE from the maintenance database of the same server.
        server = DatabaseWrapper(
            {**connection.settings_dict, "NAME": "postgres"}, alias="own_tenant_server"
        )
        database = DatabaseWrapper({**connection.settings_dict, "NAME": name}, alias="own_tenant")
        with server.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            with database.cursor() as cursor:
                cursor.execute("CREATE TABLE users (id integer PRIMARY KEY, login text NOT NULL)")
                cursor.execute("INSERT INTO users VALUES (1, 'ada')")
            package = tmp_path_factory.mktemp("own_tenant")
            shutil.copytree(
                MIGRATIONS,
                package / "own_tenant_migrations",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            env = manage.scenario_env(
                manage.database_entry(database.settings_dict),
                settings="tests.scenarios.own_tenant.settings",
                OWN_TENANT_MIGRATIONS="own_tenant_migrations",
                PYTHONPATH=os.pathsep.join([str(package), str(manage.ROOT)]),
            )
            made = run_manage(env, "makemigrations", "own_tenant_accounts")
            _ok(made)
            _ok(run_manage(env, "migrate", "--no-input"))
            yield OwnProject(env, database, package / "own_tenant_migrations", made)
        finally:
            database.close()
            with server.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            server.close()


def test_own_tenant__makemigrations_builds_the_tenant_indexes_concurrently(
    project: OwnProject,
) -> None:
    (second,) = [p for p in project.migrations.glob("0002_*.py")]
    source = second.read_text()
    assert "atomic = False" in source
    assert source.count("AddIndexConcurrently(") == 3
    assert "AddIndex(" not in source
    # The tenant field is found on the model, never written into the migration.
    assert "tenant_field" not in source and "organization" not in source
    assert "Lower('email')" in source
    assert "field(s) organization, status of model project" in project.makemigrations.stdout
    _ok(project.manage("makemigrations", "--check", "--dry-run"))


def test_own_tenant__migrate_creates_no_helpdesk_table(project: OwnProject) -> None:
    tables = {
        t for (t,) in project.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert OWN_TABLES <= tables
    assert tables & set(HELPDESK_TABLES) == {"users"}  # the project's own, made beforehand
    # The core's only table is its usage history; no help-desk table.
    core = [t for t in tables if t.startswith("tenant_indexes")]
    assert core == ["tenant_indexes_usage_snapshot"]
    applied = {app for (app,) in project.query("SELECT DISTINCT app FROM django_migrations")}
    assert applied == {"contenttypes", "auth", "tenant_indexes", "own_tenant_accounts"}


def test_own_tenant__existing_users_table_is_untouched(project: OwnProject) -> None:
    columns = project.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'users' ORDER BY ordinal_position"
    )
    assert columns == [("id", "integer"), ("login", "text")]
    assert project.query("SELECT id, login FROM users") == [(1, "ada")]
    assert project.index_keys("users") == {"users_pkey": ["id"]}


def test_own_tenant__indexes_lead_with_the_organization_column(project: OwnProject) -> None:
    for index, (table, keys) in DECLARED.items():
        assert project.index_keys(table)[index] == keys
    (invoice_index,) = [i for i in project.index_keys("invoices") if i != "invoices_pkey"]
    assert project.index_keys("invoices")[invoice_index] == ["organization_id"]
    # No implicit (organization_id) foreign-key index beside the declared ones.
    assert sorted(project.index_keys("projects")) == ["projects_org_status", "projects_pkey"]
    key_type = project.query(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'projects' AND column_name = 'organization_id'"
    )
    assert key_type == [("bigint",)]


def _check_json(project: OwnProject) -> tuple[int, dict[str, Any]]:
    result = project.manage("check_tenant_indexes", "--format", "json")
    return result.returncode, json.loads(result.stdout)


def test_own_tenant__check_is_green_then_red_after_an_index_is_dropped(
    project: OwnProject,
) -> None:
    code, doc = _check_json(project)
    assert (code, doc["status"], doc["findings"]) == (0, "ok", [])
    assert {ix["table"] for ix in doc["indexes"]} == {"projects", "members", "invoices"}
    assert all(ix["columns"][0] == "organization_id" for ix in doc["indexes"])
    system = project.manage("check", "--database", "default")
    _ok(system)
    assert "tenant_indexes.E005" not in system.stdout + system.stderr

    project.execute("DROP INDEX projects_org_status")
    try:
        code, doc = _check_json(project)
        assert (code, doc["status"]) == (1, "error")
        # The missing index, and with it the table's only tenant-leading one.
        assert sorted((f["id"], f["table"], f["index"]) for f in doc["findings"]) == [
            ("tenant_indexes.E001", "projects", "projects_org_status"),
            ("tenant_indexes.E004", "projects", None),
        ]
        system = project.manage("check", "--database", "default")
        assert system.returncode == 1
        assert "tenant_indexes.E001" in system.stderr
    finally:
        _ok(project.manage("repair_tenant_indexes"))
    code, doc = _check_json(project)
    assert (code, doc["status"]) == (0, "ok")


SHELL = """
import json
from tenant_indexes import TenantNotSetError, get_tenant_model, tenant_context
from tests.scenarios.own_tenant.accounts.models import Invoice, Member, Organization, Project

a = Organization.objects.create(name="a")
b = Organization.objects.create(name="b")
Project.objects.create(organization=a, name="pa")
Project.objects.create(organization=b, name="pb")
Invoice.objects.create(organization=a, number="1")
Member.objects.create(organization=a, email="Ann@a.example")
with tenant_context(b):
    Member.objects.create(email="bob@b.example")
    members_b = [m.email for m in Member.objects.all()]
try:
    Member.objects.count()
    unscoped = "no error"
except TenantNotSetError:
    unscoped = "TenantNotSetError"
print(json.dumps({
    "projects_a": [p.name for p in Project.objects.for_tenant(a)],
    "projects_b": [p.name for p in Project.objects.for_tenant(b.pk)],
    "invoices": [Invoice.objects.for_tenant(a).count(), Invoice.objects.for_tenant(b).count()],
    "members_a": [m.email for m in Member.objects.for_tenant(a)],
    "members_b": members_b,
    "unscoped": unscoped,
    "sql": str(Project.objects.for_tenant(a).query),
    "tenant_model": get_tenant_model()._meta.label,
    "invoice_tenant": Invoice._meta.get_field("organization").related_model._meta.label,
}))
"""


def test_own_tenant__for_tenant_and_the_scoped_manager_work(project: OwnProject) -> None:
    out = _ok(project.manage("shell", "--verbosity", "0", "-c", SHELL))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["projects_a"] == ["pa"]
    assert result["projects_b"] == ["pb"]
    assert result["invoices"] == [1, 0]
    assert result["members_a"] == ["Ann@a.example"]
    assert result["members_b"] == ["bob@b.example"]
    assert result["unscoped"] == "TenantNotSetError"
    assert '"projects"."organization_id" =' in result["sql"]
    assert "JOIN" not in result["sql"]
    assert result["tenant_model"] == result["invoice_tenant"] == "own_tenant_accounts.Organization"


def test_no_tenant_model__a_bare_tenant_foreign_key_is_e010() -> None:
    """Neither TENANT_MODEL nor the help desk: the models load and the check says why."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.scenarios.no_tenant_model.settings"}
    result = run_manage(env, "check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "tenant_indexes.E010" in result.stderr
    assert "no_tenant_model.Note.tenant" in result.stderr
    assert "TENANT_INDEXES = {'TENANT_MODEL': 'accounts.Organization'}" in result.stderr
