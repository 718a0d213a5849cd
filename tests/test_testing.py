"""The pytest plugin (``tenant_indexes.testing``) in a user's suite, run with ``pytester``.

Each test writes a small project (one app, ``shop``, whose ``Order`` declares a tenant index)
and runs pytest on it in a subprocess, as a user's CI would: pytest-django creates and
migrates a test database on the same server as this suite, then the plugin checks it. The
"missing index" variant migrates with ``migrations_missing``, whose ``0001`` creates the
table without the declared index, so the live check finds ``tenant_indexes.E001``.
"""

from __future__ import annotations

import json
import os

import pytest
from django.db import connection

pytest_plugins = ["pytester"]

INDEX = "shop_orders_tenant_n"

MODELS = f'''
from django.db import models

from tenant_indexes import TenantIndex


class Order(models.Model):
    tenant_id = models.UUIDField()
    n = models.IntegerField()

    class Meta:
        app_label = "shop"
        db_table = "shop_orders"
        indexes = [TenantIndex(fields=["n"], tenant_field="tenant_id", name="{INDEX}")]
'''

MIGRATION = """
from django.db import migrations, models

import tenant_indexes.indexes


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("tenant_id", models.UUIDField()),
                ("n", models.IntegerField()),
            ],
            options={{"db_table": "shop_orders", "indexes": [{indexes}]}},
        ),
    ]
"""

INDEX_EXPR = (
    f'tenant_indexes.indexes.TenantIndex(fields=["n"], tenant_field="tenant_id", name="{INDEX}")'
)

SETTINGS = """
import json
import os

SECRET_KEY = "plugin-test"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "tenant_indexes", "shop"]
DATABASES = {"default": json.loads(os.environ["TI_PLUGIN_DB"])}
if os.environ.get("TI_PLUGIN_MISSING"):
    MIGRATION_MODULES = {"shop": "shop.migrations_missing"}
"""

TESTS = """
import pytest

from shop.models import Order


@pytest.mark.django_db
def test_orders_start_empty():
    assert Order.objects.count() == 0
"""

ENABLE = "from tenant_indexes.testing import enable_tenant_index_check as pytest_configure\n"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The small project, pointed at this suite's server under a database name of its own."""
    db = connection.settings_dict
    entry = {
        "ENGINE": db["ENGINE"],
        "NAME": "ti_plugin_project",
        "USER": db["USER"],
        "PASSWORD": db["PASSWORD"],
        "HOST": db["HOST"],
        "PORT": db["PORT"],
    }
    monkeypatch.setenv("TI_PLUGIN_DB", json.dumps(entry))
    monkeypatch.delenv("TI_PLUGIN_MISSING", raising=False)
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    # The outer run exported its own; an environment value would win over the ini file.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "proj_settings")
    monkeypatch.setenv(
        "PYTHONPATH", str(pytester.path) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    shop = pytester.mkpydir("shop")
    (shop / "models.py").write_text(MODELS)
    for package, indexes in (("migrations", INDEX_EXPR), ("migrations_missing", "")):
        folder = shop / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "0001_initial.py").write_text(MIGRATION.format(indexes=indexes))
    pytester.makepyfile(proj_settings=SETTINGS, test_orders=TESTS)
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = proj_settings\n")
    return pytester


@pytest.fixture
def missing(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The project migrated without its declared index (``migrations_missing``)."""
    monkeypatch.setenv("TI_PLUGIN_MISSING", "1")
    return project


@pytest.fixture
def missing_checked(missing: pytest.Pytester) -> pytest.Pytester:
    """The same, with the plugin enabled in its conftest."""
    missing.makeconftest(ENABLE)
    return missing


def _allow(project: pytest.Pytester, *entries: str) -> None:
    project.makeini(
        "[pytest]\nDJANGO_SETTINGS_MODULE = proj_settings\ntenant_indexes_allow =\n"
        + "".join(f"    {entry}\n" for entry in entries)
    )


def _run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A subprocess: Django's settings and app registry are per process, like a user's run.
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_plugin__healthy_project_passes(project: pytest.Pytester) -> None:
    project.makeconftest(ENABLE)
    result = _run(project)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*tenant_indexes: checking the test database (fail level error)*"])
    result.assert_outcomes(passed=1)


def test_plugin__missing_index_fails_the_session_with_the_finding_and_hint(
    missing_checked: pytest.Pytester,
) -> None:
    project = missing_checked
    result = _run(project)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    # The missing index (E001), and so no tenant-leading index on the table (E004).
    assert "tenant_indexes: 2 finding(s) at or above error" in out
    assert f"tenant_indexes.E001 (error) default: public.shop_orders / {INDEX}" in out
    assert "tenant_indexes.E004 (error) default: public.shop_orders:" in out
    assert "hint: " in out and "repair_tenant_indexes" in out
    assert "1 passed" not in out  # the session ended before the test ran


def test_plugin__allow_listed_finding_passes(missing_checked: pytest.Pytester) -> None:
    project = missing_checked
    _allow(project, f"E001:shop_orders.{INDEX}", "tenant_indexes.E004:shop_orders")
    result = _run(project)
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)


def test_plugin__allow_list_names_only_what_it_says(missing_checked: pytest.Pytester) -> None:
    project = missing_checked
    _allow(project, "E001:some_other_index", "E004")
    result = _run(project)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    assert "1 finding(s)" in out and "tenant_indexes.E001" in out


def test_plugin__inert_without_opt_in_and_the_marker_opts_in(missing: pytest.Pytester) -> None:
    project = missing
    result = _run(project)  # installed, but no conftest line, marker or fixture
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)
    project.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.tenant_indexes
        def test_marked():
            pass
        """
    )
    result = _run(project)
    assert result.ret == 1, result.stdout.str()
    assert "tenant_indexes.E001" in result.stdout.str() + result.stderr.str()


def test_plugin__report_fixture_returns_the_report_without_failing(
    missing: pytest.Pytester,
) -> None:
    project = missing
    project.makepyfile(
        test_report="""
        def test_report(tenant_indexes_report):
            assert tenant_indexes_report.ids() == ["tenant_indexes.E001", "tenant_indexes.E004"]
            assert not tenant_indexes_report.ok
            (index,) = tenant_indexes_report.health.indexes
            assert (index.name, index.status.value) == ("shop_orders_tenant_n", "missing")
        """
    )
    result = _run(project, "test_report.py")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)


def test_plugin__bad_fail_level_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makeconftest(ENABLE)
    project.makeini(
        "[pytest]\nDJANGO_SETTINGS_MODULE = proj_settings\ntenant_indexes_fail_level = fatal\n"
    )
    result = _run(project)
    assert result.ret == 4, result.stdout.str()  # pytest's usage-error exit code
    assert "tenant_indexes_fail_level must be 'error' or 'warning'" in result.stderr.str()
