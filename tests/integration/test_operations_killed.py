"""Killed builds heal: ``manage.py migrate`` in a subprocess, killed at chosen build phases.

The subprocess migrates the test database with ``tests/scenario_settings.py`` (which adds the
``killed_build`` scenario app). Its ``0002`` builds a tenant index concurrently on a table of
``ROWS`` rows. The test watches ``pg_stat_progress_create_index`` from its own session and,
when the build reaches the phase under test, either terminates the build's backend
(``pg_terminate_backend``) or kills the ``migrate`` process with SIGKILL. A blocker session
holds the build in the waiting phases, so those kills are deterministic; the "building"
phase needs enough rows to be observed. Then the index must be INVALID, nothing recorded,
and the next ``migrate`` must heal it with the row count unchanged.

A last test runs the build while another session inserts and updates rows throughout: no
write fails, none is lost, and the new index holds every row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections

from tests.support import dbapi, manage

ROWS = 400_000
INDEX = "scenario_bulk_tenant_n"
TABLE = manage.TABLE
DEADLINE = manage.DEADLINE  # seconds any awaited state may take before the test fails

# Lock waits long enough that a blocker never makes the build give up before the kill; a
# short client check so that a build whose migrate was SIGKILLed stops while still waiting.
SCENARIO_CONFIG = {
    "BUILD_LOCK_TIMEOUT": "60s",
    "BUILD_CLIENT_CHECK_INTERVAL": "100ms",
    "BUILD_PROGRESS": "lines",
    "BUILD_PROGRESS_INTERVAL": 1.0,
}


def _manage(*args: str) -> subprocess.Popen[str]:
    env = manage.scenario_env(
        manage.database_entry(OPTIONS=manage.SLOW_BUILD), SCENARIO_CONFIG, PYTHONUNBUFFERED="1"
    )
    return manage.start(env, *args)


def _migrate(*args: str) -> tuple[int, str]:
    proc = _manage("migrate", "killed_build", *args, "--no-input")
    out, _ = proc.communicate(timeout=DEADLINE)
    return proc.returncode, out


def _query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _index_state() -> tuple[bool, bool] | None:
    rows = _query(
        "SELECT x.indisvalid, x.indisready FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE i.relname = %s",
        [INDEX],
    )
    return rows[0] if rows else None


def _recorded() -> bool:
    return bool(
        _query("SELECT 1 FROM django_migrations WHERE app = 'killed_build' AND name LIKE '0002%%'")
    )


def _row_count() -> int:
    return _query(f"SELECT count(*) FROM {TABLE}")[0][0]


@pytest.fixture(scope="module")
def bulk_table(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The scenario table with ``ROWS`` rows, created once for the module, dropped after."""
    with django_db_blocker.unblock(), manage.killed_build_table(ROWS, scattered=True):
        yield


class _Blocker:
    """A session that holds a build in one of its waiting phases until released."""

    def __init__(self, kind: str) -> None:
        self.session = connections.create_connection("default")
        with self.session.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pid = cursor.fetchone()[0]
            if kind == "writer":  # held in "waiting for writers before build"
                cursor.execute("BEGIN")
                cursor.execute(f"UPDATE {TABLE} SET n = n WHERE id = 1")
            else:  # an old snapshot: held in "waiting for old snapshots"
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SELECT count(*) FROM django_migrations")

    def release(self) -> None:
        with self.session.cursor() as cursor:
            cursor.execute("ROLLBACK")
        self.session.close()


PHASES = {
    # phase under test: (blocker kind or None, predicate on the observed phase)
    "waiting for writers": ("writer", lambda p: p == "waiting for writers before build"),
    "building": ("snapshot", lambda p: p.startswith("building index")),
    "waiting for old snapshots": ("snapshot", lambda p: p == "waiting for old snapshots"),
}


def _build_backend(accept: Any) -> int | None:
    rows = _query(
        "SELECT pid, phase FROM pg_stat_progress_create_index WHERE relid = to_regclass(%s)",
        [TABLE],
    )
    for pid, phase in rows:
        if accept(phase):
            return pid
    return None


