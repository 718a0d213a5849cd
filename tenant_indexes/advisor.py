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
``verify_by_building=True`` builds each candidate for real (``CREATE INDEX CONCURRENTLY``),
measures the plans and the execution time of its ``SELECT`` statements, then drops it
concurrently: for a non-production database only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from .catalog import bounded_read, check_timeouts, first_error_line, plan_nodes
from .declared import TenantTable, declared_tenant_tables
from .exceptions import TenantIndexesError
from .findings import W_ADVISOR_UNAVAILABLE, W_STATEMENT_NOT_SERVED, Finding, Level
from .sql import quote_identifier
from .statistics import representative_tenants

#: The one line that loads pg_stat_statements (postgresql.conf, then a restart).
ENABLE_PRELOAD_LINE = "shared_preload_libraries = 'pg_stat_statements'"
#: The one statement that installs it in a database once it is loaded.
ENABLE_EXTENSION_LINE = "CREATE EXTENSION pg_stat_statements;"

# A hypothetical index must cut the plan cost at least this much for one of the two tenants
# to be suggested as verified.
MIN_COST_RATIO = 1.2
# The statements read from pg_stat_statements, most total time first.
MAX_STATEMENTS = 5000
# Values bound to LIMIT and OFFSET when planning.
PLANNING_LIMIT = "50"


class AdvisorUnavailable(TenantIndexesError):
    """The advisor cannot run on this database (exit 2): the message says why and what to do."""


@dataclass(frozen=True)
class Statement:
    """One ``pg_stat_statements`` entry on a tenant table.

    Attributes:
        queryid: ``pg_stat_statements.queryid``.
        query: the normalised text (``$1``, ``$2`` for constants).
        calls: how often it ran.
        mean_ms: its mean execution time in milliseconds.
        table: the tenant table it filters.
        tenant_param: the parameter number compared with the tenant column.
    """

    queryid: int
    query: str
    calls: int
    mean_ms: float
    table: str
    tenant_param: int
    plans: tuple[tuple[str, dict[str, Any]], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "queryid": self.queryid,
            "query": self.query,
            "calls": self.calls,
            "mean_ms": round(self.mean_ms, 3),
            "plans": {role: plan for role, plan in self.plans},
        }


@dataclass(frozen=True)
class PlanFacts:
    """What one plan of a statement does on its tenant table."""

    cost: float
    node_types: tuple[str, ...]
    index_names: tuple[str, ...]
    filtered_columns: tuple[str, ...]
    sorts: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "cost": round(self.cost, 2),
            "node_types": list(self.node_types),
            "index_names": list(self.index_names),
            "post_filter_columns": list(self.filtered_columns),
            "sorts": self.sorts,
        }


@dataclass(frozen=True)
class Measurement:
    """One statement's plan cost for one tenant without and with a suggested index."""

    queryid: int
    tenant: str
    role: str  # "typical" or "largest"
    cost_before: float
    cost_after: float
    uses_index: bool
    ms_before: float | None = None
    ms_after: float | None = None

    @property
    def ratio(self) -> float:
        return self.cost_before / self.cost_after if self.cost_after > 0 else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queryid": self.queryid,
            "tenant": self.tenant,
            "role": self.role,
            "cost_before": round(self.cost_before, 2),
            "cost_after": round(self.cost_after, 2),
            "cost_ratio": round(self.ratio, 2),
            "uses_index": self.uses_index,
            "ms_before": None if self.ms_before is None else round(self.ms_before, 3),
            "ms_after": None if self.ms_after is None else round(self.ms_after, 3),
        }


