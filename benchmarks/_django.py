"""Django set-up shared by the benchmarks: a minimal project on ``DATABASE_URL``, or on the
embedded PostgreSQL when it is unset (:mod:`demo_project.embedded`)."""

from __future__ import annotations

from typing import Any


def configure(dbname: str, *, apps: tuple[str, ...] = (), **extra: Any) -> None:
    """Configure and set up Django for one benchmark.

    Args:
        dbname: the database on the embedded server (ignored when ``DATABASE_URL`` is set).
        apps: installed apps beyond contenttypes and the core app.
        extra: more settings, e.g. ``TENANT_INDEXES={...}``.
    """
    import django
    from django.conf import settings

    from demo_project.embedded import database_config

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "tenant_indexes", *apps],
        DATABASES={"default": database_config(dbname)},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        SECRET_KEY="bench",
        **extra,
    )
    django.setup()
