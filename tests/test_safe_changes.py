"""The atomic trap: the system check E020, sqlmigrate's refusal, squashmigrations' atomic = False.

The scenario is the ``new_tenant_index`` app with hand-written migrations in a temporary
package: ``0001`` (the table), then concurrent index builds, atomic or not.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import override_settings

from tenant_indexes.checks import check_migration_atomicity
from tenant_indexes.safe_changes import temporary_name
from tests.support.pg import index_columns_by_table, invalid_indexes

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "new_tenant_index"
PACKAGE = "atomic_trap_migrations"
APP = "new_tenant_index"

CONCURRENT_MIGRATION = """
from django.db import migrations

import tenant_indexes.indexes
import tenant_indexes.operations


class Migration(migrations.Migration):
{atomic}
    dependencies = [("new_tenant_index", "{previous}")]

    operations = [
        tenant_indexes.operations.AddIndexConcurrently(
            model_name="article",
            index=tenant_indexes.indexes.TenantIndex(name="{name}"{fields}),
        ),
    ]
"""


def write_concurrent(
    package: Path, number: str, previous: str, name: str, *, atomic: bool, fields: str = ""
) -> str:
    migration = f"{number}_{name}"
    text = CONCURRENT_MIGRATION.format(
        atomic="" if atomic else "    atomic = False\n",
        previous=previous,
        name=name,
        fields=f", fields=[{fields!r}]" if fields else "",
    )
    (package / f"{migration}.py").write_text(text)
    return migration


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / PACKAGE
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    shutil.copy(SCENARIO / "migrations" / "0001_initial.py", folder)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.scenarios.new_tenant_index"],
        MIGRATION_MODULES={APP: PACKAGE},
    ):
        try:
            yield folder
        finally:
            sys.path.remove(str(tmp_path))
            for module in [m for m in sys.modules if m.startswith(PACKAGE)]:
                del sys.modules[module]


def test_temporary_name__fits_postgresql_limit() -> None:
    assert temporary_name("idx_x", "ti_new") == "idx_x_ti_new"
    long = temporary_name("i" * 63, "ti_new")
    assert len(long) == 63 and long.endswith("_ti_new")


@pytest.mark.django_db
def test_check__atomic_migration_with_a_concurrent_operation_is_E020(package: Path) -> None:
    write_concurrent(package, "0002", "0001_initial", "scenario_articles_tenant", atomic=True)
    messages = check_migration_atomicity([apps.get_app_config(APP)])
    assert [m.id for m in messages] == ["tenant_indexes.E020"]
    assert "new_tenant_index.0002_scenario_articles_tenant" in messages[0].msg
    assert "AddIndexConcurrently" in messages[0].msg
    assert "atomic = False" in messages[0].hint
    # manage.py check reports it (and fails on it).
    with pytest.raises(CommandError, match=r"tenant_indexes\.E020"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
def test_check__non_atomic_migration_and_the_shipped_ones_pass(package: Path) -> None:
    write_concurrent(package, "0002", "0001_initial", "scenario_articles_tenant", atomic=False)
    assert check_migration_atomicity([apps.get_app_config(APP)]) == []
    # Every migration the suite ships (help desk, scenarios) passes.
    assert check_migration_atomicity() == []


@pytest.mark.django_db
def test_sqlmigrate__atomic_concurrent_migration_refuses_with_one_line(package: Path) -> None:
    name = write_concurrent(
        package, "0002", "0001_initial", "scenario_articles_tenant", atomic=True
    )
    with pytest.raises(CommandError) as raised:
        call_command("sqlmigrate", APP, name, stdout=StringIO())
    assert raised.value.returncode == 2
    message = str(raised.value)
    assert "cannot be executed inside a transaction" in message
    assert "\n" not in message


@pytest.mark.django_db
def test_sqlmigrate__non_atomic_migration_prints_concurrently_without_begin(
    package: Path,
) -> None:
    name = write_concurrent(
        package, "0002", "0001_initial", "scenario_articles_tenant", atomic=False
    )
    out = StringIO()
    call_command("sqlmigrate", APP, name, stdout=out)
    assert "CREATE INDEX CONCURRENTLY" in out.getvalue()
    assert "BEGIN" not in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_squashmigrations__keeps_atomic_false_and_migrates_a_fresh_database(package: Path) -> None:
    second = write_concurrent(
        package, "0002", "0001_initial", "scenario_articles_tenant", atomic=False
    )
    write_concurrent(
        package,
        "0003",
        second,
        "scenario_articles_tenant_pub",
        atomic=False,
        fields="title",
    )
    call_command(
        "squashmigrations", APP, "0002", "0003", interactive=False, verbosity=0, stdout=StringIO()
    )
    (squashed,) = package.glob("0002_*squashed*.py")
    text = squashed.read_text()
    assert "    atomic = False\n" in text
    assert "AddIndexConcurrently" in text
    assert check_migration_atomicity([apps.get_app_config(APP)]) == []
    importlib.invalidate_caches()
    try:
        # A fresh database: 0001, then the squashed migration in place of 0002 and 0003.
        call_command("migrate", APP, verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM django_migrations WHERE app = %s ORDER BY name", [APP])
            recorded = [row[0] for row in cursor.fetchall()]
        assert squashed.stem in recorded
        columns = index_columns_by_table(["scenario_articles"])["scenario_articles"]
        assert columns["scenario_articles_tenant"] == ("tenant_id",)
        assert columns["scenario_articles_tenant_pub"] == ("tenant_id", "title")
        assert invalid_indexes() == []
    finally:
        call_command("migrate", APP, "zero", verbosity=0)
