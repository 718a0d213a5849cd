"""The index advisor: tenant statements from ``pg_stat_statements`` to a verified TenantIndex.

:func:`suggest_tenant_indexes` reads ``pg_stat_statements`` on one alias, keeps the
statements on declared tenant tables that compare the tenant column with a parameter, and
plans each one (``EXPLAIN`` without ``ANALYZE``: nothing is executed) with the tenant bound to
a typical and to the largest tenant (:func:`tenant_indexes.statistics.representative_tenants`);
on PostgreSQL 16+ it also records the generic plan (``EXPLAIN (GENERIC_PLAN)``). The other
parameters are bound to values from ``pg_stats`` (a common value of the column they are
compared with), ``LIMIT`` to 50 and ``OFFSET`` to 0.

A statement needs help when its plan on the tenant table is a sequential scan, scans an index
that does not lead with the tenant column, filters rows after the index (a post-filter), or
sorts on the tenant table's columns. Its candidate leads with the tenant column by
construction: the tenant, then the columns compared with ``=``/``IN``, then the ``ORDER BY``
columns (or else the first range column). A candidate that is a prefix of another on the same
table is merged into it (one index serves both); a candidate that is a prefix of an existing
valid index is not suggested.

With the ``hypopg`` extension each candidate is measured as a hypothetical index: the
statements' plan cost before and after, for the typical and the largest tenant; a candidate
that no plan uses is dropped. Without it the advice is marked unverified.
``verify_by_building=True`` builds each candidate for real instead, for a non-production
database only. Both ways of verifying live in :mod:`tenant_indexes.verification`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from django.db import connections

from . import verification
from .advice import (
    ENABLE_EXTENSION_LINE,
    ENABLE_PRELOAD_LINE,
    MAX_STATEMENTS,
    AdvisorReport,
    AdvisorUnavailable,
    PlanFacts,
    Statement,
    Suggestion,
)
from .declared import TenantTable, declared_tenant_tables
from .findings import W_ADVISOR_UNAVAILABLE, Finding, Level
from .reads import bounded_read, check_timeouts, first_error_line
from .sql import quote_identifier
from .statements import (
    _LIVE_INDEXES_SQL,
    _SERVER_SQL,
    _STATEMENTS_SQL,
    _TABLE_SIZE_SQL,
    _Candidate,
    _covered,
    _estimated_bytes,
    _field_names,
    _index_name,
    _plan_facts,
    _Planner,
    _Predicates,
    _predicates,
    _tenant_param,
)
from .statistics import representative_tenants


def suggest_tenant_indexes(
    using: str = "default",
    app_labels: Sequence[str] | None = None,
    *,
    min_calls: int = 1,
    min_time_ms: float = 0.0,
    verify_by_building: bool = False,
) -> AdvisorReport:
    """Read ``pg_stat_statements`` on ``using`` and suggest tenant-leading indexes.

    Raises:
        AdvisorUnavailable: the alias is not PostgreSQL, cannot be reached, or has no
            readable ``pg_stat_statements``; the message has the line that enables it.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise AdvisorUnavailable(
            f"database {using!r} is {connection.vendor}: the advisor needs PostgreSQL "
            "(pg_stat_statements)"
        )
    tables = {t.table: t for t in declared_tenant_tables(using, app_labels)}
    try:
        with bounded_read(using) as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('lock_timeout', %s, true)",
                check_timeouts(),
            )
            cursor.execute(_SERVER_SQL)
            version, standby, preload, has_pss, has_hypopg, hypopg_available, dbname = (
                cursor.fetchone()
            )
            loaded = "pg_stat_statements" in [p.strip() for p in preload.split(",")]
            role = "a standby (read-only replica)" if standby else "the server"
            if not loaded:
                raise AdvisorUnavailable(
                    f"pg_stat_statements is not loaded on {role} of database {using!r}: add "
                    f"the line {ENABLE_PRELOAD_LINE} to its postgresql.conf and restart it"
                    + (
                        ", then run CREATE EXTENSION pg_stat_statements; on the primary"
                        if standby or not has_pss
                        else ""
                    )
                )
            if not has_pss:
                if standby:
                    raise AdvisorUnavailable(
                        f"database {using!r} is a standby without the pg_stat_statements "
                        f"extension: run {ENABLE_EXTENSION_LINE} on its primary (it replicates)"
                    )
                raise AdvisorUnavailable(
                    f"the pg_stat_statements extension is not installed in database "
                    f"{dbname!r} ({using!r}): run {ENABLE_EXTENSION_LINE}"
                )
            if verify_by_building and standby:
                raise AdvisorUnavailable(
                    f"database {using!r} is a standby: --verify-by-building needs the primary "
                    "(an index cannot be built on a read-only replica)"
                )
            cursor.execute(_STATEMENTS_SQL, [min_calls, min_time_ms, MAX_STATEMENTS])
            rows = cursor.fetchall()
    except AdvisorUnavailable:
        raise
    except Exception as e:
        raise AdvisorUnavailable(
            f"could not read pg_stat_statements on {using!r}: {first_error_line(e)}"
        ) from e

    notes: list[str] = []
    if standby:
        notes.append(
            "this is a standby: its pg_stat_statements counts the statements run on it; "
            "build the suggested indexes on the primary"
        )
    statements: list[Statement] = []
    for queryid, query, calls, mean in rows:
        if not query or "tenant_indexes_advisor" in query or "pg_stat_statements" in query:
            continue
        if not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", query, re.I):
            continue
        for name, table in tables.items():
            param = _tenant_param(query, name, table.tenant_column)
            if param is not None:
                statements.append(
                    Statement(int(queryid or 0), query, int(calls), float(mean), name, param)
                )
                break

    suggestions = _suggest(using, tables, statements, int(version), notes)
    hypopg = bool(has_hypopg)
    if suggestions and verify_by_building:
        built = [verification.verify_by_building(using, s, int(version)) for s in suggestions]
        suggestions = [s for s in built if any(m.uses_index for m in s.measurements)]
        notes += [
            f"not suggested: ({', '.join(s.columns)}) on {s.table} was built and not used"
            for s in built
            if s not in suggestions
        ]
    elif suggestions and hypopg:
        suggestions = verification.verify_with_hypopg(using, suggestions, int(version), notes)
    elif suggestions:
        notes.append(
            "unverified: the hypopg extension is not installed"
            + (
                " (it is available here: CREATE EXTENSION hypopg;)"
                if hypopg_available
                else " (install it, e.g. Debian's postgresql-<major>-hypopg)"
            )
            + "; or pass --verify-by-building on a non-production database"
        )
    return AdvisorReport(
        database=using,
        server_version_num=int(version),
        statements_read=len(rows),
        tenant_statements=len(statements),
        suggestions=tuple(sorted(suggestions, key=lambda s: (s.table, s.columns))),
        hypopg=hypopg,
        notes=tuple(notes),
    )