@dataclass(frozen=True)
class Suggestion:
    """One tenant-leading index to add, with the statements it serves.

    Attributes:
        table: the tenant table.
        model: the model label (``app.Model``).
        app_label: the model's app label.
        model_name: the model's lower-case name (what a migration names).
        columns: the key columns, the tenant column first.
        fields: the model field names after the tenant field (``TenantIndex(fields=...)``).
        name: the suggested index name.
        reasons: why the statements need it (``seq scan``, ``post-filter on status``, ...).
        statements: the statements it serves.
        estimated_bytes: the estimated index size.
        verification: ``hypopg``, ``built`` or ``unverified``.
        measurements: per statement and tenant, the plan cost before and after.
    """

    table: str
    model: str
    app_label: str
    model_name: str
    columns: tuple[str, ...]
    fields: tuple[str, ...]
    name: str
    reasons: tuple[str, ...]
    statements: tuple[Statement, ...]
    estimated_bytes: int
    verification: str = "unverified"
    measurements: tuple[Measurement, ...] = ()

    @property
    def tenant_index_line(self) -> str:
        fields = ", ".join(f'"{name}"' for name in self.fields)
        return f'TenantIndex(fields=[{fields}], name="{self.name}")'

    @property
    def migration_operation(self) -> str:
        """The operation ``makemigrations`` writes for it (concurrent, ``atomic = False``)."""
        fields = ", ".join(f'"{name}"' for name in self.fields)
        return (
            "AddIndexConcurrently(\n"
            f'    model_name="{self.model_name}",\n'
            "    index=tenant_indexes.indexes.TenantIndex(\n"
            f'        fields=[{fields}], name="{self.name}"\n'
            "    ),\n"
            ")"
        )

    @property
    def best_ratio(self) -> float:
        return max((m.ratio for m in self.measurements if m.uses_index), default=1.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "model": self.model,
            "columns": list(self.columns),
            "name": self.name,
            "tenant_index": self.tenant_index_line,
            "migration_operation": self.migration_operation,
            "reasons": list(self.reasons),
            "estimated_bytes": self.estimated_bytes,
            "verification": self.verification,
            "statements": [s.as_dict() for s in self.statements],
            "measurements": [m.as_dict() for m in self.measurements],
        }


@dataclass(frozen=True)
class AdvisorReport:
    """What the advisor found on one alias."""

    database: str
    server_version_num: int
    statements_read: int
    tenant_statements: int
    suggestions: tuple[Suggestion, ...]
    hypopg: bool
    notes: tuple[str, ...] = field(default=())

    def findings(self) -> tuple[Finding, ...]:
        """One warning (W060) per statement a suggestion serves."""
        return tuple(
            Finding(
                id=W_STATEMENT_NOT_SERVED,
                level=Level.WARNING,
                database=self.database,
                table=s.table,
                index=None,
                message=(
                    f"tenant statement {st.queryid} ({st.calls} calls, {st.mean_ms:.2f} ms mean)"
                    f" is not served by a tenant-leading index: {', '.join(s.reasons)}"
                ),
                hint=f"add {s.tenant_index_line} to {s.model}'s Meta.indexes",
            )
            for s in self.suggestions
            for st in s.statements
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "server_version_num": self.server_version_num,
            "statements_read": self.statements_read,
            "tenant_statements": self.tenant_statements,
            "hypopg": self.hypopg,
            "notes": list(self.notes),
            "suggestions": [s.as_dict() for s in self.suggestions],
            "findings": [f.as_dict() for f in self.findings()],
        }


# Reading pg_stat_statements -----------------------------------------------------------------

_SERVER_SQL = """
SELECT current_setting('server_version_num')::int,
       pg_is_in_recovery(),
       current_setting('shared_preload_libraries'),
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg'),
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'),
       current_database()
"""

_STATEMENTS_SQL = """
SELECT s.queryid, s.query, s.calls, s.mean_exec_time
  FROM pg_stat_statements s
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND s.calls >= %s AND s.mean_exec_time >= %s
 ORDER BY s.total_exec_time DESC
 LIMIT %s
"""

