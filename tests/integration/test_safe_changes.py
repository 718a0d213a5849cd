"""Every tenant index change, from makemigrations to migrate, under a live writer.

Each step changes the ``safe_changes`` model's state, lets makemigrations' autodetector
write the migration into a temporary package, and applies it while a writer inserts rows.
After every step: the operations and their SQL plan (no statement that blocks writes), no
lock wait of the writer in ``pg_locks`` at any sample, a valid tenant-leading index at every
sample and after the step, no INVALID index. A control run with Django's own autodetector
shows the same assertions catch the blocking plan.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RenameIndex
from django.db.migrations.questioner import NonInteractiveMigrationQuestioner
from django.db.migrations.state import ModelState
from django.db.models.functions import Lower
from django.test.utils import CaptureQueriesContext, override_settings

import tenant_indexes.fields
from tenant_indexes import TenantIndex
from tenant_indexes.autodetector import AtomicAwareMigrationWriter, TenantIndexAutodetector
from tenant_indexes.operations import AddIndexConcurrently, RemoveIndexConcurrently
from tenant_indexes.safe_changes import (
    AddUniqueConstraintConcurrently,
    ChangeIndexConcurrently,
    ConvertToTenantForeignKey,
)
from tests.support.livewriter import LiveWriter
from tests.support.pg import invalid_indexes, valid_leading_index_count

APP = "safe_changes"
ROOT = Path(__file__).resolve().parents[2]
TABLE = "safe_items"
TENANT = "00000000-0000-0000-0000-0000000000aa"
INSERT = (
    f"INSERT INTO {TABLE} (tenant_id, status, code, email) "
    f"VALUES ('{TENANT}', 'open', 'c', %s || '@example.com')"
)

# Statements that take a lock blocking the table's writes for longer than a catalog update.
BLOCKING = [
    re.compile(r"^\s*CREATE (UNIQUE )?INDEX (?!CONCURRENTLY)", re.I),
    re.compile(r"^\s*DROP INDEX (?!CONCURRENTLY)", re.I),
    re.compile(r"ALTER TABLE .* DROP CONSTRAINT", re.I),  # after SET CONSTRAINTS ...;
    re.compile(r"^\s*ALTER TABLE .* ADD CONSTRAINT .* (FOREIGN KEY|UNIQUE \()", re.I),
    re.compile(r"^\s*ALTER TABLE .* ALTER COLUMN", re.I),
]


# What a writer may wait behind for the length of a catalog update: these statements change
# the catalogs only (no scan, no rewrite, no validation) and run with a lock_timeout; a
# sample may also find that short transaction at its COMMIT. Any other statement in the
# transaction would show up in the plan assertion (blocking_statements) instead.
CATALOG_ONLY = re.compile(
    r"^\s*(ALTER (INDEX .* RENAME TO|TABLE .* ADD CONSTRAINT .* UNIQUE USING INDEX)|COMMIT$)",
    re.I,
)


def waits_beyond_a_catalog_update(report: Any) -> list[str]:
    return [query for query in report.blockers if not CATALOG_ONLY.search(query)]


def blocking_statements(sqls: list[str]) -> list[str]:
    return [sql for sql in sqls if any(rule.search(sql) for rule in BLOCKING)]


def item_state(
    *,
    tenant_fk: str = "tenant",
    indexes: list[Any] | None = None,
    constraints: list[Any] | None = None,
) -> ModelState:
    if tenant_fk == "plain":
        tenant = models.ForeignKey(on_delete=models.PROTECT, to="tenant_indexes_helpdesk.tenant")
    else:
        tenant = tenant_indexes.fields.TenantForeignKey(to="tenant_indexes_helpdesk.tenant")
    return ModelState(
        APP,
        "Item",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("tenant", tenant),
            ("status", models.CharField(max_length=20)),
            ("code", models.CharField(max_length=20)),
            ("email", models.CharField(max_length=100)),
        ],
        options={"db_table": TABLE, "indexes": indexes or [], "constraints": constraints or []},
    )


STATUS = TenantIndex(fields=["status"], name="safe_items_tenant_status")
STATUS_CODE = TenantIndex(fields=["status", "code"], name="safe_items_tenant_status")
CODE = TenantIndex(fields=["code"], name="safe_items_tenant_code")
CODE_RENAMED = TenantIndex(fields=["code"], name="safe_items_tenant_code2")
CODE_DESC = TenantIndex(fields=["-code"], name="safe_items_tenant_code_desc")
LOWER_EMAIL = TenantIndex(Lower("email"), name="safe_items_tenant_lower_email")
UNIQUE_EMAIL = models.UniqueConstraint(fields=["tenant", "email"], name="safe_items_tenant_email")

# (what changes, the model state after it, the operations makemigrations must write)
STEPS: list[tuple[str, ModelState, list[type]]] = [
    (
        "FK to TenantForeignKey",
        item_state(indexes=[STATUS]),
        [AddIndexConcurrently, ConvertToTenantForeignKey],
    ),
    ("add", item_state(indexes=[STATUS, CODE]), [AddIndexConcurrently]),
    ("same-name change", item_state(indexes=[STATUS_CODE, CODE]), [ChangeIndexConcurrently]),
    ("rename", item_state(indexes=[STATUS_CODE, CODE_RENAMED]), [RenameIndex]),
    (
        "change under another name",
        item_state(indexes=[STATUS_CODE, CODE_DESC]),
        [AddIndexConcurrently, RemoveIndexConcurrently],
    ),
    (
        "unique constraint with the tenant",
        item_state(indexes=[STATUS_CODE, CODE_DESC], constraints=[UNIQUE_EMAIL]),
        [AddUniqueConstraintConcurrently],
    ),
    (
        "expression index",
        item_state(indexes=[STATUS_CODE, CODE_DESC, LOWER_EMAIL], constraints=[UNIQUE_EMAIL]),
        [AddIndexConcurrently],
    ),
    (
        "remove",
        item_state(indexes=[STATUS_CODE, LOWER_EMAIL], constraints=[UNIQUE_EMAIL]),
        [RemoveIndexConcurrently],
    ),
]


@pytest.fixture
def migrations_package(tmp_path: Path) -> Iterator[Path]:
    name = "safe_changes_generated"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.scenarios.safe_changes"],
        MIGRATION_MODULES={APP: name},
    ):
        try:
            yield package
        finally:
            try:
                call_command("migrate", APP, "zero", verbosity=0)
            finally:
                sys.path.remove(str(tmp_path))
                for module in [m for m in sys.modules if m.startswith(name)]:
                    del sys.modules[module]


def make_migrations(package: Path, state: ModelState, autodetector: type) -> list[Any]:
    """What makemigrations writes for ``state``, written into ``package`` (returned loaded)."""
    importlib.invalidate_caches()
    loader = MigrationLoader(None, ignore_no_migrations=True)
    from_state = loader.project_state()
    to_state = from_state.clone()
    if (APP, "item") in to_state.models:
        to_state.remove_model(APP, "item")
    to_state.add_model(state.clone())
    detector = autodetector(from_state, to_state, NonInteractiveMigrationQuestioner())
    changes = detector.changes(graph=loader.graph, trim_to_apps={APP}, convert_apps={APP})
    written = []
    for migration in changes.get(APP, []):
        text = AtomicAwareMigrationWriter(migration).as_string()
        (package / f"{migration.name}.py").write_text(text)
        written.append(migration)
    return written


def apply_step(migrations: list[Any]) -> tuple[list[str], Any]:
    """Migrate to each new migration in turn under a live writer; returns the SQL and the
    writer's report, and checks the table after every migration."""
    importlib.invalidate_caches()
    sqls: list[str] = []
    with LiveWriter(TABLE, INSERT) as writer:
        for migration in migrations:
            with CaptureQueriesContext(connection) as queries:
                call_command("migrate", APP, migration.name, verbosity=0)
            sqls.extend(q["sql"] for q in queries.captured_queries)
            assert valid_leading_index_count(TABLE, "tenant_id") >= 1, migration.name
            assert invalid_indexes() == [], migration.name
    return sqls, writer.report


