"""The HTTP health endpoint: the check of ``check_tenant_indexes`` behind a URL.

Mount it in your ``urls.py``::

    from tenant_indexes.views import tenant_index_health

    urlpatterns = [path("health/tenant-indexes/", tenant_index_health)]

It answers 200 when healthy and 503 when not (or when it could not check), with a JSON body
in the shape of ``check_tenant_indexes --format json``. Three properties make it safe for a
probe every few seconds:

- **One catalog pass per burst.** The result is reused for ``HEALTH_CACHE_SECONDS``; callers
  that arrive while a pass runs wait for it instead of starting their own.
- **Bounded.** A pass runs on its own short-lived connection with a libpq
  ``connect_timeout`` (its statements carry the check's own ``statement_timeout`` and
  ``lock_timeout``), in a helper thread the request waits for at most ``HEALTH_TIMEOUT``
  seconds. A database that is down gives 503, never a hung worker.
- **No schema details for strangers.** Anonymous callers get ``{"status": ...}`` only; staff
  users and callers presenting a configured bearer token get the whole document.

The django-health-check backend (:mod:`tenant_indexes.contrib.health_check`) shares the
same cached, bounded pass through :func:`probe_health`.
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import health
from .conf import get_config
from .findings import E_PROBE_FAILED
from .render import render_prometheus, render_status_gauge
from .reports import HealthReport

logger = logging.getLogger(__name__)

#: Finding id of a probe that could not finish a pass (timeout, unexpected error).

_CACHE_KEY = "tenant_indexes:health:v1"
_FAIL_LEVELS = ("error", "warning")
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The outcome of one catalog pass, as the endpoint and the backend serve it.

    Attributes:
        status: ``"ok"``, ``"warning"``, ``"error"`` or ``"unknown"`` (could not check).
        healthy: No finding at or above the configured fail level, and the check ran.
        document: The JSON document of ``check_tenant_indexes --format json``.
        prometheus: The same report in the Prometheus text exposition format.
        checked_at: Unix time the pass finished.
    """

    status: str
    healthy: bool
    document: dict[str, Any]
    prometheus: str
    checked_at: float


# The cached, bounded pass.

_pass_lock = threading.Lock()
_local_cache: dict[str, tuple[float, ProbeResult]] = {}
# Indirection so tests can move time forward without sleeping.
_monotonic = time.monotonic
# Helper threads of passes that timed out and may still hold a connection.
_abandoned_passes: list[threading.Thread] = []
_abandoned_lock = threading.Lock()


def probe_health() -> ProbeResult:
    """Return the health of the tenant indexes, from the cache when it is fresh.

    At most one pass runs at a time in a process: callers that arrive during a pass wait
    for it (never longer than ``HEALTH_TIMEOUT``) and then read its result.

    Returns:
        The cached or fresh :class:`ProbeResult`.
    """
    config = probe_config()
    if config["HEALTH_CACHE_SECONDS"] <= 0:
        return run_bounded_pass()
    cached = _cached_result(config)
    if cached is not None:
        return cached
    acquired = _pass_lock.acquire(timeout=config["HEALTH_TIMEOUT"] + 1)
    try:
        # Whoever held the lock has probably just refreshed the cache.
        cached = _cached_result(config)
        if cached is not None:
            return cached
        result = run_bounded_pass()
        _store_result(config, result)
        return result
    finally:
        if acquired:
            _pass_lock.release()


def clear_health_cache() -> None:
    """Forget the cached result, so the next probe runs a fresh catalog pass."""
    _local_cache.clear()
    alias = get_config()["HEALTH_CACHE_ALIAS"]
    if alias:
        caches[alias].delete(_CACHE_KEY)


