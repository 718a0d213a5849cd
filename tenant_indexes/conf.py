"""The ``TENANT_INDEXES`` setting: one namespaced dict merged over defaults, read lazily.

The merged value is cached and the cache is dropped on ``setting_changed`` so that
``override_settings(TENANT_INDEXES=...)`` works in tests.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # The tenant model, as "app_label.ModelName". None: the help desk's Tenant when
    # tenant_indexes.helpdesk is installed, else no default (a TenantForeignKey() without
    # ``to`` is then reported as tenant_indexes.E010).
    "TENANT_MODEL": None,
    # Column that identifies the tenant in a tenant-scoped table without a TenantForeignKey.
    "TENANT_COLUMN": "tenant_id",
    # Usage statistics (tenant_index_stats, usage.py).
    # W001: an index scanned at most this many times on every alias is unused.
    "UNUSED_MAX_SCANS": 0,
    # No W001 while any alias's statistics are younger than this (days, may be fractional).
    "STATS_MIN_AGE_DAYS": 7,
    # W001 over recorded history (tenant_index_stats --record): an index with no scans in the
    # last this many days of snapshots on every alias is unused, whatever the statistics' age.
    "UNUSED_DAYS": 30,
    # The alias that stores the recorded snapshots (tenant_index_stats --record): where the
    # core app's migration ran, and never a standby. The counters are read from each alias.
    "HISTORY_DATABASE": "default",
    # Seq-scan-heavy (W010): only tables with at least this many live rows ...
    "SEQ_SCAN_MIN_ROWS": 10_000,
    # ... at least this many sequential scans ...
    "SEQ_SCAN_MIN_SCANS": 50,
    # ... making up at least this share of all scans of the table.
    "SEQ_SCAN_MIN_SHARE": 0.5,
    # W002 redundancies you keep on purpose: index names ("idx_tickets_tenant_id") or
    # "schema.name". They are still shown by tenant_index_stats, as acknowledged.
    "ACKNOWLEDGED_REDUNDANT": (),
    # Also report W001/W002 from check_tenant_indexes and the database system check. Off by
    # default: a readiness probe answers "are the indexes there and valid"; usage is
    # tenant_index_stats' question, and W001 costs two more statements per alias.
    "CHECK_INCLUDES_USAGE": False,
    # Also run the index advisor (suggest_tenant_indexes) in check_tenant_indexes: W060 per
    # tenant statement no tenant-leading index serves, W061 when it cannot run. Off by
    # default: it plans every tenant statement of pg_stat_statements.
    "CHECK_INCLUDES_ADVISOR": False,
    # The live check (check_tenant_indexes, the database system check).
    # Bounds for the one read-only catalog pass per database, in milliseconds: a readiness
    # probe must answer, not hang behind a lock or a slow catalog.
    "CHECK_STATEMENT_TIMEOUT_MS": 5000,
    "CHECK_LOCK_TIMEOUT_MS": 1000,
    # Seconds to wait for a connection before the check reports the database as
    # unreachable (exit 2). Applied only when the alias sets no connect_timeout itself.
    "CHECK_CONNECT_TIMEOUT_S": 5,
    # Schemas that each hold a copy of the tenant tables (schema-per-shard layouts): a list,
    # or the dotted path of a callable returning the names. Empty: the tables are looked
    # up on the connection's search_path.
    "CHECK_SCHEMAS": [],
    # The health-check view and the django-health-check backend (views.py).
    # Database aliases and app labels the probe checks; None means what
    # check_tenant_indexes checks without --database.
    "HEALTH_DATABASES": None,
    "HEALTH_APP_LABELS": None,
    # "error": only errors make the probe unhealthy; "warning": warnings do too.
    "HEALTH_FAIL_LEVEL": "error",
    # Seconds a result is reused, so a burst of probes costs one catalog pass. 0 disables.
    "HEALTH_CACHE_SECONDS": 5,
    # Django cache alias to share results between worker processes; None keeps them
    # in the process.
    "HEALTH_CACHE_ALIAS": None,
    # Bearer token(s) that unlock the details (str or a list, for rotation); None: staff only.
    "HEALTH_TOKEN": None,
    # libpq connect_timeout of the probe's own connection, in seconds (2 is the smallest
    # libpq honours); statements are bounded by CHECK_STATEMENT_TIMEOUT_MS/CHECK_LOCK_TIMEOUT_MS.
    "HEALTH_CONNECT_TIMEOUT": 2,
    # Wall-clock bound of one pass: past it the probe answers 503 "unknown" and the
    # worker is free; the pass's own thread ends at its connect/statement timeout.
    "HEALTH_TIMEOUT": 5,
    # Safe online index builds (operations.py, repair_tenant_indexes).
    # lock_timeout of the build session: no lock wait of the build lasts longer.
    "BUILD_LOCK_TIMEOUT": "5s",
    # How often a build that gave up on a lock wait is tried again, and the first pause
    # between tries in seconds (doubled each time, at most BUILD_RETRY_BACKOFF_MAX).
    "BUILD_LOCK_RETRIES": 4,
    "BUILD_RETRY_BACKOFF": 1.0,
    "BUILD_RETRY_BACKOFF_MAX": 30.0,
    # Seconds a builder waits for another build of the same index, or on the same table,
    # to finish (polled from the client, holding no snapshot); then it gives up, exit 1.
    "BUILD_BUILDER_WAIT": 3600.0,
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
    # makemigrations (autodetector.py, safe_changes.py): index and unique-constraint changes
    # of every table, not only tenant tables, become the online-safe operations.
    "SAFE_MIGRATIONS_ALL_TABLES": False,
    # Fail-closed tenant scoping (scoping.py).
    # Dotted path of ``f(request) -> tenant | None`` used by TenantScopeMiddleware.
    "TENANT_RESOLVER": "tenant_indexes.scoping.tenant_from_request",
    # Row-level security (rls.py). The run-time setting the policies read
    # (``current_setting('<this>')``): two identifiers joined by a dot.
    "RLS_SETTING": "tenant_indexes.tenant",
    # The aliases TenantRLSMiddleware opens a transaction on and sets the tenant for.
    "RLS_DATABASES": ["default"],
}


@functools.cache
def get_config() -> dict[str, Any]:
    """Return the ``TENANT_INDEXES`` setting merged over :data:`DEFAULTS`."""
    from .exceptions import TenantIndexesConfigError

    user = getattr(settings, "TENANT_INDEXES", None) or {}
    if not isinstance(user, dict):
        raise TenantIndexesConfigError(f"TENANT_INDEXES must be a dict, not {type(user).__name__}.")
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise TenantIndexesConfigError(
            f"Unknown TENANT_INDEXES key(s): {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(DEFAULTS))}."
        )
    for key, value in user.items():
        if key == "CHECK_SCHEMAS" and isinstance(value, str):
            continue  # a dotted path to a callable (tenant_indexes.targeting.check_schemas)
        expected = _accepted_types(DEFAULTS[key])
        if expected and (
            isinstance(value, bool) != (bool in expected) or not isinstance(value, expected)
        ):
            names = " or ".join(t.__name__ for t in expected)
            raise TenantIndexesConfigError(
                f"TENANT_INDEXES[{key!r}] must be {names}, not {value!r}."
            )
    for key, value in user.items():
        problem = _range_problem(key, value)
        if problem:
            raise TenantIndexesConfigError(f"TENANT_INDEXES[{key!r}] {problem}, not {value!r}.")
    model = user.get("TENANT_MODEL")
    if model is not None and not _is_model_label(model):
        raise TenantIndexesConfigError(
            "TENANT_INDEXES['TENANT_MODEL'] must be a model label like "
            f"'accounts.Organization', not {model!r}."
        )
    return {**DEFAULTS, **user}


# A PostgreSQL duration as lock_timeout takes it: a number of milliseconds, or a number with
# a unit ("500ms", "5s", "1min", "2h").
_INTERVAL = re.compile(r"\s*\d+(\.\d+)?\s*(us|ms|s|min|h|d)?\s*")
_CHOICES = {
    "BUILD_PROGRESS": ("auto", "bar", "lines", "off"),
    "HEALTH_FAIL_LEVEL": ("error", "warning"),
}
_POSITIVE = {
    "BUILD_BUILDER_WAIT", "BUILD_PROGRESS_INTERVAL", "CHECK_STATEMENT_TIMEOUT_MS",
    "CHECK_LOCK_TIMEOUT_MS", "CHECK_CONNECT_TIMEOUT_S", "HEALTH_CONNECT_TIMEOUT",
    "HEALTH_TIMEOUT",
}  # fmt: skip
_NOT_NEGATIVE = {"BUILD_RETRY_BACKOFF", "BUILD_RETRY_BACKOFF_MAX", "HEALTH_CACHE_SECONDS"}
_NAME_LISTS = {"CHECK_SCHEMAS", "HEALTH_DATABASES", "HEALTH_APP_LABELS"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_interval(value: Any, *, allow_off: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0 or (allow_off and value == 0)
    if isinstance(value, str):
        if allow_off and value.strip() in ("", "0"):
            return True
        match = _INTERVAL.fullmatch(value)
        return match is not None and float(match.group(0).strip().rstrip("usminhd ") or 0) > 0
    return False


def _range_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key`` beyond its type, or ``None``."""
    if key == "BUILD_LOCK_TIMEOUT" and not _is_interval(value, allow_off=False):
        return "must be a PostgreSQL duration above zero such as '5s', '500ms' or 5000"
    if key == "BUILD_CLIENT_CHECK_INTERVAL" and not _is_interval(value, allow_off=True):
        return "must be a PostgreSQL duration such as '2s', or '' to leave it"
    if key == "BUILD_LOCK_RETRIES" and not (isinstance(value, int) and value >= 0):
        return "must be a whole number, 0 or more"
    if key in _POSITIVE and not (_is_number(value) and value > 0):
        return "must be a number above zero"
    if key in _NOT_NEGATIVE and not (_is_number(value) and value >= 0):
        return "must be a number, 0 or more"
    if key in _CHOICES and value not in _CHOICES[key]:
        return "must be one of " + ", ".join(repr(c) for c in _CHOICES[key])
    if key == "TENANT_COLUMN" and not (isinstance(value, str) and value):
        return "must be a column name (a non-empty string)"
    if key == "CHECK_SCHEMAS" and isinstance(value, str) and value:
        return None  # a dotted path to a callable (tenant_indexes.targeting.check_schemas)
    if key in _NAME_LISTS and value is not None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            return "must be a list of names"
    if key == "HISTORY_DATABASE" and value not in settings.DATABASES:
        return "must be an alias of settings.DATABASES (" + ", ".join(settings.DATABASES) + ")"
    if key == "HEALTH_CACHE_ALIAS" and value is not None and not isinstance(value, str):
        return "must be a cache alias or None"
    if key == "HEALTH_TOKEN" and value is not None:
        tokens = [value] if isinstance(value, str) else value
        if not isinstance(tokens, (list, tuple)) or not all(
            isinstance(t, str) for t in tokens
        ):  # an empty token is allowed and never matches (the view's rule)
            return "must be a token string, a list of them, or None"
    return None


def _is_model_label(value: Any) -> bool:
    """Whether ``value`` reads as ``"app_label.ModelName"`` (checked against the registry
    later: the setting is read while the models load)."""
    if not isinstance(value, str):
        return False
    app_label, dot, model_name = value.partition(".")
    return bool(dot) and app_label.isidentifier() and model_name.isidentifier()


def _accepted_types(default: Any) -> tuple[type, ...]:
    """The types a user value may have, judged by the default (empty: anything goes)."""
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, (int, float)):
        return (int, float)
    if isinstance(default, str):
        return (str, int)  # "5s" or a number of milliseconds, as PostgreSQL takes
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return ()


@receiver(setting_changed)
def _reset_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "TENANT_INDEXES":
        get_config.cache_clear()
