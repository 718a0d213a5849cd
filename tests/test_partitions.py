"""Concurrent builds on partitioned tables (``partitions.py``) on the real server.

Each test makes a partitioned table by list, hash or range (the range one with a
hash-partitioned sub-partition), keeps a writer inserting into it during the build, and
checks the result in the catalog.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from tenant_indexes import partitionplan, partitions
from tenant_indexes.build import BuildOutcome, build_index_concurrently
from tenant_indexes.catalog import catalog_snapshot
from tenant_indexes.compare import find_problems
from tenant_indexes.declared import TenantTable
from tests.support import dbapi

TABLE = "ti_part_events"
INDEX = "ti_part_events_tenant"

LAYOUTS = {
    "list": (
        "PARTITION BY LIST (tenant_id)",
        [f"FOR VALUES IN ({n})" for n in range(1, 4)] + ["DEFAULT"],
        [],
    ),
    "hash": (
        "PARTITION BY HASH (tenant_id)",
        [f"FOR VALUES WITH (MODULUS 4, REMAINDER {n})" for n in range(4)],
        [],
    ),
    "range": (
        "PARTITION BY RANGE (tenant_id)",
        ["FOR VALUES FROM (MINVALUE) TO (2)", "FOR VALUES FROM (2) TO (3)"],
        # A sub-partitioned partition: tenants 3 and up, split again by hash.
        [
            "FOR VALUES FROM (3) TO (MAXVALUE) PARTITION BY HASH (tenant_id)",
            [f"FOR VALUES WITH (MODULUS 2, REMAINDER {n})" for n in range(2)],
        ],
    ),
}


def _run(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _raw() -> dbapi.Session:
    return dbapi.connect_like(connection.settings_dict)


def _create(layout: str) -> int:
    """The partitioned table with rows in every leaf; returns the number of leaves."""
    method, bounds, sub = LAYOUTS[layout]
    _run(f"CREATE TABLE {TABLE} (id bigserial, tenant_id int NOT NULL, status text) {method}")
    leaves = 0
    for n, bound in enumerate(bounds):
        _run(f"CREATE TABLE {TABLE}_{n} PARTITION OF {TABLE} {bound}")
        leaves += 1
    if sub:
        _run(f"CREATE TABLE {TABLE}_sub PARTITION OF {TABLE} {sub[0]}")
        for n, bound in enumerate(sub[1]):
            _run(f"CREATE TABLE {TABLE}_sub_{n} PARTITION OF {TABLE}_sub {bound}")
            leaves += 1
    _run(
        f"INSERT INTO {TABLE} (tenant_id, status) "
        "SELECT 1 + g % 8, 'open' FROM generate_series(1, 20000) g"
    )
    return leaves


def _drop() -> None:
    _run(f"DROP TABLE IF EXISTS {TABLE} CASCADE")


class _Writer(threading.Thread):
    """Inserts rows in its own session until stopped; counts them and keeps any error."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with _raw() as conn:
                conn.execute("SET lock_timeout = '30s'")
                while not self.stop.is_set():
                    conn.execute(
                        f"INSERT INTO {TABLE} (tenant_id, status) VALUES (%s, 'new')",
                        [1 + self.rows % 8],
                    )
                    self.rows += 1
        except BaseException as e:  # reported by the test
            self.error = e


def _model():
    @isolate_apps("tests.testapp")
    def make():
        class Event(models.Model):
            tenant_id = models.IntegerField()
            status = models.TextField()

            class Meta:
                app_label = "testapp"
                db_table = TABLE
                managed = False

            def __str__(self) -> str:
                return str(self.pk)

        return Event

    return make()