def run_bounded_pass() -> ProbeResult:
    """Run one catalog pass in a helper thread and wait for it at most ``HEALTH_TIMEOUT``.

    The helper thread opens its own connections (Django connections are per thread) with
    the configured connect timeout and closes them when it ends, so the caller's connection
    and transaction are never touched. A pass that outlived ``HEALTH_TIMEOUT`` is left to
    end at its own connect/statement timeouts; until it has, no new pass starts, so a slow
    database never collects more than one abandoned pass per process.

    Returns:
        The result of the pass, or an ``"unknown"`` result when it timed out or failed.
    """
    config = probe_config()
    with _abandoned_lock:
        _abandoned_passes[:] = [t for t in _abandoned_passes if t.is_alive()]
        if _abandoned_passes:
            return _failed_result("an earlier check that timed out is still running")
    outcome: dict[str, Any] = {}

    def run_pass() -> None:
        try:
            with bounded_connections(config):
                outcome["result"] = _result_from_report(_check(config), config)
        except Exception as e:  # a probe answers "could not check", it never raises
            outcome["error"] = e

    worker = threading.Thread(target=run_pass, name="tenant-indexes-health", daemon=True)
    worker.start()
    worker.join(config["HEALTH_TIMEOUT"])
    if worker.is_alive():
        with _abandoned_lock:
            _abandoned_passes.append(worker)
        logger.warning("tenant index health check timed out after %ss", config["HEALTH_TIMEOUT"])
        return _failed_result(f"the check did not finish within {config['HEALTH_TIMEOUT']}s")
    if "error" in outcome:
        error = outcome["error"]
        logger.error("tenant index health check failed", exc_info=error)
        return _failed_result(f"the check failed: {type(error).__name__}: {error}")
    return outcome["result"]


def _check(config: dict[str, Any]) -> HealthReport:
    # Through the module attribute, so the one core call stays the one implementation (and
    # tests can count the passes by wrapping it).
    return health.check_databases(
        databases=config["HEALTH_DATABASES"], app_labels=config["HEALTH_APP_LABELS"]
    )


def _result_from_report(report: HealthReport, config: dict[str, Any]) -> ProbeResult:
    return ProbeResult(
        status=report.status,
        healthy=report.exit_code(config["HEALTH_FAIL_LEVEL"]) == 0,
        document=report.as_dict(),
        prometheus=render_prometheus(report) + _probe_completed_gauge(True),
        checked_at=time.time(),
    )


def _failed_result(message: str) -> ProbeResult:
    finding = {
        "id": E_PROBE_FAILED,
        "level": "error",
        "database": None,
        "table": None,
        "index": None,
        "message": f"Tenant index health could not be checked: {message}.",
        "hint": "Is the database reachable? Run check_tenant_indexes for the full report.",
    }
    # The overall gauge of render_prometheus with its "unknown" value, so one alert rule
    # covers both a database that could not be checked and a probe that did not finish.
    prometheus = render_status_gauge("unknown")
    return ProbeResult(
        status="unknown",
        healthy=False,
        document={"status": "unknown", "databases": [], "indexes": [], "findings": [finding]},
        prometheus=prometheus + _probe_completed_gauge(False),
        checked_at=time.time(),
    )


def _probe_completed_gauge(completed: bool) -> str:
    return (
        "# HELP tenant_indexes_probe_completed 1 when the health probe finished its catalog "
        "pass within HEALTH_TIMEOUT.\n"
        "# TYPE tenant_indexes_probe_completed gauge\n"
        f"tenant_indexes_probe_completed {int(completed)}\n"
    )


def _cached_result(config: dict[str, Any]) -> ProbeResult | None:
    if config["HEALTH_CACHE_ALIAS"]:
        return caches[config["HEALTH_CACHE_ALIAS"]].get(_CACHE_KEY)
    entry = _local_cache.get(_CACHE_KEY)
    if entry is None or entry[0] <= _monotonic():
        return None
    return entry[1]


def _store_result(config: dict[str, Any], result: ProbeResult) -> None:
    seconds = config["HEALTH_CACHE_SECONDS"]
    if config["HEALTH_CACHE_ALIAS"]:
        caches[config["HEALTH_CACHE_ALIAS"]].set(_CACHE_KEY, result, timeout=seconds)
    else:
        _local_cache[_CACHE_KEY] = (_monotonic() + seconds, result)


@contextmanager
def bounded_connections(config: dict[str, Any]) -> Iterator[None]:
    """Give this thread a bounded, dedicated connection wrapper for each PostgreSQL alias.

    Only this (helper) thread sees the replacements; they are closed when the pass ends,
    never pooled nor reused.
    """
    opened = []
    try:
        for alias in list(connections):
            wrapper = connections[alias]
            if wrapper.vendor == "postgresql":
                bounded = _bounded_settings(wrapper.settings_dict, config)
                wrapper = connections[alias] = type(wrapper)(bounded, alias)
            opened.append(wrapper)
        yield
    finally:
        for wrapper in opened:
            wrapper.close()