def insert_tenant() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants (id, name, slug, created_at) VALUES (%s, 't', 't', now()) "
            "ON CONFLICT DO NOTHING",
            [TENANT],
        )


@pytest.mark.django_db(transaction=True)
def test_safe_changes__every_step_is_online_under_a_live_writer(migrations_package: Path) -> None:
    initial = make_migrations(
        migrations_package,
        item_state(tenant_fk="plain"),
        TenantIndexAutodetector,
    )
    call_command("migrate", APP, initial[-1].name, verbosity=0)
    insert_tenant()
    for what, state, expected in STEPS:
        migrations = make_migrations(migrations_package, state, TenantIndexAutodetector)
        operations = [op for m in migrations for op in m.operations]
        assert [type(op) for op in operations] == expected, what
        for migration in migrations:
            if any(type(op) is not RenameIndex for op in migration.operations):
                assert migration.atomic is False, what
        sqls, report = apply_step(migrations)
        assert blocking_statements(sqls) == [], what
        assert report.errors == [], what
        assert report.rows > 0, what
        assert report.samples > 0, what
        assert waits_beyond_a_catalog_update(report) == [], (what, report.blockers)
        assert report.unindexed_samples == 0, (what, report)
    # Nothing left to generate, and every declared index is there, under its own name.
    assert make_migrations(migrations_package, STEPS[-1][1], TenantIndexAutodetector) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", [TABLE])
        names = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT conname, contype FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype IN ('u', 'f') ORDER BY 1",
            [TABLE],
        )
        constraints = cursor.fetchall()
    assert names == sorted(
        [
            "safe_items_pkey",
            "safe_items_tenant_email",
            "safe_items_tenant_lower_email",
            "safe_items_tenant_status",
        ]
    )
    assert ("safe_items_tenant_email", "u") in constraints
    assert sum(1 for _, kind in constraints if kind == "f") == 1


