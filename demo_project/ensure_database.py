"""Make sure the demo's database exists before ``migrate`` runs.

``python -m demo_project.ensure_database`` creates the PostgreSQL database that ``DATABASE_URL``
names when the server is reachable but the database is not there yet, and says in one line
(exit 2) what is wrong otherwise. Without ``DATABASE_URL`` the embedded server's database is
created by :mod:`demo_project.embedded` itself. Other backends are left to Django.
"""

from __future__ import annotations

import os
import sys

import dj_database_url


def ensure_database(url: str) -> str:
    """Create the database ``url`` names if it is missing; return what was done, in words."""
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        return f"{config['ENGINE']}: left to Django"
    name = config["NAME"]
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "connect_timeout": 10,
    }
    params = {key: value for key, value in params.items() if value is not None}
    try:
        with psycopg.connect(dbname=name, **params):
            return f"database {name!r} exists"
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as maintenance:
        maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"database {name!r} created"


def main() -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        return 0
    try:
        print(ensure_database(url))
    except Exception as error:  # one line, never a traceback: this is the demo's first step
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        print(f"DATABASE_URL is not usable: {first_line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