def _bounded_settings(settings_dict: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    bounded = copy.copy(settings_dict)
    options = dict(bounded.get("OPTIONS") or {})
    # A dedicated connection that is closed after the pass: never the application's pool.
    options.pop("pool", None)
    # The probe's bound, or the alias's own connect_timeout when that is tighter. libpq
    # takes whole seconds and treats 1 as 2.
    connect_timeout = max(int(config["HEALTH_CONNECT_TIMEOUT"]), 1)
    if options.get("connect_timeout"):
        connect_timeout = min(int(options["connect_timeout"]), connect_timeout)
    options["connect_timeout"] = connect_timeout
    bounded["OPTIONS"] = options
    bounded["CONN_MAX_AGE"] = 0
    bounded["CONN_HEALTH_CHECKS"] = False
    return bounded


def probe_config() -> dict[str, Any]:
    """The ``TENANT_INDEXES`` settings with the health view's keys validated.

    Raises:
        ImproperlyConfigured: a health key has a value of the wrong kind.
    """
    config = get_config()
    if config["HEALTH_FAIL_LEVEL"] not in _FAIL_LEVELS:
        raise ImproperlyConfigured(
            f"TENANT_INDEXES['HEALTH_FAIL_LEVEL'] must be one of {', '.join(_FAIL_LEVELS)}, "
            f"not {config['HEALTH_FAIL_LEVEL']!r}."
        )
    for key in ("HEALTH_CACHE_SECONDS", "HEALTH_CONNECT_TIMEOUT", "HEALTH_TIMEOUT"):
        if not isinstance(config[key], int | float) or config[key] < 0:
            raise ImproperlyConfigured(
                f"TENANT_INDEXES[{key!r}] must be a number of seconds, not {config[key]!r}."
            )
    return config


# Access control.


def _configured_tokens() -> list[str]:
    configured = get_config()["HEALTH_TOKEN"]
    if configured is None:
        return []
    if isinstance(configured, str):
        configured = [configured]
    if not isinstance(configured, Sequence) or not all(isinstance(t, str) for t in configured):
        raise ImproperlyConfigured(
            "TENANT_INDEXES['HEALTH_TOKEN'] must be a string, a list of strings or None."
        )
    # An empty token (an unset environment variable) must never match an empty header.
    return [token for token in configured if token]


def _presented_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def may_see_details(request: HttpRequest) -> bool:
    """Whether the caller may see index names and findings, not just the status.

    Args:
        request: The incoming request.

    Returns:
        True for a valid ``Authorization: Bearer <token>`` (compared in constant time
        against every configured token) and for an active staff user.
    """
    presented = _presented_token(request)
    if presented is not None:
        matched = False
        for token in _configured_tokens():
            # Compare every token, so the timing says nothing about which one matched.
            matched |= hmac.compare_digest(presented.encode(), token.encode())
        if matched:
            return True
    user = getattr(request, "user", None)
    try:
        return bool(user is not None and user.is_active and user.is_staff)
    except DatabaseError:
        # The session or user lookup needs the database that may be the one that is down.
        return False


# The view.


@transaction.non_atomic_requests
@never_cache
@require_safe
def tenant_index_health(request: HttpRequest) -> HttpResponse:
    """Answer 200 when the tenant indexes are healthy and 503 when not.

    ``?format=prometheus`` answers the Prometheus text format instead, always with 200 as
    scrapers expect (health is in the values); it needs details access.

    Args:
        request: The incoming request.

    Returns:
        JSON: ``{"status": ...}`` for anonymous callers, the full document otherwise.
    """
    output = request.GET.get("format", "json")
    if output not in ("json", "prometheus"):
        return JsonResponse(
            {"error": f"unknown format {output!r}; use json or prometheus"}, status=400
        )
    detailed = may_see_details(request)
    if output == "prometheus":
        if not detailed:
            response = JsonResponse(
                {"error": "the prometheus format needs a bearer token or a staff user"},
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="tenant_indexes"'
            return response
        result = probe_health()
        return HttpResponse(result.prometheus, content_type=_PROMETHEUS_CONTENT_TYPE)
    result = probe_health()
    body = result.document if detailed else {"status": result.status}
    return JsonResponse(body, status=200 if result.healthy else 503)
