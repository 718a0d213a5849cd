"""The progress bar as a terminal shows it: ``manage.py migrate`` in a real pseudo-terminal.

The ``killed_build`` scenario's ``0002`` builds a tenant index concurrently; here its table
holds ``ROWS`` rows (made with ``generate_series``), so the build runs long enough for the
sampling thread (every 0.5 s) to draw the bar several times. ``migrate`` runs with its
stdout, stderr and stdin on the slave side of a ``pty`` pair; the test reads everything the
terminal received from the master side and replays it the way a terminal does (``\\r``
returns to the start of the line, characters overwrite), so "a clean final line" means what
a person would see, not what the bytes happen to contain.
"""

from __future__ import annotations

import os
import pty
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.support import manage

ROWS = 2_000_000
INDEX = "scenario_bulk_tenant_n"
DEADLINE = 300.0  # seconds a migrate may take before the test fails
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours (Django's styles on a terminal)
BAR = re.compile(r"^    \[([#-]{30})\] " + INDEX + r": (.+)$")


def _env(config: dict[str, Any]) -> dict[str, str]:
    # One backend, little sort memory: a build slow enough to be sampled many times.
    entry = manage.database_entry(OPTIONS=manage.SLOW_BUILD)
    env = manage.scenario_env(entry, config, TERM="xterm")
    env.pop("NO_COLOR", None)
    return env


def _migrate_in_terminal(*args: str, config: dict[str, Any] | None = None) -> tuple[int, str]:
    """``manage.py migrate`` attached to a new pseudo-terminal; everything it received."""
    master, slave = pty.openpty()
    try:
        proc = manage.start(
            _env(config or {}),
            *("migrate", "killed_build", *args, "--no-input"),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            text=False,
            close_fds=True,
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the slave side has gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    code = proc.wait(timeout=DEADLINE)
    return code, ANSI.sub("", b"".join(chunks).decode())


def _migrate_piped(*args: str, config: dict[str, Any] | None = None) -> tuple[int, str]:
    migrate = ("migrate", "killed_build", *args, "--no-input")
    proc = manage.run(_env(config or {}), *migrate, timeout=DEADLINE)
    return proc.returncode, proc.stdout + proc.stderr


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: ``\\r`` returns, characters overwrite."""
    lines: list[str] = []
    current: list[str] = []
    column = 0
    for char in raw.replace("\r\n", "\n"):
        if char == "\n":
            lines.append("".join(current))
            current, column = [], 0
        elif char == "\r":
            column = 0
        else:
            if column < len(current):
                current[column] = char
            else:
                current.append(char)
            column += 1
    if current:
        lines.append("".join(current))
    return lines


def _query(sql: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def _forget_build() -> None:
    """Drop the built index and 0002's record, so the next test builds it again."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'killed_build' AND name LIKE '0002%%'"
        )


@pytest.fixture(scope="module")
def big_table(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The scenario table with ``ROWS`` rows, made once for the module, dropped after."""
    with django_db_blocker.unblock(), manage.killed_build_table(ROWS, scattered=True):
        yield


@pytest.fixture
def rebuild(big_table: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        _forget_build()
        try:
            yield
        finally:
            _forget_build()


def test_progress__terminal_draws_a_bar_that_updates_and_ends_on_a_clean_line(
    rebuild: None, django_db_blocker: Any
) -> None:
    code, raw = _migrate_in_terminal()
    assert code == 0, raw
    frames = [frame for frame in re.split(r"[\r\n]", raw) if BAR.match(frame.rstrip())]
    # Drawn, and redrawn in place: several frames, joined by carriage returns, more than
    # one distinct state (phase or percent) among them.
    assert len(frames) >= 3, raw
    assert "\r    [" in raw, raw
    states = {BAR.match(frame.rstrip()).group(2) for frame in frames}  # type: ignore[union-attr]
    assert len(states) >= 2, states
    assert any(BAR.match(f.rstrip()).group(1).startswith("#") for f in frames), frames  # type: ignore[union-attr]
    screen = _screen(raw)
    (bar_line,) = [line for line in screen if BAR.match(line.rstrip())]
    # What stays on screen is exactly the last frame: no leftovers of a longer earlier one.
    assert bar_line.rstrip() == frames[-1].rstrip(), (bar_line, frames[-1])
    # Django's "Applying ... OK" never lands on the bar's line.
    applying = next(i for i, line in enumerate(screen) if "Applying killed_build.0002" in line)
    assert screen.index(bar_line) > applying
    assert not any("OK" in line for line in screen if BAR.match(line.rstrip()))
    assert any(line.strip() == "OK" or line.rstrip().endswith(" OK") for line in screen), screen
    with django_db_blocker.unblock():
        assert _query(
            "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            f"WHERE i.relname = '{INDEX}'"
        ) == [(True,)]


def test_progress__verbosity_0_in_a_terminal_draws_nothing(rebuild: None) -> None:
    code, raw = _migrate_in_terminal("--verbosity", "0")
    assert code == 0, raw
    assert INDEX not in raw
    assert "[" not in raw and "\r" not in raw.replace("\r\n", "\n"), raw


def test_progress__not_a_terminal_prints_lines_and_no_bar(rebuild: None) -> None:
    code, out = _migrate_piped(config={"BUILD_PROGRESS_INTERVAL": 1.0})
    assert code == 0, out
    assert "\r" not in out
    assert "[#" not in out and "[-" not in out
    progress = [line for line in out.splitlines() if line.startswith(f"    {INDEX}: ")]
    assert progress, out
