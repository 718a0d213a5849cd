"""Failures in the middle of a build, each one line on stderr and a documented exit code.

``manage.py migrate`` (and ``repair_tenant_indexes``) run in a subprocess on the
``killed_build`` scenario while the test makes the build fail for real:

- the server shuts down (``pg_ctl stop -m fast`` of a throwaway cluster) while the build
  waits for an old snapshot: exit 1, no traceback; after a restart the next run finishes;
- a real deadlock: a session that holds a snapshot asks for a lock the build holds, and the
  build (whose ``deadlock_timeout`` is the shorter) then waits for that session's snapshot:
  the server cancels the build, exit 1, ``a deadlock was detected``;
- ``statement_timeout`` set on the database: the build runs with its own (off) and ends
  valid; the database's value is back afterwards;
- a cancel request (what a ``statement_timeout`` firing looks like to the build): exit 1,
  ``the statement was cancelled``;
- a real hot standby as the target: ``read-only: run against the primary``, exit 2.

The exit codes are the ones docs/builds.md documents ("Failures and exit codes").
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.integration.test_operations_killed import INDEX, SCENARIO_CONFIG, TABLE
from tests.support import dbapi, manage
from tests.support.cluster import start_cluster
from tests.support.manage import DEADLINE
from tests.support.replica import start_replica_pair

ROWS = 20_000
INSERT_ROWS = (
    f"INSERT INTO {TABLE} (tenant_id, n, payload) "
    "SELECT ('00000000-0000-0000-0000-00000000000' || (g % 10))::uuid, g, 'x' "
    f"FROM generate_series(1, {ROWS}) AS g"
)


def _entry(settings_dict: dict[str, Any], options: str = "") -> dict[str, Any]:
    entry = {k: settings_dict[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    # No parallel workers: one backend builds, the one the test watches.
    entry["OPTIONS"] = {"options": f"-c max_parallel_maintenance_workers=0 {options}".strip()}
    return entry


class _Run:
    """A ``manage.py`` subprocess whose stdout and stderr are read as they come."""

    def __init__(self, db: dict[str, Any], *args: str, config: dict[str, Any] | None = None):
        env = manage.scenario_env(db, config or SCENARIO_CONFIG, PYTHONUNBUFFERED="1")
        self.proc = manage.start(env, *args, stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def finish(self) -> tuple[int, str, str]:
        self.proc.wait(timeout=DEADLINE)
        for reader in self._readers:
            reader.join(timeout=DEADLINE)
        return self.proc.returncode, "".join(self.out), "".join(self.err)


def _run(db: dict[str, Any], *args: str, config: dict[str, Any] | None = None) -> Any:
    return _Run(db, *args, config=config).finish()


def _assert_one_line(code: int, out: str, err: str, expected_code: int, *needles: str) -> None:
    detail = f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert code == expected_code, detail
    assert "Traceback" not in out + err, detail
    lines = err.strip().splitlines()
    assert len(lines) == 1, detail
    assert any(needle in lines[0] for needle in needles), detail


def _phase(session: dbapi.Session) -> str | None:
    rows = session.execute(
        "SELECT phase FROM pg_stat_progress_create_index WHERE relid = to_regclass(%s)", [TABLE]
    ).fetchall()
    return rows[0][0] if rows else None


def _valid(session: dbapi.Session) -> bool | None:
    rows = session.execute(
        "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE i.relname = %s",
        [INDEX],
    ).fetchall()
    return rows[0][0] if rows else None


# -- the server shuts down mid-build --------------------------------------------------------


@pytest.mark.django_db
def test_server_shutdown_mid_build__exit_1_one_line_then_the_next_run_finishes() -> None:
    cluster = start_cluster(dbname="ti_faults")
    try:
        db = _entry(cluster.database_settings(connection.settings_dict))
        code, out, err = _run(db, "migrate", "killed_build", "0001", "--no-input")
        assert code == 0, out + err
        with cluster.connect() as session:
            session.execute(INSERT_ROWS)
        blocker = cluster.connect()
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM django_migrations")
        build = _Run(db, "migrate", "killed_build", "--no-input")
        with cluster.connect() as watcher:
            manage.wait_for(
                "the build to wait for old snapshots",
                lambda: _phase(watcher) == "waiting for old snapshots",
            )
        cluster.stop("fast")
        code, out, err = build.finish()
        _assert_one_line(
            code,
            out,
            err,
            1,
            "the server is shutting down",
            "the connection to the server was lost",
            "the server terminated the build's connection",
        )
        assert f'Building index "{INDEX}"' in err, err
        cluster.start()
        with cluster.connect() as session:
            assert _valid(session) is False  # the interrupted build left it INVALID
        code, out, err = _run(db, "migrate", "killed_build", "--no-input")
        assert code == 0, out + err
        with cluster.connect() as session:
            assert _valid(session) is True
            assert session.execute(
                "SELECT count(*) FROM django_migrations WHERE app = 'killed_build'"
            ).fetchall() == [(2,)]
    finally:
        cluster.destroy()


# -- on the run's own server: deadlock, statement_timeout, cancel -------------------------


@pytest.fixture
def scenario_table(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """The scenario's table with ``ROWS`` rows and 0002 unapplied; the subprocess's entry."""
    with django_db_blocker.unblock():
        db = _entry(connection.settings_dict)
        code, out, err = _run(db, "migrate", "killed_build", "0001", "--no-input")
        assert code == 0, out + err
        with connection.cursor() as cursor:
            cursor.execute(INSERT_ROWS)
        try:
            yield db
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
                cursor.execute("DELETE FROM django_migrations WHERE app = 'killed_build'")
            connection.close()


def _session() -> dbapi.Session:
    return dbapi.connect_like(connection.settings_dict)


@pytest.mark.django_db(transaction=True)
def test_deadlock_with_the_build__exit_1_one_line_then_the_next_run_finishes(
    scenario_table: dict[str, Any],
) -> None:
    # The build detects the cycle first (100ms), so it is the one the server cancels.
    db = _entry(scenario_table, "-c deadlock_timeout=100ms")
    writer, other = _session(), _session()
    try:
        # The writer holds the build in "waiting for writers before build" while the other
        # session, which holds a snapshot, queues behind the build's table lock.
        writer.execute("BEGIN")
        writer.execute(f"UPDATE {TABLE} SET n = n WHERE id = 1")
        other.execute("SET deadlock_timeout = '60s'")
        other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        other.execute("SELECT count(*) FROM django_migrations")
        build = _Run(db, "migrate", "killed_build", "--no-input")
        with _session() as watcher:
            manage.wait_for(
                "the build to wait for the writer",
                lambda: _phase(watcher) == "waiting for writers before build",
            )
            waiter = threading.Thread(
                target=lambda: other.execute(f"LOCK TABLE {TABLE} IN SHARE MODE"), daemon=True
            )
            waiter.start()
            manage.wait_for(
                "the other session to queue for the table",
                lambda: (
                    watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE relation = to_regclass(%s)"
                        " AND mode = 'ShareLock' AND NOT granted",
                        [TABLE],
                    ).fetchall()
                    == [(1,)]
                ),
            )
            # The writer ends: the build goes on, builds, then waits for the other session's
            # snapshot, which waits for the build's lock. A deadlock.
            writer.execute("COMMIT")
            code, out, err = build.finish()
            waiter.join(timeout=DEADLINE)
        _assert_one_line(code, out, err, 1, "a deadlock was detected")
        other.execute("COMMIT")
        with _session() as session:
            assert _valid(session) is False
        code, out, err = _run(scenario_table, "migrate", "killed_build", "--no-input")
        assert code == 0, out + err
        with _session() as session:
            assert _valid(session) is True
    finally:
        for session in (writer, other):
            try:
                session.execute("ROLLBACK")
            except Exception:  # already ended
                pass
            session.close()


@pytest.mark.django_db(transaction=True)
def test_database_statement_timeout__the_build_runs_without_it_and_ends_valid(
    scenario_table: dict[str, Any],
) -> None:
    """A database-wide statement_timeout shorter than the build: the build turns it off for
    its own session and ends valid; the database's setting is left as it was."""
    name = connection.settings_dict["NAME"]
    blocker = _session()
    try:
        with _session() as admin:
            admin.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '500ms'")
        # Holds the build in "waiting for old snapshots" longer than 500ms.
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM django_migrations")
        build = _Run(scenario_table, "migrate", "killed_build", "--no-input")
        with _session() as watcher:
            manage.wait_for(
                "the build to wait for old snapshots",
                lambda: _phase(watcher) == "waiting for old snapshots",
            )
            # Longer than the database's statement_timeout, counted by the server itself.
            watcher.execute("SET statement_timeout = 0")
            watcher.execute("SELECT pg_sleep(1)")
            assert _phase(watcher) == "waiting for old snapshots"
        blocker.execute("ROLLBACK")
        code, out, err = build.finish()
        assert code == 0, out + err
        with _session() as session:
            assert _valid(session) is True
            assert session.execute("SHOW statement_timeout").fetchall() == [("500ms",)]
    finally:
        blocker.close()
        with _session() as admin:
            admin.execute(f'ALTER DATABASE "{name}" RESET statement_timeout')


