"""Two builders of one index at once: both exit 0, one CREATE INDEX runs, the index ends valid.

Two deploy pods running ``migrate`` together is normal. Two processes (two ``migrate``, two
``repair_tenant_indexes``, or one of each) start together on the ``killed_build`` scenario,
from a missing and from an INVALID index. A session holding an old snapshot keeps the first
build in "waiting for old snapshots" until the second has announced that it waits for the
build lock: a waiting builder that held a snapshot would now deadlock with the first one
(the defect this guards against). Then the blocker ends; both must exit 0, exactly one
output says ``built index`` (the builds' own log lines count the CREATE INDEX), the other
says ``adopted``, and the index is valid.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.integration.test_operations_killed import (
    DEADLINE,
    INDEX,
    TABLE,
    _Blocker,
    _index_state,
    _Lines,
    _manage,
    _migrate,
    _query,
)
from tests.support import manage

ROUNDS = 10
ROWS = 20_000
# Starting two Django processes on a loaded machine can take long: three usual bounds.
START_DEADLINE = 3 * DEADLINE

COMMANDS = {
    "migrate": ("migrate", "killed_build", "--no-input"),
    "repair": ("repair_tenant_indexes", "killed_build"),
}


@pytest.fixture(scope="module")
def small_table(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock(), manage.killed_build_table(ROWS):
        yield


def _reset(start: str) -> None:
    """No index and 0002 unrecorded; for ``invalid``, an INVALID index of that name."""
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{INDEX}"')
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'killed_build' AND name LIKE '0002%%'"
        )
        if start == "invalid":
            # A unique build over duplicate tenant ids fails and leaves an INVALID index.
            with pytest.raises(Exception, match="could not create unique index"):
                cursor.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{INDEX}" ON {TABLE} (tenant_id)')
    state = _index_state()
    assert state is None if start == "missing" else state[0] is False, state


def _wait_until_one_waits(
    round_: int, procs: list[subprocess.Popen[str]], outputs: list[_Lines]
) -> None:
    """Until one builder says it waits for the other; fail at once, with what both printed,
    when a builder exits first (while the blocker holds the build, neither can be done).

    Bounded by ``START_DEADLINE``.
    """

    def probe() -> bool:
        if any("waiting for another build" in "".join(o.lines) for o in outputs):
            return True
        if any(p.poll() is not None for p in procs):
            seen = "\n----\n".join("".join(o.lines) for o in outputs)
            codes = [p.poll() for p in procs]
            raise AssertionError(
                f"round {round_}: a builder exited before either waited for the other; "
                f"exit codes {codes}:\n{seen}"
            )
        return False

    ends = time.monotonic() + START_DEADLINE
    while time.monotonic() < ends:
        if probe():
            return
        time.sleep(0.01)
    seen = "\n----\n".join("".join(o.lines) for o in outputs)
    raise AssertionError(f"round {round_}: timed out waiting for one builder to wait:\n{seen}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("start", ["missing", "invalid"])
@pytest.mark.parametrize(
    ("first", "second"), [("migrate", "migrate"), ("repair", "repair"), ("migrate", "repair")]
)
def test_two_builders__both_exit_0_one_builds_the_other_adopts(
    small_table: None, start: str, first: str, second: str
) -> None:
    # The test database is flushed after each test, content types and permissions with it.
    # Two migrate processes would both find them missing in their post_migrate handlers and
    # race to insert them (Django's, not the build's: one fails on auth_permission's unique
    # key). One migrate that changes nothing makes them first.
    _reset(start)
    code, out = _migrate("0001")
    assert code == 0, out
    for round_ in range(ROUNDS):
        _reset(start)
        blocker = _Blocker("snapshot")
        procs: list[subprocess.Popen[str]] = []
        try:
            procs = [_manage(*COMMANDS[first]), _manage(*COMMANDS[second])]
            outputs = [_Lines(p) for p in procs]
            _wait_until_one_waits(round_, procs, outputs)
        finally:
            blocker.release()
        texts = [o.finish() for o in outputs]
        detail = f"round {round_}:\n" + "\n----\n".join(texts)
        assert [p.returncode for p in procs] == [0, 0], detail
        built = sum(t.count(f'built index "{INDEX}"') for t in texts)
        adopted = sum(t.count(f'adopted the existing valid index "{INDEX}"') for t in texts)
        assert (built, adopted) == (1, 1), detail
        assert "Traceback" not in detail and "deadlock" not in detail, detail
        assert _index_state() == (True, True)
        # The waiting builder named the one it waited for.
        waiting = next(t for t in texts if "waiting for another build" in t)
        assert f"{INDEX}" in waiting and "pid " in waiting, waiting


@pytest.mark.django_db(transaction=True)
def test_two_builders__no_lock_or_setting_left_behind(small_table: None) -> None:
    _reset("missing")
    procs = [_manage(*COMMANDS["migrate"]), _manage(*COMMANDS["repair"])]
    for proc in procs:
        out, _ = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, out
    assert _query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