def _suggest(
    using: str,
    tables: dict[str, TenantTable],
    statements: Sequence[Statement],
    version: int,
    notes: list[str],
) -> list[Suggestion]:
    from django.apps import apps

    if not statements:
        return []
    candidates: list[_Candidate] = []
    live: dict[str, list[tuple[tuple[str, ...], bool]]] = {}
    live_names: dict[str, dict[str, tuple[str, ...]]] = {}
    sizes: dict[str, tuple[float, dict[str, int]]] = {}
    tenants: dict[str, tuple[str | None, str | None]] = {}
    for name in {s.table for s in statements}:
        schema = tables[name].schema
        where: str | tuple[str, str] = (schema, name) if schema else name
        tenants[name] = representative_tenants(using, where, tables[name].tenant_column)
    with bounded_read(using) as cursor:
        verification.planning_session(cursor)
        names = sorted({s.table for s in statements})
        cursor.execute(_LIVE_INDEXES_SQL, [[quote_identifier(n) for n in names]])
        for table, index, keys, valid, partial, method in cursor.fetchall():
            live_names.setdefault(table, {})[index] = tuple(keys)
            live.setdefault(table, []).append(
                (tuple(keys), bool(valid) and not partial and method == "btree")
            )
        for name in names:
            cursor.execute(_TABLE_SIZE_SQL, [quote_identifier(name)])
            reltuples, widths = cursor.fetchone()
            sizes[name] = (
                float(reltuples),
                {w.rsplit(":", 1)[0]: int(w.rsplit(":", 1)[1]) for w in widths or ()},
            )
        planner = _Planner(cursor, version)
        for statement in statements:
            table = tables[statement.table]
            model = apps.get_model(table.model)
            columns = [f.column for f in model._meta.concrete_fields]
            preds = _predicates(statement.query, statement.table, columns)
            tenant = table.tenant_column
            equality = [c for c in preds.equality if c != tenant]
            order = [c for c, _ in preds.order_by if c != tenant and c not in equality]
            tail = order or [c for c in preds.ranges if c != tenant][:1]
            key = (tenant, *equality, *tail)
            if len(key) == 1 and _covered(key, live.get(statement.table, [])):
                continue
            typical, largest = tenants[statement.table]
            if typical is None:
                continue
            try:
                facts = _plan_facts(
                    planner.plan(statement, preds, typical), statement.table, columns
                )
            except Exception as e:  # a statement the planner refuses with bound values
                notes.append(f"statement {statement.queryid} not planned: {first_error_line(e)}")
                continue
            reasons = _reasons(facts, key, live_names.get(statement.table, {}), preds)
            plans = [("typical", facts)]
            # The largest tenant may get another plan (a sequential scan can be right for it),
            # and on 16+ the generic plan is the one a prepared statement ends up with.
            others: list[tuple[str, dict[str, Any] | None]] = []
            try:
                if largest is not None and largest != typical:
                    others.append(("largest", planner.plan(statement, preds, largest)))
                others.append(("generic", planner.generic_plan(statement)))
            except Exception as e:  # one statement's plan: reported as a note
                notes.append(f"statement {statement.queryid}: {first_error_line(e)}")
            for role, other in others:
                if other is None:
                    continue
                other_facts = _plan_facts(other, statement.table, columns)
                plans.append((role, other_facts))
                reasons += [
                    f"{reason} ({role})"
                    for reason in _reasons(
                        other_facts, key, live_names.get(statement.table, {}), preds
                    )
                    if reason not in reasons
                ]
            statement = dataclasses.replace(
                statement, plans=tuple((role, f.as_dict()) for role, f in plans)
            )
            if not reasons or _covered(key, live.get(statement.table, [])):
                continue
            descending = {c: d for c, d in preds.order_by}
            candidates.append(_Candidate(table, key, descending, reasons, [statement]))
    merged = _merge(candidates)
    result = []
    for candidate in merged:
        table = candidate.table
        reltuples, widths = sizes[table.table]
        fields = _field_names(table, candidate.columns)
        out_fields = tuple(
            ("-" if candidate.descending.get(col) else "") + name
            for col, name in zip(candidate.columns[1:], fields[1:], strict=True)
        )
        from django.apps import apps as registry

        model = registry.get_model(table.model)
        result.append(
            Suggestion(
                table=table.table,
                model=table.model,
                app_label=table.app_label,
                model_name=model._meta.model_name or "",
                columns=candidate.columns,
                fields=out_fields,
                name=_index_name(table.table, candidate.columns),
                reasons=tuple(dict.fromkeys(candidate.reasons)),
                statements=tuple(sorted(candidate.statements, key=lambda s: -s.calls)),
                estimated_bytes=_estimated_bytes(reltuples, widths, candidate.columns),
            )
        )
    return result


