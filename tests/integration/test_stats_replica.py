"""Usage summed over a primary and a REAL streaming replica (pg_basebackup + hot standby).

The pair comes from :mod:`tests.support.replica`, not from the run's server: a standby must run the
primary's major version and the pgserver binaries are the ones every machine has. The two
aliases are added to Django's connections for this module only, and the app's tables are
migrated onto the primary (the standby gets them by replaying its WAL).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings

from tenant_indexes.statistics import usage_snapshot
from tenant_indexes.usageanalysis import UnusedVerdict, UsageThresholds, analyse_usage
from tests.support.replica import ReplicaPair, start_replica_pair

PRIMARY, REPLICA = "stats_primary", "stats_replica"
TABLES = {("public", "users"): "tenant_id", ("public", "files"): "tenant_id"}
# A standby that has just started has young statistics by definition; these tests are about
# where the scans happened, so the age requirement is lifted.
JUDGE_NOW = {"STATS_MIN_AGE_DAYS": 0}


@pytest.fixture(scope="module")
def replica(django_db_blocker: Any) -> Iterator[ReplicaPair]:
    """A primary with the app migrated, a hot standby streaming from it, as two aliases."""
    from django.conf import settings

    pair = start_replica_pair()
    added: dict[str, dict[str, Any]] = {}
    try:
        base = copy.deepcopy(connections["default"].settings_dict)
        added[PRIMARY] = pair.database_settings(base, standby=False)
        added[REPLICA] = pair.database_settings(base, standby=True)
        for alias, conf in added.items():
            # Often the same dict (Django configures settings.DATABASES in place); set both.
            settings.DATABASES[alias] = conf
            connections.settings[alias] = conf
        with django_db_blocker.unblock():
            call_command("migrate", database=PRIMARY, verbosity=0)
            with connections[PRIMARY].cursor() as cursor:
                cursor.execute(
                    "INSERT INTO tenants (id, name, slug, created_at) "
                    "VALUES ('00000000-0000-0000-0000-000000000001', 'a', 'a', now())"
                )
                cursor.execute(
                    "INSERT INTO users (tenant_id, email, name, role, is_active, created_at) "
                    "SELECT '00000000-0000-0000-0000-000000000001', g || '@x', '', 'agent', "
                    "true, now() FROM generate_series(1, 50) g"
                )
            pair.wait_for_replay()
            yield pair
    finally:
        try:
            for alias in added:
                connections[alias].close()
                del connections[alias]
                connections.settings.pop(alias, None)
                settings.DATABASES.pop(alias, None)
        finally:
            pair.stop()  # whatever happened above: never leave the two servers running


def _scan_users_on(alias: str) -> None:
    """Run a tenant query on ``alias`` that scans idx_users_tenant_id, and flush its counters."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a 50-row table would be read whole
        cursor.execute(
            "SELECT count(*) FROM users WHERE tenant_id = '00000000-0000-0000-0000-000000000001'"
        )
        assert cursor.fetchone()[0] == 50
        cursor.execute("RESET enable_seqscan")
        # Counters are flushed when the backend goes idle; this forces the next flush, which
        # happens before the server answers, so no sleep is needed.
        cursor.execute("SELECT pg_stat_force_next_flush()")


def _idx_scan(alias: str, index: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", [index])
        return cursor.fetchone()[0]


def test_replica__is_a_real_streaming_standby(replica: ReplicaPair, django_db_blocker) -> None:
    with django_db_blocker.unblock():
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), status FROM pg_stat_wal_receiver")
            assert cursor.fetchone() == (True, "streaming")
            cursor.execute("SELECT count(*) FROM users")
            assert cursor.fetchone()[0] == 50


