"""The database the demo, the tests and the benchmarks use.

``DATABASE_URL`` wins everywhere. Without it, an embedded PostgreSQL 16 from the ``pgserver``
package is started on demand in ``<project>/.pgdata`` (git-ignored) and reused by later runs;
it listens on a Unix socket inside that directory only, so it never collides with a server on
port 5432. It stops when the last process that uses it exits.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = PROJECT_DIR / ".pgdata"


def embedded_server(pgdata: Path | None = None) -> Any:
    """Start (or attach to) the embedded PostgreSQL server and return its handle."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as e:  # pragma: no cover - depends on the environment
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install 'tenant-indexes[demo]' (or [test]), or set DATABASE_URL."
        ) from e
    path = Path(os.environ.get("TENANT_INDEXES_PGDATA", pgdata or DEFAULT_PGDATA))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pgserver.get_server(path, cleanup_mode="stop")


def embedded_database_url(dbname: str) -> str:
    """The URL of database ``dbname`` on the embedded server, creating the database if needed."""
    server = embedded_server()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{dbname}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{dbname}";')
    return server.get_uri(dbname)


def database_config(default_dbname: str, **extra: Any) -> dict[str, Any]:
    """A Django ``DATABASES`` entry from ``DATABASE_URL``, else from the embedded server."""
    import dj_database_url

    url = os.environ.get("DATABASE_URL") or embedded_database_url(default_dbname)
    if url.startswith(("mysql", "mariadb")):
        _use_pymysql_if_needed()
    return dj_database_url.parse(url, **extra)


def _use_pymysql_if_needed() -> None:
    """Let Django's MySQL backend run on PyMySQL when mysqlclient (C, needs libmysqlclient) is
    not installed; the demo and the tests use MariaDB only to prove the non-PostgreSQL path."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        import pymysql

        pymysql.install_as_MySQLdb()
