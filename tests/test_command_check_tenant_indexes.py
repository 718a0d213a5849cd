"""``manage.py check_tenant_indexes``: formats, exit codes and bad input, end to end."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenant_indexes import health
from tenant_indexes.findings import Finding, Level
from tenant_indexes.health import check_databases

STATUSES = {"ok", "warning", "error", "unknown"}
INDEX_STATES = {"ok", "missing", "invalid", "building", "drift"}


def run(*args: str) -> tuple[int, str, str]:
    """Run the command; return (exit code, stdout, CommandError message)."""
    out = StringIO()
    try:
        call_command("check_tenant_indexes", *args, stdout=out, no_color=True)
    except CommandError as e:
        return e.returncode, out.getvalue(), str(e)
    return 0, out.getvalue(), ""


def assert_design_shape(doc: dict) -> None:
    """The documented JSON contract: these keys and types, more keys allowed."""
    assert set(doc) >= {"status", "databases", "indexes", "findings"}
    assert doc["status"] in STATUSES
    for db in doc["databases"]:
        assert isinstance(db["alias"], str) and isinstance(db["vendor"], str)
        assert db["server_version"] is None or re.fullmatch(r"\d+(\.\d+)?", db["server_version"])
    for ix in doc["indexes"]:
        for key in ("database", "schema", "table", "name"):
            assert isinstance(ix[key], str), (key, ix)
        assert isinstance(ix["columns"], list)
        assert all(c is None or isinstance(c, str) for c in ix["columns"])
        assert ix["status"] in INDEX_STATES
    for f in doc["findings"]:
        assert re.fullmatch(r"tenant_indexes\.[EW]\d{3}", f["id"])
        assert f["level"] in {"error", "warning"}
        for key in ("database", "table", "message", "hint"):
            assert isinstance(f[key], str) and f[key], (key, f)
        assert f["index"] is None or isinstance(f["index"], str)


@pytest.mark.django_db
def test_check_command__healthy_database_exits_0_with_documented_json() -> None:
    code, out, _ = run("--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert_design_shape(doc)
    assert doc["status"] == "ok" and doc["findings"] == []
    assert [d["alias"] for d in doc["databases"]] == ["default"]  # sqlite is not a default
    assert doc["databases"][0]["vendor"] == "postgresql"
    by_name = {ix["name"]: ix for ix in doc["indexes"]}
    assert by_name["idx_customers_tenant_status"]["columns"] == ["tenant_id", "status"]
    assert by_name["idx_customers_tenant_status"]["schema"] == "public"
    assert by_name["idx_customers_tenant_status"]["idx_scan"] is not None
    # The second app, built from the public building blocks, is checked like the seed.
    assert {"testapp_ord_tenant__39ff50_idx", "shipment_acct"} <= set(by_name)


@pytest.mark.django_db
def test_check_command__missing_index_exits_1_with_the_finding_in_json() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_files_tenant_id")
    code, out, message = run("--format", "json")
    assert code == 1 and "unhealthy" in message
    doc = json.loads(out)
    assert_design_shape(doc)
    assert doc["status"] == "error"
    assert {(f["id"], f["index"]) for f in doc["findings"]} == {
        ("tenant_indexes.E001", "idx_files_tenant_id"),
        ("tenant_indexes.E004", None),
    }


@pytest.mark.django_db
def test_check_command__app_labels_narrow_the_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_files_tenant_id")  # not in testapp
    code, out, _ = run("testapp", "--format", "json")
    assert code == 0
    assert {ix["table"] for ix in json.loads(out)["indexes"]} == {
        "testapp_order",
        "testapp_invoice",
        "testapp_shipment",
    }


@pytest.mark.django_db
def test_check_command__text_is_a_table_without_colour_when_asked() -> None:
    code, out, _ = run()
    assert code == 0
    assert "\x1b[" not in out
    assert re.search(r"DATABASE\s+TABLE\s+INDEX\s+COLUMNS\s+STATUS", out)
    assert re.search(
        r"default\s+public\.tickets\s+idx_tickets_tenant_status\s+tenant_id, status\s+ok", out
    )
    assert "status: ok" in out


@pytest.mark.django_db
def test_check_command__text_is_coloured_through_the_style() -> None:
    out = StringIO()
    call_command("check_tenant_indexes", stdout=out, force_color=True)
    assert "\x1b[" in out.getvalue()


@pytest.mark.django_db
def test_check_command__prometheus_exposition() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_files_tenant_id")
    code, out, _ = run("--format", "prometheus")
    assert code == 1
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?\d+(\.\d+)?$')
    for line in out.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert "tenant_indexes_status 2" in out
    assert 'tenant_indexes_database_up{database="default"} 1' in out
    assert 'tenant_indexes_indexes{database="default",status="missing"} 1' in out
    assert (
        'tenant_indexes_findings{database="default",id="tenant_indexes.E001",level="error"} 1'
        in out
    )
    labels = set(re.findall(r'[{,]([a-z_]+)="', out))
    assert labels == {"database", "status", "id", "level"}  # no per-tenant labels


@pytest.mark.django_db
def test_check_command__fail_level_warning_fails_on_warnings(monkeypatch) -> None:
    def warn_about_users(tables, snapshot):
        yield Finding(
            id="tenant_indexes.W001",
            level=Level.WARNING,
            database=snapshot.alias,
            table="users",
            index="idx_users_tenant_id",
            message="not scanned",
            hint="look at it",
        )

    monkeypatch.setattr(health, "FINDING_PRODUCERS", [*health.FINDING_PRODUCERS, warn_about_users])
    assert run("--format", "json")[0] == 0
    code, out, _ = run("--format", "json", "--fail-level", "warning")
    assert code == 1
    assert json.loads(out)["status"] == "warning"


@pytest.mark.django_db
def test_check_command__sqlite_alias_exits_2_saying_postgresql_is_needed() -> None:
    code, out, message = run("--database", "sqlite", "--format", "json")
    assert code == 2
    assert "needs PostgreSQL" in message and "\n" not in message
    doc = json.loads(out)
    assert doc["status"] == "unknown"
    assert (
        doc["databases"][0]["vendor"] == "sqlite" and "PostgreSQL" in doc["databases"][0]["error"]
    )


@pytest.mark.django_db
def test_check_command__unknown_alias_or_app_label_exits_2() -> None:
    code, out, message = run("--database", "nope")
    assert (code, out) == (2, "") and "unknown database alias 'nope'" in message
    code, out, message = run("no_such_app")
    assert (code, out) == (2, "") and "unknown app label 'no_such_app'" in message


@pytest.mark.django_db(transaction=True)
def test_check_command__unreachable_server_exits_2_without_traceback() -> None:
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="1")
    try:
        code, out, message = run("--format", "json")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert code == 2 and message.startswith("could not check: database 'default'")
    assert "Traceback" not in message
    assert json.loads(out)["databases"][0]["error"]


@pytest.mark.django_db
def test_check_command__repeated_database_option() -> None:
    code, out, _ = run("--database", "default", "--database", "sqlite", "--format", "json")
    assert code == 2
    assert [d["alias"] for d in json.loads(out)["databases"]] == ["default", "sqlite"]


@pytest.mark.django_db
def test_check__statement_count_does_not_grow_with_tables() -> None:
    with CaptureQueriesContext(connection) as few:
        small = check_databases(["default"], app_labels=["testapp"])
    with CaptureQueriesContext(connection) as many:
        large = check_databases(["default"])
    assert len(large.indexes) > len(small.indexes)
    assert len(few) == len(many)


@pytest.mark.django_db
@pytest.mark.parametrize("output", ["json", "text", "prometheus"])
def test_check_command__the_cyclic_collector_is_paused_while_the_report_is_written(
    output: str,
) -> None:
    import gc

    class Recording(StringIO):
        collector_ran: list[bool] = []

        def write(self, text: str) -> int:
            self.collector_ran.append(gc.isenabled())
            return super().write(text)

    out = Recording()
    assert gc.isenabled()
    call_command("check_tenant_indexes", "--format", output, stdout=out)
    assert out.getvalue() and out.collector_ran and not any(out.collector_ran)
    assert gc.isenabled()  # and it runs again once the command is done