def test_w001__index_used_only_on_the_replica_is_not_unused(
    replica: ReplicaPair, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute("SELECT pg_stat_reset()")  # the primary: no scan of it at all
        _scan_users_on(REPLICA)
        primary_scans = _idx_scan(PRIMARY, "idx_users_tenant_id")
        replica_scans = _idx_scan(REPLICA, "idx_users_tenant_id")
        assert (primary_scans, replica_scans >= 1) == (0, True)

        snapshots = [usage_snapshot(a, list(TABLES)) for a in (PRIMARY, REPLICA)]
        assert snapshots[1].server.in_recovery and not snapshots[0].server.in_recovery
        thresholds = UsageThresholds(stats_min_age=UsageThresholds().stats_min_age * 0)

        alone, _, _ = analyse_usage(snapshots[:1], TABLES, thresholds)
        both, _, _ = analyse_usage(snapshots, TABLES, thresholds)
    verdict_alone = {s.index.name: s.unused for s in alone}
    verdict_both = {s.index.name: s for s in both}
    # The primary alone would call it unused; with the replica it is used.
    assert verdict_alone["idx_users_tenant_id"] is UnusedVerdict.UNUSED
    users = verdict_both["idx_users_tenant_id"]
    assert users.unused is UnusedVerdict.USED
    assert users.per_alias == {PRIMARY: 0, REPLICA: replica_scans}
    assert users.idx_scan == replica_scans
    # The control: an index nobody scanned stays unused across both.
    assert verdict_both["idx_files_tenant_id"].unused is UnusedVerdict.UNUSED


def test_stats_command__aggregates_primary_and_replica(
    replica: ReplicaPair, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        _scan_users_on(REPLICA)
        replica_scans = _idx_scan(REPLICA, "idx_users_tenant_id")
        primary_scans = _idx_scan(PRIMARY, "idx_users_tenant_id")
        out = StringIO()
        with override_settings(TENANT_INDEXES=JUDGE_NOW):
            try:
                call_command(
                    "tenant_index_stats",
                    "tenant_indexes_helpdesk",
                    "--database",
                    PRIMARY,
                    "--database",
                    REPLICA,
                    "--format",
                    "json",
                    stdout=out,
                )
                code = 0
            except CommandError as e:
                code = e.returncode
    doc = json.loads(out.getvalue())
    assert code == 0
    assert [d["alias"] for d in doc["databases"]] == [PRIMARY, REPLICA]
    assert [s["alias"] for s in doc["statistics"]["databases"]] == [PRIMARY, REPLICA]
    users = next(ix for ix in doc["indexes"] if ix["name"] == "idx_users_tenant_id")
    assert users["idx_scan_by_database"] == {PRIMARY: primary_scans, REPLICA: replica_scans}
    assert users["idx_scan"] == primary_scans + replica_scans
    assert users["unused"] == "used"
    unused = {f["index"] for f in doc["findings"] if f["id"] == "tenant_indexes.W001"}
    assert "idx_users_tenant_id" not in unused
    assert "idx_files_tenant_id" in unused


def test_history__a_replicas_snapshots_are_summed_with_the_primarys(
    replica: ReplicaPair, django_db_blocker: Any
) -> None:
    """Snapshots of both aliases, stored on the primary (it has the core's history table)."""
    from tenant_indexes.history import record_usage, usage_since

    with django_db_blocker.unblock():
        before = [usage_snapshot(a, list(TABLES)) for a in (PRIMARY, REPLICA)]
        record_usage(before, using=PRIMARY)
        _scan_users_on(PRIMARY)
        _scan_users_on(REPLICA)
        _scan_users_on(REPLICA)
        after = [usage_snapshot(a, list(TABLES)) for a in (PRIMARY, REPLICA)]
        record_usage(after, using=PRIMARY)
        assert after[1].server.in_recovery and not after[0].server.in_recovery
        now = max(s.server.now for s in after)
        history = usage_since(1, now=now, databases=[PRIMARY, REPLICA], using=PRIMARY)
    users = next(h for h in history if h.name == "idx_users_tenant_id")
    assert users.per_alias == {PRIMARY: 1, REPLICA: 2}
    assert users.idx_scan == 3


def _stats_on(*args: str, config: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    out = StringIO()
    code, message = 0, ""
    with override_settings(TENANT_INDEXES=config):
        try:
            call_command(
                "tenant_index_stats", "tenant_indexes_helpdesk", "--format", "json", *args,
                stdout=out,
            )  # fmt: skip
        except CommandError as e:
            code, message = e.returncode, str(e)
    return code, (json.loads(out.getvalue()) if out.getvalue() else {}), message


def test_history__recorded_per_alias_read_and_stored_on_history_database(
    replica: ReplicaPair, django_db_blocker: Any
) -> None:
    """--record reads the counters of each alias and writes every row on HISTORY_DATABASE;
    W001 then judges the recorded span on every alias, in stats and in the check alike."""
    from datetime import timedelta

    from django.db.models import F

    from tenant_indexes.models import IndexUsageSnapshot

    stored = {"HISTORY_DATABASE": PRIMARY}
    with django_db_blocker.unblock():
        on_primary = IndexUsageSnapshot.objects.using(PRIMARY)
        on_primary.all().delete()

        code, _, _ = _stats_on("--record", "--database", REPLICA, config=stored)
        assert code == 0
        assert set(on_primary.values_list("database", "in_recovery")) == {(REPLICA, True)}

        # No --database: every alias with tenant tables, the replica included. (This
        # module's "default" has no test database: it is reported unreadable, exit 2, and
        # the aliases that could be read are recorded all the same.)
        on_primary.all().delete()
        _, every, _ = _stats_on("--record", config=stored)
        recorded = set(on_primary.values_list("database", flat=True))
        assert {PRIMARY, REPLICA} <= recorded <= {d["alias"] for d in every["databases"]}
        assert {"default", PRIMARY, REPLICA} <= {d["alias"] for d in every["databases"]}

        # 40 days of history on both aliases; the replica scans idx_users_tenant_id.
        on_primary.all().delete()
        both = ("--database", PRIMARY, "--database", REPLICA)
        _stats_on("--record", *both, config=stored)
        on_primary.update(recorded_at=F("recorded_at") - timedelta(days=40))
        _scan_users_on(REPLICA)
        _stats_on("--record", *both, config=stored)
        code, doc, _ = _stats_on(*both, config=stored)
        out = StringIO()
        with override_settings(TENANT_INDEXES={**stored, "CHECK_INCLUDES_USAGE": True}):
            try:
                call_command(
                    "check_tenant_indexes", "tenant_indexes_helpdesk", *both, "--format", "json",
                    stdout=out,
                )  # fmt: skip
            except CommandError as e:
                assert e.returncode == 1, str(e)
        check = json.loads(out.getvalue())
        # A replica cannot store the history: one line, exit 2.
        code_ro, _, message = _stats_on("--record", *both, config={"HISTORY_DATABASE": REPLICA})
        on_primary.all().delete()
    verdicts = {ix["name"]: ix for ix in doc["indexes"]}
    assert verdicts["idx_users_tenant_id"]["unused"] == "used"
    assert verdicts["idx_files_tenant_id"]["unused"] == "unused"
    assert verdicts["idx_files_tenant_id"]["unused_judged_over_history_days"] == 30
    unused = {f["index"] for f in doc["findings"] if f["id"] == "tenant_indexes.W001"}
    assert "idx_files_tenant_id" in unused and "idx_users_tenant_id" not in unused
    assert {f["index"] for f in check["findings"] if f["id"] == "tenant_indexes.W001"} == unused
    assert code_ro == 2 and "\n" not in message
    assert f"usage history on '{REPLICA}'" in message and "read-only" in message
