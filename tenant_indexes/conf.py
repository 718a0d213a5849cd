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
    # --- Fail-closed tenant scoping (issue #7, scoping.py) ---
    # Dotted path of ``f(request) -> tenant | None`` used by TenantScopeMiddleware.
    "TENANT_RESOLVER": "tenant_indexes.scoping.tenant_from_request",
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
