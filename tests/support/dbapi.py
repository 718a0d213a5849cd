"""A second database session for the tests, with whichever driver Django uses.

The suite runs on psycopg 3 and, in CI, once with psycopg2 alone. Tests that need a session
outside Django's connection handling (a lock holder, a concurrent builder, a standby) open it
here, so they run on both drivers: :func:`connect` returns a :class:`Session` whose
``execute()`` returns the cursor (psycopg 3's shape) on either driver.
"""

from __future__ import annotations

from typing import Any

try:  # the driver Django's postgresql backend prefers, too
    import psycopg as _psycopg3
except ImportError:  # pragma: no cover - the psycopg2-only CI run
    _psycopg3 = None

if _psycopg3 is None:  # pragma: no cover - the psycopg2-only CI run
    import psycopg2 as _psycopg2
else:
    _psycopg2 = None

#: ``"psycopg"`` or ``"psycopg2"``: the driver these sessions (and Django) use.
DRIVER = "psycopg" if _psycopg3 is not None else "psycopg2"

_PARAMS = ("dbname", "user", "password", "host", "port", "options", "connect_timeout", "sslmode")


class Session:
    """One server session: ``execute()`` returns a cursor; a context manager that closes."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = None) -> Any:
        cursor = self.raw.cursor()
        cursor.execute(sql, params)
        return cursor

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()

    @property
    def backend_pid(self) -> int:
        return int(self.execute("SELECT pg_backend_pid()").fetchone()[0])

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(autocommit: bool = True, **params: Any) -> Session:
    """A new session; ``params`` are libpq keywords (``dbname``, ``host``, ``port``, ...).

    Keys a libpq connection string does not know (Django's ``cursor_factory``, ``context``,
    ...) are dropped, so ``connection.get_connection_params()`` can be passed as it is.
    """
    if "database" in params and "dbname" not in params:
        params["dbname"] = params.pop("database")
    kwargs = {k: v for k, v in params.items() if k in _PARAMS and v not in (None, "")}
    if _psycopg3 is not None:
        # No server-side prepared statements (psycopg2 never makes them): a session may run
        # through PgBouncer's transaction pooling, where they would reach another client.
        return Session(_psycopg3.connect(autocommit=autocommit, prepare_threshold=None, **kwargs))
    raw = _psycopg2.connect(**kwargs)
    raw.autocommit = autocommit
    return Session(raw)


def connect_like(settings_dict: dict[str, Any], autocommit: bool = True) -> Session:
    """A new session to the database of a Django ``DATABASES`` entry."""
    return connect(
        autocommit=autocommit,
        dbname=settings_dict["NAME"],
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
    )
