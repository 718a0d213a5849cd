"""The report vocabulary of a check: per index, per database, overall; and the exit-code rule.

Frozen data, no database access: :func:`tenant_indexes.health.check_databases` fills them,
the renderers, the commands and the HTTP view read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .catalog import CatalogIndex
from .findings import Finding, IndexState, Level


@dataclass(frozen=True, slots=True)
class IndexReport:
    """One declared tenant index on one database, with its state and usage where known."""

    database: str
    schema: str | None
    table: str
    name: str
    columns: tuple[str | None, ...]
    status: IndexState
    model: str
    app_label: str
    unique: bool = False
    method: str = "btree"
    live: CatalogIndex | None = None

    def as_dict(self) -> dict[str, Any]:
        """The index as in the ``--format json`` document, with usage fields when it exists."""
        data: dict[str, Any] = {
            "database": self.database,
            "schema": self.schema,
            "table": self.table,
            "name": self.name,
            "columns": list(self.columns),
            "status": self.status,  # a str enum: its value, to json as to ==
            "model": self.model,
            "app_label": self.app_label,
            "unique": self.unique,
            "method": self.method,
        }
        live = self.live
        if live is not None:
            data["valid"] = live.valid
            data["definition"] = live.definition
            data["size_bytes"] = live.size_bytes
            data["idx_scan"] = live.idx_scan
            data["idx_tup_read"] = live.idx_tup_read
            data["idx_tup_fetch"] = live.idx_tup_fetch
        return data


@dataclass(frozen=True)
class DatabaseReport:
    """How the check of one alias went; ``error`` is set when it could not be checked."""

    alias: str
    vendor: str
    server_version: str | None
    error: str | None = None
    server_version_num: int | None = None
    tables: int = 0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "vendor": self.vendor,
            "server_version": self.server_version,
            "server_version_num": self.server_version_num,
            "error": self.error,
            "tables": self.tables,
            "duration_seconds": round(self.duration_seconds, 6),
        }


@dataclass(frozen=True)
class HealthReport:
    """The result of one check over one or more database aliases."""

    status: str
    databases: tuple[DatabaseReport, ...] = ()
    indexes: tuple[IndexReport, ...] = ()
    findings: tuple[Finding, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The ``--format json`` document (keys may be added, never renamed)."""
        return {
            "status": self.status,
            "databases": [d.as_dict() for d in self.databases],
            "indexes": [i.as_dict() for i in self.indexes],
            "findings": [f.as_dict() for f in self.findings],
        }

    def exit_code(self, fail_level: Level | str = Level.ERROR) -> int:
        """0 healthy, 1 a finding at or above ``fail_level``, 2 a database was not checked.

        "Could not check" wins: a partial answer must not pass a deploy gate.
        """
        return exit_code_for(self.databases, self.findings, fail_level)


def exit_code_for(
    databases: Sequence[DatabaseReport], findings: Sequence[Finding], fail_level: Level | str
) -> int:
    """The exit code of a check or usage report.

    Args:
        databases: the report's databases; one with ``error`` set was not checked.
        findings: the report's findings.
        fail_level: the lowest finding level that makes the result unhealthy.

    Returns:
        2 when a database was not checked (a partial answer must not pass a deploy gate),
        1 when a finding is at or above ``fail_level``, else 0.
    """
    threshold = Level(fail_level).rank
    if any(d.error for d in databases):
        return 2
    if any(f.level.rank >= threshold for f in findings):
        return 1
    return 0


def overall_status(databases: Sequence[DatabaseReport], findings: Sequence[Finding]) -> str:
    """``unknown`` if a database was not checked, else the worst finding level, else ``ok``."""
    if any(d.error for d in databases):
        return "unknown"
    if any(f.level is Level.ERROR for f in findings):
        return "error"
    if any(f.level is Level.WARNING for f in findings):
        return "warning"
    return "ok"