@pytest.mark.django_db(transaction=True)
def test_safe_changes__django_autodetector_plan_blocks_and_the_assertions_see_it(
    migrations_package: Path,
) -> None:
    """The control: Django's own migrations for the FK conversion and a same-name change."""
    initial = make_migrations(
        migrations_package, item_state(tenant_fk="plain", indexes=[STATUS]), MigrationAutodetector
    )
    call_command("migrate", APP, initial[-1].name, verbosity=0)
    plain = make_migrations(
        migrations_package, item_state(indexes=[STATUS_CODE]), MigrationAutodetector
    )
    kinds = {type(op).__name__ for m in plain for op in m.operations}
    assert kinds == {"AlterField", "RemoveIndex", "AddIndex"}
    importlib.invalidate_caches()
    with CaptureQueriesContext(connection) as queries:
        call_command("migrate", APP, plain[-1].name, verbosity=0)
    blocking = blocking_statements([q["sql"] for q in queries.captured_queries])
    assert any(s.lstrip().upper().startswith("DROP INDEX") for s in blocking), blocking
    assert any("FOREIGN KEY" in s for s in blocking), blocking
    assert any("DROP CONSTRAINT" in s for s in blocking), blocking


@pytest.mark.django_db(transaction=True)
def test_safe_changes__same_name_change_rerun_after_swap_only_drops_the_old(
    migrations_package: Path,
) -> None:
    """A run cut off after the swap: the next run finds the new definition and drops the
    retired index, building nothing."""
    initial = make_migrations(
        migrations_package, item_state(indexes=[STATUS]), TenantIndexAutodetector
    )
    call_command("migrate", APP, initial[-1].name, verbosity=0)
    (change,) = make_migrations(
        migrations_package, item_state(indexes=[STATUS_CODE]), TenantIndexAutodetector
    )
    with connection.cursor() as cursor:
        # The state an interrupted run leaves: new definition swapped in, old one retired.
        cursor.execute(
            "ALTER INDEX safe_items_tenant_status RENAME TO safe_items_tenant_status_ti_old"
        )
        cursor.execute(
            "CREATE INDEX safe_items_tenant_status ON safe_items (tenant_id, status, code)"
        )
    out = StringIO()
    importlib.invalidate_caches()
    call_command("migrate", APP, change.name, stdout=out, verbosity=1)
    assert "built index" not in out.getvalue()
    assert 'dropping the old definition "safe_items_tenant_status_ti_old"' in out.getvalue()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", [TABLE])
        assert [r[0] for r in cursor.fetchall()] == ["safe_items_pkey", "safe_items_tenant_status"]


