"""W001/W002 wired into check_tenant_indexes (opt-in ``CHECK_INCLUDES_USAGE``)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from tenant_indexes.health import check_databases

SEED_REDUNDANT = {"idx_customers_tenant_id", "idx_tickets_tenant_id"}


def _ids(report, finding_id: str) -> set[str]:
    return {f.index for f in report.findings if f.id == finding_id}


@pytest.mark.django_db
def test_check__usage_findings_are_off_by_default() -> None:
    report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
    assert _ids(report, "tenant_indexes.W002") == set()
    assert _ids(report, "tenant_indexes.W001") == set()


@pytest.mark.django_db
def test_check__reports_the_seed_redundancy_and_unused_indexes_when_enabled() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_reset_single_table_counters('idx_users_tenant_id'::regclass)"
        )
    config = {"CHECK_INCLUDES_USAGE": True, "STATS_MIN_AGE_DAYS": 0}
    with override_settings(TENANT_INDEXES=config):
        report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
    assert _ids(report, "tenant_indexes.W002") == set()  # the seed's pair is its contract
    assert "idx_users_tenant_id" in _ids(report, "tenant_indexes.W001")
    # Never a unique or primary index, even with zero scans.
    assert not {i for i in _ids(report, "tenant_indexes.W001") if i.endswith(("_pkey", "_key"))}
    assert report.status == "warning" and report.exit_code("error") == 0


@pytest.mark.django_db
def test_check__young_statistics_give_no_w001_and_acknowledged_pairs_no_w002() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
    config = {"CHECK_INCLUDES_USAGE": True, "ACKNOWLEDGED_REDUNDANT": sorted(SEED_REDUNDANT)}
    with override_settings(TENANT_INDEXES=config):
        report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
    assert report.findings == ()
    assert report.status == "ok"
