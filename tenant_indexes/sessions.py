"""Is the build's server session its own? Poolers between Django and PostgreSQL.

A concurrent build relies on session state: ``lock_timeout`` and ``statement_timeout`` set
for the session and restored afterwards, and session advisory locks. Behind a transaction
pooler (PgBouncer ``pool_mode = transaction``) consecutive statements of one client may run
on different server sessions and one server session serves many clients: the settings leak
to other clients and the locks stay held by an idle server connection. So a build refuses
to run there (exit 2), and checks at every step that its server session is still the same.

How it tells:

- the driver's backend pid (the BackendKeyData of the connect) equals ``pg_backend_pid()``
  on a direct connection: no pooler, nothing more to prove;
- otherwise a pooler is in between; a second connection of the same alias asks for its
  ``pg_backend_pid()`` while the build's connection is idle. A transaction pooler hands it
  the server session the build just used (the same pid): refused. A session pooler gives it
  another one, or none while the pool is full: the probe gives up after
  :data:`PROBE_SECONDS` and the build goes on, still checking its pid at every step.

The check and the health view use no session state (their timeouts are ``SET LOCAL`` in one
transaction), so they work through any pooler.

:func:`interruptible_statements` lets SIGINT and SIGTERM cancel a running statement on
psycopg2 as psycopg 3 does (the commands and every build run under it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections

from . import buildcontrol
from .exceptions import BuildRefusedError

logger = logging.getLogger(__name__)

#: Seconds the second-connection probe waits for a server session from a pooler.
PROBE_SECONDS = 1.0

REMEDY = (
    "Run migrations over a direct or session-pooled connection: add a database alias for it "
    '(e.g. DATABASES["direct"] with the server\'s HOST/PORT) and run '
    '"manage.py migrate --database direct" (or repair_tenant_indexes --database direct).'
)


def _refuse(alias: str, detail: str) -> BuildRefusedError:
    return BuildRefusedError(
        f'Refusing to build on database alias "{alias}": it goes through a transaction '
        f"pooler ({detail}), where session settings and advisory locks leak to other "
        f"clients. {REMEDY}"
    )


@dataclass
class SessionGuard:
    """The server session a build started on; :meth:`verify` before each step."""

    connection: Any
    pid: int
    pooled: bool

    def verify(self, step: str) -> None:
        """Raise :class:`BuildRefusedError` when the server session is another one now."""
        if not self.pooled:
            return
        now = buildcontrol.backend_pid(self.connection)
        if now != self.pid:
            raise _refuse(
                self.connection.alias,
                f"the server session changed from pid {self.pid} to pid {now} before {step}",
            )


def _probe_pid(alias: str, answer: queue.Queue[int | None]) -> None:
    probe = connections.create_connection(alias)
    try:
        answer.put(buildcontrol.backend_pid(probe))
    except Exception:
        logger.debug("pooler probe of %s failed", alias, exc_info=True)
        answer.put(None)
    finally:
        probe.close()


def second_session_pid(alias: str, seconds: float = PROBE_SECONDS) -> int | None:
    """``pg_backend_pid()`` of a second connection of ``alias``; ``None`` when none answers
    within ``seconds`` (a full session pool). The probe thread is a daemon: left behind, it
    ends with its connection's own timeouts."""
    answer: queue.Queue[int | None] = queue.Queue()
    thread = threading.Thread(
        target=_probe_pid, args=(alias, answer), name="tenant_indexes pooler probe", daemon=True
    )
    thread.start()
    try:
        return answer.get(timeout=seconds)
    except queue.Empty:
        return None


def ensure_own_session(connection: Any) -> SessionGuard:
    """Prove the connection's server session is its own, or refuse (exit 2).

    Raises:
        BuildRefusedError: a transaction pooler is in between.
    """
    connection.ensure_connection()
    pid = buildcontrol.backend_pid(connection)
    driver_pid = buildcontrol.driver_backend_pid(connection)
    if driver_pid is not None and driver_pid == pid:
        return SessionGuard(connection, pid, pooled=False)
    other = second_session_pid(connection.alias)
    if other == pid:
        raise _refuse(
            connection.alias, f"a second connection was served by the same server pid {pid}"
        )
    guard = SessionGuard(connection, pid, pooled=True)
    guard.verify("the build")
    return guard


#: psycopg2's connection states before the connection is up: set-up, connecting, datestyle.
_PSYCOPG2_CONNECTING = frozenset({0, 20, 21})


def _psycopg2_wait(conn: Any) -> None:
    """psycopg2's wait callback: a signal cancels the running statement, then re-raises.

    Without a wait callback psycopg2 blocks in libpq, where Python cannot run a signal
    handler, so SIGINT or SIGTERM would wait for the statement (a build waiting for a
    writer: for ever). Here the wait is a ``select()`` loop: on ``KeyboardInterrupt`` (and
    :class:`Terminated`) the statement is cancelled on the server, its error is read so the
    connection stays usable for the clean-up, and the interrupt goes on.

    With a wait callback libpq connects without its own ``connect_timeout``, so while the
    connection is being made the loop applies it (``timeout expired``, as libpq says).
    """
    import psycopg2  # type: ignore[import-untyped]
    import psycopg2.extensions as ext  # type: ignore[import-untyped, unused-ignore]

    deadline = None
    if conn.status in _PSYCOPG2_CONNECTING:
        seconds = int(conn.get_dsn_parameters().get("connect_timeout") or 0)
        deadline = time.monotonic() + seconds if seconds > 0 else None
    interrupt: KeyboardInterrupt | None = None
    while True:
        try:
            state = conn.poll()
        except Exception:
            if interrupt is not None:
                raise interrupt from None
            raise
        try:
            if state == ext.POLL_OK:
                if interrupt is not None:
                    raise interrupt
                return
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise psycopg2.OperationalError("timeout expired")
            if state == ext.POLL_READ:
                select.select([conn.fileno()], [], [], timeout)
            elif state == ext.POLL_WRITE:
                select.select([], [conn.fileno()], [], timeout)
        except KeyboardInterrupt as error:
            if interrupt is not None or conn.status in _PSYCOPG2_CONNECTING:
                raise
            interrupt = error
            conn.cancel()


@contextlib.contextmanager
def interruptible_statements() -> Iterator[None]:
    """Let SIGINT/SIGTERM cancel a running statement on psycopg2, as psycopg 3 does."""
    try:
        import psycopg2.extensions as ext  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # psycopg 3 only: it cancels on KeyboardInterrupt itself
        yield
        return
    previous = ext.get_wait_callback()
    ext.set_wait_callback(_psycopg2_wait)
    try:
        yield
    finally:
        ext.set_wait_callback(previous)
