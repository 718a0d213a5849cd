"""The seed migrations on backends without CONCURRENTLY: plain CREATE INDEX, same names.

Each test runs ``manage.py`` in a subprocess with its own ``DATABASE_URL``, the way a user on
SQLite or MariaDB would, and reads that backend's catalog directly.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support import manage
from tests.support.helpdesk import SEED_INDEXES

MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306


def run_demo(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` of the demo project on ``database_url``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
    }
    return manage.run(env, *args, timeout=300)


def _assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_sqlmigrate__sqlite_uses_plain_create_index(tmp_path: Path) -> None:
    result = run_demo(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", "sqlmigrate", "tenant_indexes_helpdesk", "0002"
    )
    _assert_ok(result)
    creates = [line for line in result.stdout.splitlines() if line.startswith("CREATE")]
    assert len(creates) == 11
    assert all(line.startswith("CREATE INDEX ") for line in creates)
    assert "CONCURRENTLY" not in result.stdout


def test_migrate__sqlite_creates_the_seed_indexes_and_reverses(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    url = f"sqlite:///{db}"
    _assert_ok(run_demo(url, "migrate", "--no-input"))

    def seed_indexes() -> dict[str, tuple[str, tuple[str, ...]]]:
        with sqlite3.connect(db) as conn:
            names = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            ]
            found = {}
            for name in names:
                if name in SEED_INDEXES:
                    table = conn.execute(
                        "SELECT tbl_name FROM sqlite_master WHERE name = ?", [name]
                    ).fetchone()[0]
                    columns = tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{name}")'))
                    found[name] = (table, columns)
            return found

    assert seed_indexes() == SEED_INDEXES
    _assert_ok(run_demo(url, "migrate", "tenant_indexes_helpdesk", "0001", "--no-input"))
    assert seed_indexes() == {}
    _assert_ok(run_demo(url, "migrate", "--no-input"))
    assert seed_indexes() == SEED_INDEXES


def _mariadb_reachable() -> bool:
    try:
        with socket.create_connection((MARIADB_HOST, MARIADB_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _mariadb_reachable(), reason="no MariaDB on 127.0.0.1:3306")
def test_migrate__mariadb_creates_the_seed_indexes_and_reverses() -> None:
    import pymysql

    dbname = f"ti_backends_{os.getpid()}"
    admin = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="")
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4")
        url = f"mysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{dbname}"

        def seed_indexes() -> dict[str, tuple[str, tuple[str, ...]]]:
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT index_name, table_name, column_name FROM information_schema.statistics"
                    " WHERE table_schema = %s ORDER BY index_name, seq_in_index",
                    [dbname],
                )
                found: dict[str, tuple[str, tuple[str, ...]]] = {}
                for index, table, column in cursor.fetchall():
                    if index in SEED_INDEXES:
                        _, columns = found.get(index, (table, ()))
                        found[index] = (table, (*columns, column))
                return found

        result = run_demo(url, "sqlmigrate", "tenant_indexes_helpdesk", "0002")
        _assert_ok(result)
        assert "CONCURRENTLY" not in result.stdout
        _assert_ok(run_demo(url, "migrate", "--no-input"))
        assert seed_indexes() == SEED_INDEXES
        _assert_ok(run_demo(url, "migrate", "tenant_indexes_helpdesk", "zero", "--no-input"))
        assert seed_indexes() == {}
        _assert_ok(run_demo(url, "migrate", "--no-input"))
        assert seed_indexes() == SEED_INDEXES
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{dbname}`")
        admin.close()
