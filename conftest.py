"""Test fixtures shared by tests/ and demo_project/tests/: the database server the run uses."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Point the placeholder alias at the embedded PostgreSQL when DATABASE_URL is unset.

    pytest-django calls this before it creates the test databases. The server (PostgreSQL 18
    by default, 16 with ``TENANT_INDEXES_EMBEDDED=pg16``) is started on demand (or reused) in
    the project's ``.pgdata18`` (or ``.pgdata``) and stops when the run ends.
    """
    if os.environ.get("DATABASE_URL"):
        return
    from django.conf import settings

    from demo_project.embedded import embedded_server

    server = embedded_server()
    info = server.get_postmaster_info()
    for db in settings.DATABASES.values():
        if db.get("HOST") == settings.EMBEDDED_HOST:
            # Mutate in place: django.db.connections holds these same dicts.
            db["HOST"] = str(info.socket_dir)
            db["PORT"] = str(info.port or 5432)
