"""The index advisor's vocabulary: the statements it reads, the plans' facts, the
measurements and suggestions it makes, its report, and the lines that enable
``pg_stat_statements`` (:mod:`tenant_indexes.advisor` does the work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .exceptions import TenantIndexesError
from .findings import W_STATEMENT_NOT_SERVED, Finding, Level

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