def _leaf_indexes() -> list[tuple[str, str, bool]]:
    """(leaf table, its index attached under the parent index, valid) for every leaf."""
    return _run(
        """
        SELECT c.relname, i.relname, ix.indisvalid
          FROM pg_partition_tree(%s::regclass) t
          JOIN pg_class c ON c.oid = t.relid
          LEFT JOIN pg_index ix ON ix.indrelid = c.oid
          LEFT JOIN pg_class i ON i.oid = ix.indexrelid
         WHERE t.isleaf AND i.oid IN (SELECT relid FROM pg_partition_tree(%s::regclass))
         ORDER BY 1
        """,
        [TABLE, INDEX],
    )


def _parent_valid() -> bool | None:
    rows = _run("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [INDEX])
    return rows[0][0] if rows else None


def _build(model) -> BuildOutcome:
    index = models.Index(fields=["tenant_id"], name=INDEX)
    with connection.schema_editor(atomic=False) as editor:
        return build_index_concurrently(editor, model, index)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layout", ["list", "hash", "range"])
def test_partitions__build_with_a_writer_attaches_every_leaf_and_the_parent_is_valid(
    layout: str,
) -> None:
    try:
        leaves = _create(layout)
        model = _model()
        writer = _Writer()
        writer.start()
        try:
            outcome = _build(model)
        finally:
            writer.stop.set()
            writer.join(30)
        assert writer.error is None, writer.error
        assert writer.rows > 0
        assert outcome is BuildOutcome.BUILT
        assert _parent_valid() is True
        found = _leaf_indexes()
        assert len(found) == leaves and all(valid for _, _, valid in found), found
        # A second run finds it done.
        assert _build(model) is BuildOutcome.ADOPTED
    finally:
        _drop()


def _lock_waiter(session: dbapi.Session, statement: str) -> int | None:
    rows = session.execute(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        [statement + "%"],
    ).fetchall()
    return rows[0][0] if rows else None


@pytest.mark.django_db(transaction=True)
def test_partitions__attach_completing_a_subpartition_takes_locks_in_the_writers_order() -> None:
    """The deadlock a writer met: it holds the root (a row routed elsewhere, its
    transaction open) and then inserts a row routed to the last sub-partition, while the
    attach of that sub-partition's index completes the sub-partition's parent index (the
    server then locks the root ACCESS EXCLUSIVE to mark the parent valid). The attach takes
    the root first, so it waits for the writer, which goes on and commits."""
    try:
        _create("range")
        model = _model()
        sub = f"{TABLE}_sub"
        # A killed run's state: everything attached but the last leaf's valid index.
        _run(f"CREATE INDEX {INDEX} ON ONLY {TABLE} (tenant_id)")
        for leaf in (f"{TABLE}_0", f"{TABLE}_1"):
            name = partitions.child_index_name(INDEX, leaf)
            _run(f"CREATE INDEX {name} ON {leaf} (tenant_id)")
            _run(f"ALTER INDEX {INDEX} ATTACH PARTITION {name}")
        sub_index = partitions.child_index_name(INDEX, sub)
        _run(f"CREATE INDEX {sub_index} ON ONLY {sub} (tenant_id)")
        _run(f"ALTER INDEX {INDEX} ATTACH PARTITION {sub_index}")
        first = partitions.child_index_name(INDEX, f"{sub}_0")
        _run(f"CREATE INDEX {first} ON {sub}_0 (tenant_id)")
        _run(f"ALTER INDEX {sub_index} ATTACH PARTITION {first}")
        last = partitions.child_index_name(INDEX, f"{sub}_1")
        _run(f"CREATE INDEX {last} ON {sub}_1 (tenant_id)")
        ((routed_last,),) = _run(f"SELECT min(tenant_id) FROM {sub}_1")
        outcome: list[object] = []

        def build() -> None:
            try:
                outcome.append(_build(model))
            except BaseException as e:  # reported below
                outcome.append(e)
            finally:
                connection.close()

        with _raw() as writer, _raw() as watcher:
            writer.execute("SET lock_timeout = '20s'")
            writer.execute("BEGIN")
            writer.execute(f"INSERT INTO {TABLE} (tenant_id, status) VALUES (1, 'held')")
            thread = threading.Thread(target=build, daemon=True)
            thread.start()
            waiting = None
            for _ in range(600):
                waiting = _lock_waiter(watcher, "LOCK TABLE") or _lock_waiter(
                    watcher, "ALTER INDEX"
                )
                if waiting or not thread.is_alive():
                    break
                threading.Event().wait(0.05)
            assert waiting, outcome
            on_root = _lock_waiter(watcher, "LOCK TABLE") == waiting
            writer.execute(
                f"INSERT INTO {TABLE} (tenant_id, status) VALUES (%s, 'routed')", [routed_last]
            )
            writer.execute("COMMIT")
            thread.join(60)
        # Unfixed: [OperationalError('deadlock detected ...')], the build aborted.
        assert outcome == [BuildOutcome.BUILT]
        # It waited for the root, holding nothing the writer needs.
        assert on_root
        assert _parent_valid() is True
        assert {name for _, name, _ in _leaf_indexes()} >= {first, last}
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partitions__rerun_after_a_kill_keeps_attached_adopts_valid_rebuilds_invalid() -> None:
    """State a killed run leaves: the parent ON ONLY, one leaf attached, one leaf with a
    valid unattached index of the same definition, one with an INVALID one (a concurrent
    build cancelled by pg_terminate_backend)."""
    try:
        _create("hash")
        model = _model()
        _run(f"CREATE INDEX {INDEX} ON ONLY {TABLE} (tenant_id)")
        attached = partitions.child_index_name(INDEX, f"{TABLE}_0")
        _run(f"CREATE INDEX {attached} ON {TABLE}_0 (tenant_id)")
        _run(f"ALTER INDEX {INDEX} ATTACH PARTITION {attached}")
        _run(f"CREATE INDEX own_name_on_1 ON {TABLE}_1 (tenant_id)")
        invalid = partitions.child_index_name(INDEX, f"{TABLE}_2")
        # An INVALID index made the honest way: its concurrent build's backend is
        # terminated while it waits for a transaction that holds a row lock.
        with _raw() as blocker, _raw() as builder, _raw() as killer:
            blocker.execute("BEGIN")
            blocker.execute(f"INSERT INTO {TABLE}_2 (tenant_id, status) VALUES (2, 'x')")
            pid = builder.execute("SELECT pg_backend_pid()").fetchone()[0]
            errors: list[BaseException] = []

            def build() -> None:
                try:
                    builder.execute(f"CREATE INDEX CONCURRENTLY {invalid} ON {TABLE}_2 (tenant_id)")
                except Exception as e:  # the driver's error: the backend was terminated
                    errors.append(e)

            thread = threading.Thread(target=build, daemon=True)
            thread.start()
            for _ in range(600):
                # Past the build's first transaction (its catalog entry committed): killed
                # earlier, the build would leave no INVALID index at all.
                waiting = killer.execute(
                    "SELECT count(*) FROM pg_stat_progress_create_index WHERE pid = %s"
                    " AND to_regclass(%s) IS NOT NULL",
                    [pid, invalid],
                ).fetchone()[0]
                if waiting:
                    break
                threading.Event().wait(0.05)
            killer.execute("SELECT pg_terminate_backend(%s)", [pid])
            thread.join(30)
            blocker.execute("ROLLBACK")
        assert errors, "the build was not terminated"
        assert _run(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [invalid]
        ) == [(False,)]
        assert _parent_valid() is False
        # The check's snapshot says how far it got: E002 "1 of 4 partitions attached".
        (live,) = [ix for ix in catalog_snapshot("default", [(None, TABLE)]).indexes]
        assert (live.valid, live.partitions_attached, live.partitions_total) == (False, 1, 4)
        assert _build(model) is BuildOutcome.BUILT
        (live,) = [ix for ix in catalog_snapshot("default", [(None, TABLE)]).indexes]
        assert (live.valid, live.partitions_attached, live.partitions_total) == (True, 4, 4)
        assert _parent_valid() is True
        names = {leaf: name for leaf, name, _ in _leaf_indexes()}
        assert names[f"{TABLE}_0"] == attached  # kept
        assert names[f"{TABLE}_1"] == "own_name_on_1"  # adopted, not built twice
        assert names[f"{TABLE}_2"] == invalid  # dropped and rebuilt under its name
        assert all(valid for _, _, valid in _leaf_indexes())
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partitions__prebuild_then_attach_partition_adopts_it_and_remove_drops_all() -> None:
    try:
        _create("list")
        model = _model()
        index = models.Index(fields=["tenant_id"], name=INDEX)
        _build(model)
        _run(f"CREATE TABLE {TABLE}_late (LIKE {TABLE})")
        _run(f"INSERT INTO {TABLE}_late (id, tenant_id, status) VALUES (0, 9, 'x')")
        with connection.schema_editor(atomic=False) as editor:
            name = partitions.prebuild_for_partition(
                editor, model, index, "public", f"{TABLE}_late"
            )
        _run(f"ALTER TABLE {TABLE} DETACH PARTITION {TABLE}_3")  # the DEFAULT partition
        _run(f"ALTER TABLE {TABLE} ATTACH PARTITION {TABLE}_late FOR VALUES IN (9)")
        names = {leaf: n for leaf, n, _ in _leaf_indexes()}
        assert names[f"{TABLE}_late"] == name  # adopted by ATTACH, not built again
        assert _parent_valid() is True
        with connection.schema_editor(atomic=False) as editor:
            partitions.remove_index(editor, model, index)
        assert _parent_valid() is None
        # Every partition's index went with it (the detached one keeps its own).
        left = _run(
            "SELECT indexname FROM pg_indexes WHERE tablename LIKE %s AND tablename <> %s",
            [f"{TABLE}%", f"{TABLE}_3"],
        )
        assert left == []
    finally:
        _drop()
        _run(f"DROP TABLE IF EXISTS {TABLE}_3")


@pytest.mark.django_db(transaction=True)
def test_partitions__check_reports_n_of_m_attached_with_a_hint_postgresql_accepts() -> None:
    from tenant_indexes.compare import find_problems
    from tenant_indexes.declared import DeclaredIndex, TenantTable

    try:
        _create("hash")
        _run(f"CREATE INDEX {INDEX} ON ONLY {TABLE} (tenant_id)")
        child = partitions.child_index_name(INDEX, f"{TABLE}_0")
        _run(f"CREATE INDEX {child} ON {TABLE}_0 (tenant_id)")
        _run(f"ALTER INDEX {INDEX} ATTACH PARTITION {child}")
        declared = DeclaredIndex(table=TABLE, name=INDEX, columns=("tenant_id",))
        table = TenantTable(
            app_label="testapp",
            model="testapp.Event",
            schema=None,
            table=TABLE,
            tenant_column="tenant_id",
            indexes=(declared,),
            all_index_names=(INDEX,),
        )
        snapshot = catalog_snapshot("default", [(None, TABLE)])
        e002 = [f for f in find_problems([table], snapshot) if f.id == "tenant_indexes.E002"]
        (finding,) = e002
        assert "1 of 4 partitions attached" in finding.message
        assert "repair_tenant_indexes" in finding.hint
        assert "DROP INDEX CONCURRENTLY" not in finding.hint  # refused on a partitioned index
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partitions__usage_sums_scans_tuples_and_sizes_over_the_partition_tree() -> None:
    """Compared with a direct sum over pg_stat_user_indexes / pg_stat_user_tables."""
    from tenant_indexes.statistics import usage_snapshot

    try:
        _create("range")  # with a sub-partitioned partition: three levels
        _build(_model())
        with _raw() as reader:
            reader.execute("SET enable_seqscan = off")
            for tenant in range(1, 9):
                reader.execute(f"SELECT count(*) FROM {TABLE} WHERE tenant_id = %s", [tenant])
            reader.execute("SET enable_seqscan = on")
            reader.execute("SET enable_indexscan = off")
            reader.execute("SET enable_bitmapscan = off")
            reader.execute(f"SELECT count(*) FROM {TABLE}")
            reader.execute(f"ANALYZE {TABLE}")
        _run("SELECT pg_stat_force_next_flush()")
        snapshot = usage_snapshot("default", [(None, TABLE)])
        (index,) = [ix for ix in snapshot.indexes if ix.name == INDEX]
        (table,) = snapshot.tables
        ((scans, read, size),) = _run(
            "SELECT sum(idx_scan), sum(idx_tup_read), sum(pg_relation_size(indexrelid)) "
            "FROM pg_stat_user_indexes WHERE relid IN "
            "(SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf) "
            "AND indexrelid IN (SELECT relid FROM pg_partition_tree(%s::regclass))",
            [TABLE, INDEX],
        )
        ((seq, live, table_bytes),) = _run(
            "SELECT sum(seq_scan), sum(n_live_tup), sum(pg_relation_size(relid)) "
            "FROM pg_stat_user_tables WHERE relid IN "
            "(SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)",
            [TABLE],
        )
        assert scans > 0 and seq > 0 and live >= 20000
        assert (index.idx_scan, index.idx_tup_read, index.exact_size_bytes) == (scans, read, size)
        assert (table.seq_scan, table.n_live_tup, table.table_bytes) == (seq, live, table_bytes)
        assert table.estimated_rows >= 20000
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partitions__dry_run_sql_is_accepted_by_postgresql_and_finishes_a_killed_build() -> None:
    """The statements repair --dry-run prints, run one by one as psql would."""
    try:
        _create("range")
        model = _model()
        index = models.Index(fields=["tenant_id"], name=INDEX)
        _run(f"CREATE INDEX {INDEX} ON ONLY {TABLE} (tenant_id)")  # a run killed early
        with connection.schema_editor(atomic=False) as editor:
            statements = partitionplan.partitioned_index_sql(editor, model, index, "public")
        assert not any("CONCURRENTLY" in s and f'"{TABLE}" ' in s for s in statements)
        assert statements[0].startswith("CREATE INDEX IF NOT EXISTS")
        with _raw() as psql:
            for statement in statements:
                psql.execute(statement)
        assert _parent_valid() is True
        assert len(_leaf_indexes()) == 4  # two range partitions and two hash sub-partitions
    finally:
        _drop()


_KILLED_BUILDER = """
import django, sys
django.setup()
from django.db import connection, models
from tests.test_partitions import INDEX, _model
from tenant_indexes.build import build_index_concurrently
with connection.schema_editor(atomic=False) as editor:
    build_index_concurrently(editor, _model(), models.Index(fields=["tenant_id"], name=INDEX))
"""


@pytest.mark.django_db(transaction=True)
def test_partitions__sigkill_of_the_building_process_then_check_is_truthful_and_rerun_heals(
    tmp_path,
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    from urllib.parse import quote

    try:
        _run(
            f"CREATE TABLE {TABLE} (id bigserial, tenant_id int NOT NULL, status text) "
            "PARTITION BY HASH (tenant_id)"
        )
        for n in range(16):
            _run(
                f"CREATE TABLE {TABLE}_{n} PARTITION OF {TABLE} "
                f"FOR VALUES WITH (MODULUS 16, REMAINDER {n})"
            )
        _run(
            f"INSERT INTO {TABLE} (tenant_id, status) "
            "SELECT g % 1000, 'open' FROM generate_series(1, 400000) g"
        )
        s = connection.settings_dict
        url = (
            f"postgres://{s['USER']}@{quote(s['HOST'] or '', safe='')}"
            f"{':' + str(s['PORT']) if s.get('PORT') else ''}/{s['NAME']}"
        )
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url}
        root = Path(__file__).resolve().parent.parent
        builder = subprocess.Popen([sys.executable, "-c", _KILLED_BUILDER], cwd=root, env=env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and builder.poll() is None:
                rows = _run(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(%s)", [INDEX]
                )
                if rows[0][0] >= 2:
                    break
                time.sleep(0.02)
            assert builder.poll() is None, "the build finished before it could be killed"
            builder.send_signal(signal.SIGKILL)
            builder.wait(30)
        finally:
            if builder.poll() is None:
                builder.kill()
        # The server ends the orphaned backend at its next client check
        # (client_connection_check_interval); wait until no build of ours runs.
        for _ in range(600):
            if not _run(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                [f"%{TABLE}%CONCURRENTLY%"],
            ):
                break
            time.sleep(0.05)
        (live,) = catalog_snapshot("default", [(None, TABLE)]).indexes
        assert live.valid is False and 2 <= live.partitions_attached < 16
        assert live.partitions_total == 16
        assert _build(_model()) is BuildOutcome.BUILT
        (live,) = catalog_snapshot("default", [(None, TABLE)]).indexes
        assert (live.valid, live.partitions_attached) == (True, 16)
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partitions__e004_is_judged_per_leaf_partition() -> None:
    """No parent index at all; three leaves with a tenant index of their own (one of them
    partial, which does not count), one with none: E004 on those two leaves only."""
    try:
        _create("hash")
        _run(f"CREATE INDEX own_0 ON {TABLE}_0 (tenant_id, status)")
        _run(f"CREATE INDEX own_1 ON {TABLE}_1 (tenant_id)")
        _run(f"CREATE INDEX own_2 ON {TABLE}_2 (tenant_id) WHERE status = 'open'")
        _run(f"CREATE INDEX other_3 ON {TABLE}_3 (status, tenant_id)")
        table = TenantTable("testapp", "testapp.Event", None, TABLE, "tenant_id", ())
        snapshot = catalog_snapshot("default", [(None, TABLE)])
        found = [(f.id, f.table) for f in find_problems([table], snapshot)]
        assert found == [
            ("tenant_indexes.E004", f"{TABLE}_2"),
            ("tenant_indexes.E004", f"{TABLE}_3"),
        ]
        # Built through the parent: every leaf has one, nothing to report.
        _build(_model())
        snapshot = catalog_snapshot("default", [(None, TABLE)])
        assert find_problems([table], snapshot) == []
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partitions__drop_advice_for_a_partitioned_index_is_sql_the_server_accepts() -> None:
    """The W001/W002/E003 hints name ``drop_sql``: never CONCURRENTLY on a partitioned index,
    also from the usage read, whose indexes carry no partition counts."""
    from dataclasses import replace

    from django.db import DatabaseError

    from tenant_indexes.partitionleaves import drop_sql
    from tenant_indexes.sql import qualified_name

    try:
        _create("list")
        _build(_model())
        (live,) = catalog_snapshot("default", [(None, TABLE)]).indexes
        from_usage_read = replace(live, partitions_total=None, partitions_attached=None)
        for ix in (live, from_usage_read):
            advice = drop_sql(ix)
            assert "CONCURRENTLY" not in advice.split("(")[0], advice
            assert f"DROP INDEX {qualified_name(ix.schema, ix.name)}" in advice
        # What it replaces is refused; what it says is accepted.
        with pytest.raises(DatabaseError, match="partitioned index"):
            _run(f"DROP INDEX CONCURRENTLY {live.schema}.{live.name}")
        _run(advice.split(" (")[0])
        assert _parent_valid() is None
        _run("SET lock_timeout TO DEFAULT")
        # An ordinary index keeps the concurrent drop.
        _run(f"CREATE INDEX plain_0 ON {TABLE}_0 (tenant_id)")
        (plain,) = catalog_snapshot("default", [(None, f"{TABLE}_0")]).indexes
        expected = f"DROP INDEX CONCURRENTLY {qualified_name(plain.schema, 'plain_0')}"
        assert drop_sql(plain) == expected
    finally:
        _drop()