def _reasons(
    facts: PlanFacts,
    key: Sequence[str],
    live_by_name: dict[str, tuple[str, ...]],
    preds: _Predicates,
) -> list[str]:
    """Why a plan does not serve the statement; empty when it does."""
    reasons = []
    if "Seq Scan" in facts.node_types:
        reasons.append("sequential scan")
    for name in facts.index_names:
        keys = live_by_name.get(name)
        if keys and keys[0] != key[0]:
            reasons.append(f"scans {name}, which leads with {keys[0]}, not the tenant column")
    filtered = [c for c in facts.filtered_columns if c in key[1:]]
    if filtered:
        reasons.append("post-filter on " + ", ".join(filtered))
    if facts.sorts and preds.order_by:
        reasons.append("sort on " + ", ".join(c for c, _ in preds.order_by))
    return reasons


def _merge(candidates: Sequence[_Candidate]) -> list[_Candidate]:
    """One candidate per key; a key that is a prefix of a longer one on the same table folds
    into the longer one (a B-tree on the longer key serves both)."""
    by_key: dict[tuple[str, tuple[str, ...]], _Candidate] = {}
    for c in candidates:
        k = (c.table.table, c.columns)
        if k in by_key:
            by_key[k].statements.extend(c.statements)
            by_key[k].reasons.extend(c.reasons)
            by_key[k].descending.update(c.descending)
        else:
            by_key[k] = _Candidate(
                c.table, c.columns, dict(c.descending), list(c.reasons), list(c.statements)
            )
    ordered = sorted(by_key.values(), key=lambda c: -len(c.columns))
    kept: list[_Candidate] = []
    for c in ordered:
        home = next(
            (
                k
                for k in kept
                if k.table.table == c.table.table and k.columns[: len(c.columns)] == c.columns
            ),
            None,
        )
        if home is None:
            kept.append(c)
        else:
            home.statements.extend(c.statements)
            home.reasons.extend(c.reasons)
    return kept


# In check_tenant_indexes, when asked


def check_findings(tables: Sequence[TenantTable], snapshot: Any) -> tuple[Finding, ...]:
    """The advisor's findings for the check: W060 per statement a suggestion serves, W061
    when it cannot run. Nothing unless ``TENANT_INDEXES["CHECK_INCLUDES_ADVISOR"]`` is true."""
    from .conf import get_config

    if not get_config()["CHECK_INCLUDES_ADVISOR"] or not tables:
        return ()
    app_labels = sorted({t.app_label for t in tables})
    try:
        report = suggest_tenant_indexes(snapshot.alias, app_labels)
    except AdvisorUnavailable as e:
        return (
            Finding(
                id=W_ADVISOR_UNAVAILABLE,
                level=Level.WARNING,
                database=snapshot.alias,
                table="",
                index=None,
                message=f"the index advisor could not run: {e}",
                hint=f"enable pg_stat_statements ({ENABLE_PRELOAD_LINE}, then "
                f"{ENABLE_EXTENSION_LINE}) or set CHECK_INCLUDES_ADVISOR to False",
            ),
        )
    return report.findings()


def register_check_producer() -> None:
    """Add :func:`check_findings` to every check (it returns nothing unless asked)."""
    from .health import register_finding_producer

    register_finding_producer(check_findings)