_LIVE_INDEXES_SQL = """
SELECT c.relname, i.relname,
       ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
              LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE k.n <= x.indnkeyatts ORDER BY k.n)::text[],
       x.indisvalid AND x.indisready, x.indpred IS NOT NULL, am.amname
  FROM pg_index x
  JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_am am ON am.oid = i.relam
 WHERE c.oid = ANY(%s::regclass[])
"""

_TABLE_SIZE_SQL = """
SELECT c.reltuples::float8,
       coalesce((SELECT array_agg(s.attname || ':' || s.avg_width)
                   FROM pg_stats s
                  WHERE s.schemaname = n.nspname AND s.tablename = c.relname), '{}')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)
"""

_COMMON_VALUE_SQL = """
SELECT coalesce(
         (most_common_vals::text::text[])[1],
         (histogram_bounds::text::text[])[
           greatest(1, array_length(histogram_bounds::text::text[], 1) / 2)])
  FROM pg_stats
 WHERE tablename = %s AND attname = %s
 ORDER BY schemaname = current_schema() DESC
 LIMIT 1
"""


def _identifier(name: str) -> str:
    return rf'(?:"{re.escape(name)}"|\b{re.escape(name)}\b)'


_OPERATOR = r"(=|<>|!=|<=|>=|<|>)"


def _tenant_param(query: str, table: str, column: str) -> int | None:
    """The parameter compared with ``table.column`` by ``=``, ``None`` when there is none."""
    if table not in query or column not in query:
        return None
    # The table after FROM, JOIN, UPDATE or a comma, possibly schema-qualified.
    source = rf"(?:\bFROM|\bJOIN|\bUPDATE|,)\s*(?:\"?\w+\"?\s*\.\s*)?{_identifier(table)}"
    if not re.search(source, query, re.I):
        return None
    qualified = rf"(?:{_identifier(table)}\s*\.\s*)?{_identifier(column)}"
    found = re.search(rf"{qualified}\s*=\s*\$(\d+)", query) or re.search(
        rf"\$(\d+)\s*=\s*{qualified}", query
    )
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class _Predicates:
    equality: tuple[str, ...]
    ranges: tuple[str, ...]
    order_by: tuple[tuple[str, bool], ...]  # (column, descending)
    params: dict[int, str]  # parameter -> the column it is compared with


def _predicates(query: str, table: str, columns: Sequence[str]) -> _Predicates:
    """The table's columns the statement compares and sorts by, in the order they appear."""
    equality: list[str] = []
    ranges: list[str] = []
    params: dict[int, str] = {}
    order_by: list[tuple[str, bool]] = []
    parts = re.split(r"(\bORDER\s+BY\b)", query, maxsplit=1, flags=re.I)
    head = parts[0]
    tail = parts[2] if len(parts) == 3 else ""
    table_re = _identifier(table)
    for column in columns:
        qualified = rf"(?:{table_re}\s*\.\s*)?{_identifier(column)}"
        for match in re.finditer(rf"{qualified}\s*{_OPERATOR}\s*\$(\d+)", head):
            params[int(match.group(2))] = column
            target = equality if match.group(1) == "=" else ranges
            if match.group(1) not in ("<>", "!=") and column not in target:
                target.append(column)
        for match in re.finditer(rf"{qualified}\s+IN\s*\(\s*((?:\$\d+\s*,?\s*)+)\)", head, re.I):
            for number in re.findall(r"\$(\d+)", match.group(1)):
                params[int(number)] = column
            if column not in equality:
                equality.append(column)
        for match in re.finditer(rf"{qualified}\s+BETWEEN\s+\$(\d+)\s+AND\s+\$(\d+)", head, re.I):
            params[int(match.group(1))] = params[int(match.group(2))] = column
            if column not in ranges:
                ranges.append(column)
    if tail:
        order_text = re.split(r"\b(LIMIT|OFFSET|FOR\s+UPDATE)\b", tail, maxsplit=1, flags=re.I)[0]
        for item in order_text.split(","):
            item = item.strip()
            for column in columns:
                if re.match(rf"(?:{table_re}\s*\.\s*)?{_identifier(column)}(\s|$)", item):
                    order_by.append((column, bool(re.search(r"\bDESC\b", item, re.I))))
                    break
            else:
                order_by = []  # ordered by something else: an index cannot give the order
                break
    ranges = [c for c in ranges if c not in equality]
    return _Predicates(tuple(equality), tuple(ranges), tuple(order_by), params)


