"""Bounded, read-only database access shared by every catalog reader.

A report's reads run in a transaction that is rolled back, under the ``CHECK_*`` statement
and lock timeouts and a connect timeout, so a readiness probe or a report never waits long
on a slow or locked database and never changes anything. Errors are reported by their first
line (:func:`first_error_line`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections


def first_error_line(error: BaseException) -> str:
    """The first line of a database error's message (its class name when it has none).

    Drivers append DETAIL, HINT and context lines; a report keeps one line per database.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_timeouts() -> list[str]:
    """The ``CHECK_*`` statement and lock timeouts as ``set_config()`` values."""
    from .conf import get_config

    config = get_config()
    return [
        f"{int(config['CHECK_STATEMENT_TIMEOUT_MS'])}ms",
        f"{int(config['CHECK_LOCK_TIMEOUT_MS'])}ms",
    ]


_CONNECT_OPTIONS_LOCK = threading.Lock()


def connect_with_timeout(connection: Any, seconds: int) -> None:
    """Open the connection with a connect timeout unless the alias sets its own.

    The alias's settings are changed only for the duration of the connect, so other code
    that opens this alias later gets exactly what the user configured.
    """
    if connection.connection is not None:
        return
    settings_dict = connection.settings_dict
    options = settings_dict.get("OPTIONS") or {}
    if "connect_timeout" in options or seconds <= 0:
        connection.ensure_connection()
        return
    # Threads share the alias's settings dict: serialise the change-and-restore window so
    # one thread's restore never undoes (or keeps) another's timeout.
    with _CONNECT_OPTIONS_LOCK:
        settings_dict["OPTIONS"] = {**options, "connect_timeout": seconds}
        try:
            connection.ensure_connection()
        finally:
            settings_dict["OPTIONS"] = options


@contextlib.contextmanager
def bounded_read(using: str) -> Iterator[Any]:
    """A cursor in a transaction (a savepoint inside the caller's) that is rolled back.

    The connect timeout is ``CHECK_CONNECT_TIMEOUT_S``; the first statement run on the
    cursor must apply :func:`check_timeouts` with ``set_config(..., true)``, so a report
    fails (exit 2) instead of queueing behind an ``ALTER TABLE``. Nothing set here outlives
    the block.
    """
    from django.db import transaction

    from .conf import get_config

    connection = connections[using]
    connect_with_timeout(connection, int(get_config()["CHECK_CONNECT_TIMEOUT_S"]))
    with transaction.atomic(using=using), connection.cursor() as cursor:
        yield cursor
        transaction.set_rollback(True, using=using)


def explain_plan(cursor: Any, sql: str, params: Sequence[Any] | None = None) -> dict[str, Any]:
    """Run ``EXPLAIN (FORMAT JSON, ...) ...`` and return the root ``Plan`` node."""
    cursor.execute(sql, params)
    document = cursor.fetchone()[0]
    if isinstance(document, str):
        document = json.loads(document)
    return document[0]["Plan"]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN plan, the root first."""
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)
