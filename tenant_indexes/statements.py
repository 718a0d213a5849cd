"""Reading tenant statements for the advisor: the ``pg_stat_statements`` and catalog queries,
the predicates of a normalised statement, its plan bound to a tenant, and the candidate
indexes' names, sizes and coverage (:mod:`tenant_indexes.advisor` orchestrates)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .advice import PLANNING_LIMIT, PlanFacts, Statement
from .declared import TenantTable
from .reads import plan_nodes

# Reading pg_stat_statements

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
