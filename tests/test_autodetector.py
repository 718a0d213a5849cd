"""makemigrations: a new tenant index on an existing table gets a concurrent, non-atomic one."""

from __future__ import annotations

import importlib
import shutil
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import override_settings

from tenant_indexes.operations import AddIndexConcurrently
from tests.support.pg import index_columns_by_table, invalid_indexes

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "new_tenant_index"
PACKAGE = "tenant_indexes_generated_migrations"


@pytest.fixture
def migrations_package(tmp_path: Path) -> str:
    """A migrations package in a temporary folder with the scenario's 0001 only."""
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(SCENARIO / "migrations" / "0001_initial.py", package)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield str(package)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[name]


def _scenario_settings():  # type: ignore[no-untyped-def]
    return override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.scenarios.new_tenant_index"],
        MIGRATION_MODULES={"new_tenant_index": PACKAGE},
    )


def _load(path: Path):  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace["Migration"]


@pytest.mark.django_db(transaction=True)
def test_makemigrations__new_tenant_index_gets_concurrent_non_atomic_migration(
    migrations_package: str,
) -> None:
    with _scenario_settings():
        out = StringIO()
        call_command("makemigrations", "new_tenant_index", stdout=out, verbosity=1)
        files = sorted(p for p in Path(migrations_package).glob("0*.py"))
        assert [p.name[:4] for p in files] == ["0001", "0002", "0003"], out.getvalue()

        second, third = _load(files[1]), _load(files[2])
        # 0002: the new field and the new model (its index inside CreateModel), in a transaction.
        assert getattr(second, "atomic", True) is True
        assert not any(isinstance(op, AddIndexConcurrently) for op in second.operations)
        assert "scenario_tags_tenant" in files[1].read_text()
        assert "migrations.AddIndex(" not in files[1].read_text()  # folded into CreateModel
        # 0003: both tenant indexes of the existing table, concurrently, atomic = False.
        assert third.atomic is False
        assert "    atomic = False\n" in files[2].read_text()
        assert [type(op) for op in third.operations] == [AddIndexConcurrently] * 2
        assert {op.index.name for op in third.operations} == {
            "scenario_articles_tenant",
            "scenario_articles_tenant_pub",
        }
        assert ("new_tenant_index", files[1].stem) in third.dependencies

        # The generated migrations apply on PostgreSQL and build the indexes concurrently.
        try:
            call_command("migrate", "new_tenant_index", verbosity=0)
            columns = index_columns_by_table(["scenario_articles"])["scenario_articles"]
            assert columns["scenario_articles_tenant"] == ("tenant_id",)
            assert columns["scenario_articles_tenant_pub"] == ("tenant_id", "published")
            assert invalid_indexes() == []
            sql = StringIO()
            call_command("sqlmigrate", "new_tenant_index", files[2].stem, stdout=sql)
            assert sql.getvalue().count("CREATE INDEX CONCURRENTLY") == 2
            check = StringIO()
            call_command("makemigrations", "new_tenant_index", "--check", stdout=check)
        finally:
            call_command("migrate", "new_tenant_index", "zero", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('scenario_articles')")
            assert cursor.fetchone()[0] is None


@pytest.mark.django_db
def test_makemigrations__is_this_apps_command_and_still_reports_no_changes() -> None:
    from django.core.management import get_commands

    assert get_commands()["makemigrations"] == "tenant_indexes"
    assert get_commands()["migrate"] == "tenant_indexes"
    # Django 5.2's commands.E001: both commands must share the autodetector.
    call_command("check", stdout=StringIO())
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def _plain_table_changes(**config: object) -> list[str]:
    """The operations makemigrations writes when a plain (non-tenant) table loses an index."""
    from django.db import models as dj_models
    from django.db.migrations.autodetector import MigrationAutodetector  # noqa: F401
    from django.db.migrations.questioner import NonInteractiveMigrationQuestioner
    from django.db.migrations.state import ModelState, ProjectState

    from tenant_indexes.autodetector import TenantIndexAutodetector

    def state(indexes: list[object]) -> ProjectState:
        project = ProjectState()
        project.add_model(
            ModelState(
                "plainapp",
                "Note",
                [
                    ("id", dj_models.BigAutoField(primary_key=True)),
                    ("title", dj_models.CharField(max_length=20)),
                ],
                options={"indexes": indexes},
            )
        )
        return project

    before = state([dj_models.Index(fields=["title"], name="note_title")])
    with override_settings(TENANT_INDEXES=config):
        detector = TenantIndexAutodetector(before, state([]), NonInteractiveMigrationQuestioner())
        changes = detector._detect_changes()
    return [type(op).__name__ for m in changes["plainapp"] for op in m.operations]


def test_autodetector__plain_table_keeps_django_ops_unless_all_tables_setting() -> None:
    assert _plain_table_changes() == ["RemoveIndex"]
    assert _plain_table_changes(SAFE_MIGRATIONS_ALL_TABLES=True) == ["RemoveIndexConcurrently"]
