"""The pure parts: exit codes, status and rendering of a HealthReport, no database."""

from __future__ import annotations

import json

from tenant_indexes.findings import Finding, IndexState, Level
from tenant_indexes.render import render_json, render_prometheus, render_text
from tenant_indexes.reports import DatabaseReport, HealthReport, IndexReport, overall_status

PG = DatabaseReport(alias="default", vendor="postgresql", server_version="16.2")
DOWN = DatabaseReport(alias="other", vendor="postgresql", server_version=None, error="refused")


def finding(level: Level, finding_id: str = "tenant_indexes.E001") -> Finding:
    return Finding(
        id=finding_id,
        level=level,
        database="default",
        table="files",
        index="idx_files_tenant_id",
        message="it is gone",
        hint="run repair_tenant_indexes",
        schema="public",
    )


def report(*findings: Finding, databases=(PG,)) -> HealthReport:
    return HealthReport(
        status=overall_status(databases, findings),
        databases=tuple(databases),
        indexes=(
            IndexReport(
                database="default",
                schema="public",
                table="files",
                name="idx_files_tenant_id",
                columns=("tenant_id",),
                status=IndexState.MISSING if findings else IndexState.OK,
                model="tenant_indexes.File",
                app_label="tenant_indexes_helpdesk",
            ),
        ),
        findings=findings,
    )


def test_exit_code__ok_warning_error_and_unknown() -> None:
    assert report().exit_code() == 0
    warning = report(finding(Level.WARNING, "tenant_indexes.W001"))
    assert (warning.status, warning.exit_code("error"), warning.exit_code("warning")) == (
        "warning",
        0,
        1,
    )
    error = report(finding(Level.ERROR))
    assert (error.status, error.exit_code("error"), error.exit_code("warning")) == ("error", 1, 1)


def test_exit_code__could_not_check_wins_over_findings() -> None:
    partial = report(finding(Level.ERROR), databases=(PG, DOWN))
    assert partial.status == "unknown" and partial.exit_code() == 2


def test_render_text__findings_with_hints_and_the_unreachable_database() -> None:
    text = render_text(report(finding(Level.ERROR), databases=(PG, DOWN)))
    assert "other: could not check: refused" in text
    assert "tenant_indexes.E001 default:files.idx_files_tenant_id: it is gone" in text
    assert "    HINT: run repair_tenant_indexes" in text
    assert text.rstrip().endswith("status: unknown (1 index(es), 1 finding(s))")


def test_render_json__is_one_line_with_the_documented_keys() -> None:
    out = render_json(report(finding(Level.ERROR)))
    assert out.endswith("\n") and "\n" not in out[:-1]
    doc = json.loads(out)
    assert list(doc) == ["status", "databases", "indexes", "findings"]
    assert doc["findings"][0]["id"] == "tenant_indexes.E001"
    assert doc["indexes"][0]["status"] == "missing"


def test_render_json__is_the_text_of_the_whole_document_dumped_at_once() -> None:
    for each in (
        report(),
        report(finding(Level.ERROR), finding(Level.WARNING, "tenant_indexes.W050")),
        report(finding(Level.ERROR), databases=(PG, DOWN)),
        HealthReport(status="ok"),
    ):
        assert render_json(each) == json.dumps(each.as_dict()) + "\n"


def test_render_prometheus__escapes_label_values_and_skips_down_databases() -> None:
    odd = DatabaseReport(alias='we"ird\\', vendor="postgresql", server_version="16.2")
    out = render_prometheus(HealthReport(status="ok", databases=(odd, DOWN)))
    assert 'tenant_indexes_database_up{database="we\\"ird\\\\"} 1' in out
    assert 'tenant_indexes_database_up{database="other"} 0' in out
    assert 'tenant_indexes_indexes{database="other"' not in out