def _plan_facts(plan: dict[str, Any], table: str, columns: Sequence[str]) -> PlanFacts:
    nodes = list(plan_nodes(plan))
    on_table = [n for n in nodes if n.get("Relation Name") == table]
    index_names = tuple(n["Index Name"] for n in nodes if n.get("Index Name"))
    filtered: list[str] = []
    for node in on_table:
        text = node.get("Filter", "") or ""
        for column in columns:
            if re.search(rf"\b{re.escape(column)}\b", text) and column not in filtered:
                filtered.append(column)
    sorts = any(n.get("Node Type") in ("Sort", "Incremental Sort") for n in nodes)
    return PlanFacts(
        cost=float(plan.get("Total Cost", 0.0)),
        node_types=tuple(n.get("Node Type", "") for n in on_table),
        index_names=index_names,
        filtered_columns=tuple(filtered),
        sorts=sorts,
    )


def _literal(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _Candidate:
    table: TenantTable
    columns: tuple[str, ...]
    descending: dict[str, bool]
    reasons: list[str]
    statements: list[Statement]


class _Planner:
    """Plans statements on one cursor: PREPARE once, EXPLAIN EXECUTE per tenant."""

    def __init__(self, cursor: Any, version: int) -> None:
        self.cursor = cursor
        self.version = version
        self._common: dict[tuple[str, str], str | None] = {}
        self._counter = 0

    def common_value(self, table: str, column: str) -> str | None:
        key = (table, column)
        if key not in self._common:
            self.cursor.execute(_COMMON_VALUE_SQL, [table, column])
            row = self.cursor.fetchone()
            self._common[key] = row[0] if row else None
        return self._common[key]

    def arguments(self, statement: Statement, preds: _Predicates, tenant: str) -> list[str]:
        count = max((int(n) for n in re.findall(r"\$(\d+)", statement.query)), default=0)
        values: list[str] = []
        for number in range(1, count + 1):
            if number == statement.tenant_param:
                values.append(_literal(tenant))
            elif number in preds.params:
                values.append(_literal(self.common_value(statement.table, preds.params[number])))
            elif re.search(rf"\bLIMIT\s+\${number}\b", statement.query, re.I):
                values.append(PLANNING_LIMIT)
            elif re.search(rf"\bOFFSET\s+\${number}\b", statement.query, re.I):
                values.append("0")
            else:
                values.append("NULL")
        return values

    def plan(
        self, statement: Statement, preds: _Predicates, tenant: str, analyze: bool = False
    ) -> dict[str, Any]:
        """The plan of the statement with its parameters bound (a custom plan)."""
        self._counter += 1
        name = f"tenant_indexes_advisor_{self._counter}"
        self.cursor.execute(f"PREPARE {name} AS {statement.query}")
        try:
            args = ", ".join(self.arguments(statement, preds, tenant))
            options = "ANALYZE, TIMING OFF, " if analyze else ""
            self.cursor.execute(
                f"EXPLAIN ({options}FORMAT JSON) EXECUTE {name}" + (f"({args})" if args else "")
            )
            document = self.cursor.fetchone()[0]
        finally:
            self.cursor.execute(f"DEALLOCATE {name}")
        if isinstance(document, str):
            import json

            document = json.loads(document)
        result = document[0]
        plan: dict[str, Any] = result["Plan"]
        if analyze:
            plan = {**plan, "Execution Time": result.get("Execution Time")}
        return plan

    def generic_plan(self, statement: Statement) -> dict[str, Any] | None:
        """``EXPLAIN (GENERIC_PLAN)`` on 16+, ``None`` before."""
        if self.version < 160000:
            return None
        self.cursor.execute(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {statement.query}")
        document = self.cursor.fetchone()[0]
        if isinstance(document, str):
            import json

            document = json.loads(document)
        return dict(document[0]["Plan"])


def _field_names(table: TenantTable, columns: Sequence[str]) -> tuple[str, ...]:
    from django.apps import apps

    model = apps.get_model(table.model)
    by_column = {f.column: f.name for f in model._meta.concrete_fields}
    return tuple(by_column.get(c, c) for c in columns)


def _index_name(table: str, columns: Sequence[str]) -> str:
    base = "idx_" + "_".join([table, *columns[1:]])
    if len(base) <= 63:
        return base
    digest = hashlib.sha1(base.encode()).hexdigest()[:8]
    return f"{base[:54]}_{digest}"


def _estimated_bytes(reltuples: float, widths: dict[str, int], columns: Sequence[str]) -> int:
    """Leaf pages of a B-tree on ``columns``: per tuple an 8-byte header, the aligned keys and
    a 4-byte line pointer, pages filled to 90 %, 8 kB pages."""
    keys = sum(widths.get(c, 8) for c in columns)
    aligned = (keys + 7) // 8 * 8
    per_tuple = 8 + aligned + 4
    usable = int(8192 * 0.9) - 24
    pages = max(1, int(max(reltuples, 0) * per_tuple / usable) + 1)
    return (pages + 1) * 8192


def _covered(columns: Sequence[str], live: Sequence[tuple[tuple[str, ...], bool]]) -> bool:
    """Whether a valid, non-partial live B-tree starts with ``columns``."""
    return any(
        len(keys) >= len(columns) and tuple(keys[: len(columns)]) == tuple(columns)
        for keys, usable in live
        if usable
    )


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
        built = [_verify_by_building(using, s, int(version)) for s in suggestions]
        suggestions = [s for s in built if any(m.uses_index for m in s.measurements)]
        notes += [
            f"not suggested: ({', '.join(s.columns)}) on {s.table} was built and not used"
            for s in built
            if s not in suggestions
        ]
    elif suggestions and hypopg:
        suggestions = _verify_with_hypopg(using, suggestions, int(version), notes)
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
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true),"
            " set_config('lock_timeout', %s, true),"
            " set_config('plan_cache_mode', 'force_custom_plan', true)",
            check_timeouts(),
        )
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