@pytest.mark.django_db(transaction=True)
def test_cancelled_build__exit_1_one_line_then_the_next_run_finishes(
    scenario_table: dict[str, Any],
) -> None:
    blocker = _session()
    try:
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM django_migrations")
        build = _Run(scenario_table, "migrate", "killed_build", "--no-input")
        with _session() as watcher:
            pid = manage.wait_for(
                "the build to wait for old snapshots",
                lambda: watcher.execute(
                    "SELECT pid FROM pg_stat_progress_create_index WHERE relid = to_regclass(%s)"
                    " AND phase = 'waiting for old snapshots'",
                    [TABLE],
                ).fetchall(),
            )[0][0]
            assert watcher.execute("SELECT pg_cancel_backend(%s)", [pid]).fetchall() == [(True,)]
        code, out, err = build.finish()
        _assert_one_line(code, out, err, 1, "the statement was cancelled")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    code, out, err = _run(scenario_table, "migrate", "killed_build", "--no-input")
    assert code == 0, out + err
    with _session() as session:
        assert _valid(session) is True


# -- a hot standby as the target --------------------------------------------------------------


@pytest.mark.django_db
def test_hot_standby_target__read_only_exit_2_for_migrate_and_repair() -> None:
    pair = start_replica_pair()
    try:
        primary = _entry(pair.database_settings(connection.settings_dict, standby=False))
        standby = _entry(pair.database_settings(connection.settings_dict, standby=True))
        code, out, err = _run(primary, "migrate", "killed_build", "0001", "--no-input")
        assert code == 0, out + err
        pair.wait_for_replay()
        for args in (
            ("migrate", "killed_build", "--no-input"),
            ("repair_tenant_indexes", "killed_build"),
        ):
            code, out, err = _run(standby, *args)
            _assert_one_line(code, out, err, 2, "read-only: run against the primary")
        with pair.connect(standby=False) as session:
            assert _valid(session) is None  # nothing was built anywhere
    finally:
        pair.stop()