@pytest.mark.django_db(transaction=True)
def test_safe_changes__the_same_migrations_apply_plainly_on_sqlite(
    migrations_package: Path, tmp_path: Path
) -> None:
    """Every step's migration, written for PostgreSQL, applied by manage.py on SQLite."""
    import os
    import sqlite3
    import subprocess

    make_migrations(migrations_package, item_state(tenant_fk="plain"), TenantIndexAutodetector)
    for _what, state, _expected in STEPS:
        make_migrations(migrations_package, state, TenantIndexAutodetector)
    db = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.scenarios.safe_changes.sqlite_settings",
        "SAFE_CHANGES_SQLITE": str(db),
        "SAFE_CHANGES_MIGRATIONS": migrations_package.name,
        "PYTHONPATH": os.pathsep.join([str(migrations_package.parent), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CONCURRENTLY" not in result.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", [TABLE]
        ).fetchall()
        status = [r[2] for r in conn.execute("PRAGMA index_info('safe_items_tenant_status')")]
        (table_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [TABLE]
        ).fetchone()
    names = {name for (name,) in rows}
    assert {"safe_items_tenant_status", "safe_items_tenant_lower_email"} <= names
    assert "safe_items_tenant_code_desc" not in names
    assert 'CONSTRAINT "safe_items_tenant_email" UNIQUE' in table_sql  # SQLite: in the table
    assert status == ["tenant_id", "status", "code"]


HAND_BUILT = f"""
CREATE TABLE {TABLE} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    status varchar(20) NOT NULL, code varchar(20) NOT NULL, email varchar(100) NOT NULL);
INSERT INTO {TABLE} (tenant_id, status, code, email)
    VALUES ('{TENANT}', 'open', 'dup', 'a@x'), ('{TENANT}', 'open', 'dup', 'b@x');
CREATE INDEX safe_items_tenant_status ON {TABLE} (tenant_id, status);
CREATE INDEX safe_items_tenant_lower_email ON {TABLE} (email);
"""


@pytest.mark.django_db(transaction=True)
def test_migrate__fake_initial_adopts_builds_rebuilds_and_refuses_drift(
    migrations_package: Path,
) -> None:
    """A table made outside Django: present (adopted), INVALID (rebuilt), missing (built),
    drifted (refused with both definitions), and the skipped unique constraint."""
    from tenant_indexes.exceptions import IndexDefinitionMismatchError

    code = TenantIndex(fields=["status", "email"], name="safe_items_tenant_code")
    state = item_state(indexes=[STATUS, code, CODE_DESC, LOWER_EMAIL], constraints=[UNIQUE_EMAIL])
    assert len(make_migrations(migrations_package, state, TenantIndexAutodetector)) == 1
    insert_tenant()
    with connection.cursor() as cursor:
        cursor.execute(HAND_BUILT)
    with pytest.raises(Exception, match="could not create unique index"):
        with connection.cursor() as cursor:  # INVALID, the honest way
            cursor.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY safe_items_tenant_code ON {TABLE} "
                "(tenant_id, code)"
            )
    assert invalid_indexes() == ["safe_items_tenant_code"]
    importlib.invalidate_caches()
    first = StringIO()
    with pytest.raises(IndexDefinitionMismatchError) as raised:
        call_command("migrate", APP, "--fake-initial", stdout=first, verbosity=1)
    # Declared order: the present, INVALID and missing ones come before the drifted one.
    text = first.getvalue()
    assert 'adopted the existing valid index "safe_items_tenant_status"' in text, text
    assert 'dropping the INVALID index "safe_items_tenant_code"' in text, text
    assert 'built index "safe_items_tenant_code_desc"' in text, text
    message = str(raised.value)
    assert '"safe_items_tenant_lower_email" already exists' in message
    assert "(email)" in message and "lower" in message.lower()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = %s", [APP])
        assert cursor.fetchone()[0] == 0  # not recorded: the next run tries again
        cursor.execute("DROP INDEX safe_items_tenant_lower_email")
    out = StringIO()
    call_command("migrate", APP, "--fake-initial", stdout=out, verbosity=1)
    text = out.getvalue()
    assert 'adopted the existing valid index "safe_items_tenant_code"' in text, text
    assert 'built index "safe_items_tenant_lower_email"' in text, text
    assert 'built unique constraint "safe_items_tenant_email"' in text, text
    assert "FAKED" in text
    assert invalid_indexes() == []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT contype FROM pg_constraint WHERE conname = 'safe_items_tenant_email'"
        )
        assert cursor.fetchone() == ("u",)
    check = StringIO()
    call_command("check_tenant_indexes", APP, "--format", "json", stdout=check)
    assert json.loads(check.getvalue())["status"] == "ok", check.getvalue()