class _Lines(threading.Thread):
    """Reads a subprocess's output as it comes, so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def finish(self) -> str:
        self.proc.wait(timeout=DEADLINE)
        self.join(timeout=DEADLINE)
        return "".join(self.lines)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("kill", "phase"),
    [
        ("terminate", "waiting for writers"),
        ("terminate", "building"),
        ("terminate", "waiting for old snapshots"),
        ("sigkill", "waiting for writers"),
        ("sigkill", "building"),
    ],
)
def test_killed_build__index_is_invalid_then_migrate_heals_it(
    bulk_table: None, kill: str, phase: str
) -> None:
    rows_before = _row_count()
    blocker_kind, accept = PHASES[phase]
    blocker = _Blocker(blocker_kind)
    released = False
    proc = _manage("migrate", "killed_build", "--no-input")
    output = _Lines(proc)
    try:
        build_pid = manage.wait_for(f"the build to reach {phase!r}", lambda: _build_backend(accept))
        if blocker_kind == "writer":
            # The build waits for the blocker: migrate's progress line (not a terminal, so
            # lines) must show that phase and the pid it waits for.
            blocker_pid = blocker.pid
            expected = (
                f"{INDEX}: waiting for writers before build 0% (waiting for pid {blocker_pid})"
            )
            manage.wait_for(
                "the progress line", lambda: any(expected in line for line in output.lines)
            )
        if kill == "terminate":
            assert _query("SELECT pg_terminate_backend(%s)", [build_pid]) == [(True,)]
            out = output.finish()
            assert proc.returncode != 0, out
            # psycopg 3 reads the server's "terminating connection" message; psycopg2 (on
            # libpq 17) reports only that the server closed the connection.
            assert "terminat" in out or (
                dbapi.DRIVER == "psycopg2" and "the connection to the server was lost" in out
            ), out
        else:
            os.kill(proc.pid, signal.SIGKILL)
            output.finish()
            assert proc.returncode == -signal.SIGKILL
            # The orphaned build goes on until it waits (here for the blocker), where
            # client_connection_check_interval notices the dead client and stops it.
            manage.wait_for(
                "the orphaned build backend to exit",
                lambda: not _query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [build_pid]),
            )
        blocker.release()
        released = True
        state = _index_state()
        assert state is not None and state[0] is False, f"expected an INVALID index: {state}"
        # check_tenant_indexes reports it: E002, exit 1.
        check = _manage("check_tenant_indexes", "killed_build", "--format", "json")
        report, _ = check.communicate(timeout=DEADLINE)
        assert check.returncode == 1, report
        document, _ = json.JSONDecoder().raw_decode(report[report.index("{") :])
        findings = document["findings"]
        assert [(f["id"], f["index"]) for f in findings if f["index"] == INDEX] == [
            ("tenant_indexes.E002", INDEX)
        ], findings
        assert not _recorded()
        assert _row_count() == rows_before

        code, out = _migrate()
        assert code == 0, out
        assert f'dropping the INVALID index "{INDEX}"' in out, out
        assert _index_state() == (True, True)
        assert _recorded()
        assert _row_count() == rows_before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not released:
            blocker.release()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")
            cursor.execute(
                "DELETE FROM django_migrations WHERE app = 'killed_build' AND name LIKE '0002%%'"
            )


class _Writer(threading.Thread):
    """Inserts and updates rows of the bulk table from its own session until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.inserted: list[int] = []
        self.updated: dict[int, str] = {}
        self.errors: list[BaseException] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        session = connections.create_connection("default")
        try:
            with session.cursor() as cursor:
                k = 0
                while not self._stop_event.is_set():
                    k += 1
                    cursor.execute(
                        f"INSERT INTO {TABLE} (tenant_id, n, payload) VALUES (%s, %s, 'new') "
                        "RETURNING id",
                        [WRITER_TENANT, -k],
                    )
                    self.inserted.append(cursor.fetchone()[0])
                    row_id = 1 + (k * 7919) % ROWS
                    cursor.execute(
                        f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [f"updated {k}", row_id]
                    )
                    self.updated[row_id] = f"updated {k}"
        except BaseException as e:  # reported by the test
            self.errors.append(e)
        finally:
            session.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