def _index_sql(suggestion: Suggestion, name: str, concurrently: bool = False) -> str:
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


def _verify_with_hypopg(
    using: str, suggestions: Sequence[Suggestion], version: int, notes: list[str]
) -> list[Suggestion]:
    """Measure each suggestion as a hypothetical index; keep those the plans use and gain from."""
    verified = []
    tenants = {s.table: _tenants_for(using, s) for s in suggestions}
    with bounded_read(using) as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true),"
            " set_config('lock_timeout', %s, true),"
            " set_config('plan_cache_mode', 'force_custom_plan', true)",
            check_timeouts(),
        )
        for suggestion in suggestions:
            pair = tenants[suggestion.table]
            cursor.execute("SELECT hypopg_reset()")
            before = _measure_all(cursor, version, suggestion, pair, None, False)
            cursor.execute(
                "SELECT indexrelid, hypopg_relation_size(indexrelid) FROM hypopg_create_index(%s)",
                [_index_sql(suggestion, suggestion.name)],
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


def _verify_by_building(using: str, suggestion: Suggestion, version: int) -> Suggestion:
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
    with connection.cursor() as cursor:
        cursor.execute(_index_sql(suggestion, name, concurrently=True))
    try:
        after = measure(name)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_identifier(name)}")
    measurements = _measurements(suggestion, pair, before, after)
    return _replace(suggestion, verification="built", measurements=measurements)


# In check_tenant_indexes, when asked ----------------------------------------------------------


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
