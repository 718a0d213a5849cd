"""The advisor's verification of its candidates: measured as hypothetical indexes or built.

:func:`verify_with_hypopg` plans each suggestion's statements for the typical and the largest
tenant before and after a hypothetical index (``hypopg_create_index``) and keeps the
suggestions the plans use and gain at least ``MIN_COST_RATIO`` from.
:func:`verify_by_building` builds a candidate for real under a temporary name (``CREATE INDEX
CONCURRENTLY``), measures the plans and the execution time of its ``SELECT`` statements, then
drops it concurrently: for a non-production database only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from django.db import connections

from .advice import MIN_COST_RATIO, Measurement, Suggestion
from .reads import bounded_read, check_timeouts, plan_nodes
from .sql import quote_identifier
from .statements import _Planner, _predicates
from .statistics import representative_tenants


def planning_session(cursor: Any) -> None:
    """Bound the read (the check's timeouts) and plan each statement with its bound values."""
    cursor.execute(
        "SELECT set_config('statement_timeout', %s, true),"
        " set_config('lock_timeout', %s, true),"
        " set_config('plan_cache_mode', 'force_custom_plan', true)",
        check_timeouts(),
    )


def index_sql(suggestion: Suggestion, name: str, concurrently: bool = False) -> str:
    keys = ", ".join(
        quote_identifier(col) + (" DESC" if field.startswith("-") else "")
        for col, field in zip(suggestion.columns, ("", *suggestion.fields), strict=True)
    )
    how = "CONCURRENTLY " if concurrently else ""
    table = quote_identifier(suggestion.table)
    return f"CREATE INDEX {how}{quote_identifier(name)} ON {table} ({keys})"


def _measure_all(
    cursor: Any,
    version: int,
    suggestion: Suggestion,
    tenants: tuple[str | None, str | None],
    index_marker: str | None,
    analyze: bool,
) -> dict[tuple[int, str], tuple[float, float | None, bool]]:
    """Per (statement, tenant role): plan cost, measured ms (``analyze`` and a SELECT only),
    and whether the plan scans an index whose name contains ``index_marker``."""
    from django.apps import apps

    planner = _Planner(cursor, version)
    model = apps.get_model(suggestion.model)
    columns = [f.column for f in model._meta.concrete_fields]
    out: dict[tuple[int, str], tuple[float, float | None, bool]] = {}
    for statement in suggestion.statements:
        preds = _predicates(statement.query, statement.table, columns)
        for role, tenant in zip(("typical", "largest"), tenants, strict=True):
            if tenant is None:
                continue
            select = analyze and statement.query.lstrip().upper().startswith("SELECT")
            plan = planner.plan(statement, preds, tenant, analyze=select)
            uses = index_marker is not None and any(
                index_marker in (n.get("Index Name") or "") for n in plan_nodes(plan)
            )
            ms = plan.get("Execution Time") if select else None
            out[(statement.queryid, role)] = (float(plan["Total Cost"]), ms, uses)
    return out


def _measurements(
    suggestion: Suggestion,
    tenants: tuple[str | None, str | None],
    before: dict[tuple[int, str], tuple[float, float | None, bool]],
    after: dict[tuple[int, str], tuple[float, float | None, bool]],
) -> tuple[Measurement, ...]:
    result = []
    for (queryid, role), (cost_before, ms_before, _) in before.items():
        cost_after, ms_after, uses = after[(queryid, role)]
        tenant = tenants[0] if role == "typical" else tenants[1]
        result.append(
            Measurement(
                queryid, tenant or "", role, cost_before, cost_after, uses, ms_before, ms_after
            )
        )
    return tuple(result)


def _tenants_for(using: str, suggestion: Suggestion) -> tuple[str | None, str | None]:
    """The typical and the largest tenant of the suggestion's table."""
    return representative_tenants(using, suggestion.table, suggestion.columns[0])


def verify_with_hypopg(
    using: str, suggestions: Sequence[Suggestion], version: int, notes: list[str]
) -> list[Suggestion]:
    """Measure each suggestion as a hypothetical index; keep those the plans use and gain from."""
    verified = []
    tenants = {s.table: _tenants_for(using, s) for s in suggestions}
    with bounded_read(using) as cursor:
        planning_session(cursor)
        for suggestion in suggestions:
            pair = tenants[suggestion.table]
            cursor.execute("SELECT hypopg_reset()")
            before = _measure_all(cursor, version, suggestion, pair, None, False)
            cursor.execute(
                "SELECT indexrelid, hypopg_relation_size(indexrelid) FROM hypopg_create_index(%s)",
                [index_sql(suggestion, suggestion.name)],
            )
            oid, size = cursor.fetchone()
            after = _measure_all(cursor, version, suggestion, pair, f"<{oid}>", False)
            cursor.execute("SELECT hypopg_reset()")
            measurements = _measurements(suggestion, pair, before, after)
            if not any(m.uses_index and m.ratio >= MIN_COST_RATIO for m in measurements):
                best = max((m.ratio for m in measurements if m.uses_index), default=None)
                notes.append(
                    f"not suggested: ({', '.join(suggestion.columns)}) on {suggestion.table}"
                    + (
                        " is not used by the plans as a hypothetical index"
                        if best is None
                        else f" cuts the plan cost only {best:.2f}x"
                    )
                )
                continue
            verified.append(
                _replace(
                    suggestion,
                    verification="hypopg",
                    measurements=measurements,
                    estimated_bytes=int(size) if size else suggestion.estimated_bytes,
                )
            )
    return verified


def _replace(suggestion: Suggestion, **changes: Any) -> Suggestion:
    return dataclasses.replace(suggestion, **changes)


def verify_by_building(using: str, suggestion: Suggestion, version: int) -> Suggestion:
    """Build the index concurrently under a temporary name, measure, drop it concurrently."""
    connection = connections[using]
    pair = _tenants_for(using, suggestion)
    name = f"ti_advisor_{hashlib.sha1(suggestion.name.encode()).hexdigest()[:12]}"

    def measure(marker: str | None) -> dict[tuple[int, str], tuple[float, float | None, bool]]:
        with bounded_read(using) as cursor:
            cursor.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
            return _measure_all(cursor, version, suggestion, pair, marker, True)

    before = measure(None)
    connection.ensure_connection()
    try:
        # Inside the try: a build that fails (cancelled, deadlock) leaves an INVALID index,
        # which the drop below removes too.
        with connection.cursor() as cursor:
            cursor.execute(index_sql(suggestion, name, concurrently=True))
        after = measure(name)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_identifier(name)}")
    measurements = _measurements(suggestion, pair, before, after)
    return _replace(suggestion, verification="built", measurements=measurements)