WRITER_TENANT = "00000000-0000-0000-0000-0000000000ff"


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers__no_write_fails_or_is_lost_during_the_build(bulk_table: None) -> None:
    rows_before = _row_count()
    writer = _Writer()
    writer.start()
    proc = _manage("migrate", "killed_build", "--no-input")
    try:
        manage.wait_for("the build to start", lambda: _build_backend(lambda phase: True))
        writes_at_start = len(writer.inserted)
        out, _ = proc.communicate(timeout=DEADLINE)
        writes_at_end = len(writer.inserted)
    finally:
        writer.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 0, out
        assert writer.errors == []
        assert writes_at_end > writes_at_start, "the writer wrote nothing during the build"
        assert _index_state() == (True, True)
        # Nothing lost: every insert and the last update of every row are there...
        assert _row_count() == rows_before + len(writer.inserted)
        ids = [r[0] for r in _query(f"SELECT id FROM {TABLE} WHERE n < 0")]
        assert sorted(ids) == sorted(writer.inserted)
        updated = dict(
            _query(f"SELECT id, payload FROM {TABLE} WHERE id = ANY(%s)", [list(writer.updated)])
        )
        assert updated == writer.updated
        # ...and the new index has every row the table has (index scan versus heap scan).
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
            cursor.execute(
                f"EXPLAIN SELECT count(*) FROM {TABLE} WHERE tenant_id = %s AND n < 0",
                [WRITER_TENANT],
            )
            plan = " ".join(r[0] for r in cursor.fetchall())
            assert INDEX in plan, plan
            cursor.execute(
                f"SELECT count(*) FROM {TABLE} WHERE tenant_id = %s AND n < 0", [WRITER_TENANT]
            )
            assert cursor.fetchone()[0] == len(writer.inserted)
            cursor.execute("RESET enable_seqscan; RESET enable_bitmapscan")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE} WHERE n < 0")
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")
            cursor.execute(
                "DELETE FROM django_migrations WHERE app = 'killed_build' AND name LIKE '0002%%'"
            )


@pytest.mark.django_db(transaction=True)
def test_migrate_cli__index_with_another_definition_exits_1_with_a_message_not_a_traceback(
    bulk_table: None,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX {INDEX} ON {TABLE} (n)")
    try:
        code, out = _migrate()
        assert code == 1, out
        assert (
            f'IndexDefinitionMismatchError: Index "{INDEX}" already exists and is valid' in out
        ), out
        assert "Traceback" not in out, out
        assert not _recorded()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")


def _hold_build_lock() -> Any:
    """A session holding the build lock of the scenario index, as another builder would."""
    session = connections.create_connection("default")
    with session.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock(hashtext('tenant_indexes.build'), hashtext(%s))",
            [f"public.{INDEX}"],
        )
    return session


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    "phase", ["waiting for the build lock", "waiting for writers", "waiting for old snapshots"]
)
def test_signal_mid_build__clean_exit_then_next_migrate_finishes(
    bulk_table: None, signame: str, phase: str
) -> None:
    """SIGINT/SIGTERM at three phases: exit 130/143 with one line and no traceback, the
    build lock released, and the next migrate builds the index valid."""
    holder = _hold_build_lock() if phase == "waiting for the build lock" else None
    blocker = None if holder is not None else _Blocker(PHASES[phase][0])
    proc = _manage("migrate", "killed_build", "--no-input")
    output = _Lines(proc)
    try:
        if holder is not None:
            manage.wait_for(
                "the build to wait for the lock",
                lambda: any("waiting for another build" in line for line in output.lines),
            )
        else:
            manage.wait_for(
                f"the build to reach {phase!r}", lambda: _build_backend(PHASES[phase][1])
            )
        os.kill(proc.pid, getattr(signal, signame))
        out = output.finish()
    finally:
        if holder is not None:
            holder.close()
        if blocker is not None:
            blocker.release()
    assert proc.returncode == {"SIGINT": 130, "SIGTERM": 143}[signame], out
    assert "Traceback" not in out, out
    assert f"interrupted by {signame}" in out, out
    assert "Could not restore" not in out, out
    assert not _recorded()
    manage.wait_for(
        "the build's locks to go",
        lambda: not _query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"),
    )
    code, out = _migrate()
    assert code == 0, out
    assert _index_state() == (True, True)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {INDEX}")
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'killed_build' AND name LIKE '0002%%'"
        )
