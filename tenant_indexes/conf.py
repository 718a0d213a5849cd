"""The ``TENANT_INDEXES`` setting: one namespaced dict merged over defaults, read lazily.

The merged value is cached and the cache is dropped on ``setting_changed`` so that
``override_settings(TENANT_INDEXES=...)`` works in tests.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Column that identifies the tenant in every tenant-scoped table.
    "TENANT_COLUMN": "tenant_id",
    # --- check_tenant_indexes (issue #3) ---
    # Bounds for the one read-only catalog pass per database, in milliseconds: a readiness
    # probe must answer, not hang behind a lock or a slow catalog.
    "CHECK_STATEMENT_TIMEOUT_MS": 5000,
    "CHECK_LOCK_TIMEOUT_MS": 1000,
    # Seconds to wait for a connection before the check reports the database as
    # unreachable (exit 2). Applied only when the alias sets no connect_timeout itself.
    "CHECK_CONNECT_TIMEOUT_S": 5,
    # Schemas that each hold a copy of the tenant tables (schema-per-shard layouts). Empty:
    # the tables are looked up on the connection's search_path.
    "CHECK_SCHEMAS": [],
    # --- end check_tenant_indexes ---
    # --- Safe online index builds (operations.py, repair_tenant_indexes) ---------------
    # lock_timeout of the build session: no lock wait of the build lasts longer.
    "BUILD_LOCK_TIMEOUT": "5s",
    # How often a build that gave up on a lock wait is tried again, and the first pause
    # between tries in seconds (doubled each time, at most BUILD_RETRY_BACKOFF_MAX).
    "BUILD_LOCK_RETRIES": 4,
    "BUILD_RETRY_BACKOFF": 1.0,
    "BUILD_RETRY_BACKOFF_MAX": 30.0,
    # client_connection_check_interval of the build session (PostgreSQL 14+): a build whose
    # client died (deploy killed) stops instead of running on unattended. "" leaves it.
    "BUILD_CLIENT_CHECK_INTERVAL": "2s",
    # Progress of long builds during migrate: "auto" (a bar on a terminal, lines
    # otherwise, nothing at verbosity 0), "bar", "lines" or "off".
    "BUILD_PROGRESS": "auto",
    # Seconds between progress lines when the output is not a terminal.
    "BUILD_PROGRESS_INTERVAL": 10.0,
    # PostgreSQL 14.0-14.3 can corrupt indexes built concurrently; builds are refused there
    # unless this is True (upgrade to 14.4+ instead, then REINDEX what was built).
    "ALLOW_CONCURRENT_BUILDS_ON_PG14_BEFORE_14_4": False,
    # --- end safe online index builds -----------------------------------------------------
}


@functools.cache
def get_config() -> dict[str, Any]:
    """Return the ``TENANT_INDEXES`` setting merged over :data:`DEFAULTS`."""
    user = getattr(settings, "TENANT_INDEXES", None) or {}
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"Unknown TENANT_INDEXES key(s): {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(DEFAULTS))}."
        )
    return {**DEFAULTS, **user}


@receiver(setting_changed)
def _reset_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "TENANT_INDEXES":
        get_config.cache_clear()
