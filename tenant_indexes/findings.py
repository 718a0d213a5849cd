"""The findings vocabulary: every finding id, the levels, the index states, :class:`Finding`.

Every id the app reports (commands, JSON, Prometheus, system checks, the health view) is
defined here and nowhere else; docs/findings.md lists them with their meaning.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, TypedDict


class IndexState(enum.StrEnum):
    """What became of one declared index on one database."""

    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"
    BUILDING = "building"
    DRIFT = "drift"


class Level(enum.StrEnum):
    """Severity of a finding; ``--fail-level`` picks the lowest one that fails."""

    ERROR = "error"
    WARNING = "warning"

    @property
    def rank(self) -> int:
        return {"warning": 1, "error": 2}[self.value]


E_MISSING = "tenant_indexes.E001"
E_INVALID = "tenant_indexes.E002"
E_DRIFT = "tenant_indexes.E003"
E_NO_TENANT_LEADING = "tenant_indexes.E004"
E_MISSING_TABLE = "tenant_indexes.E005"
# A schema named by CHECK_SCHEMAS (or its callable) does not exist on the database.
E_MISSING_SCHEMA = "tenant_indexes.E040"
# An undeclared index that most schema copies of a table have and one copy lacks.
W_SCHEMA_DRIFT = "tenant_indexes.W040"
W_UNUSED = "tenant_indexes.W001"
W_REDUNDANT = "tenant_indexes.W002"

# Static (system check) findings.
E_NO_TENANT_INDEX_DECLARED = "tenant_indexes.E006"
E_NAME_TOO_LONG = "tenant_indexes.E007"
E_NOT_CHECKED = "tenant_indexes.E008"
E_BAD_SETTING = "tenant_indexes.E009"
E_NO_TENANT_MODEL = "tenant_indexes.E010"
W_IMPLICIT_FK_INDEX_DUPLICATE = "tenant_indexes.W003"
I_NAME_OVER_30 = "tenant_indexes.I001"

# Migrations (system check): a concurrent index operation in an atomic migration.
E_ATOMIC_CONCURRENT_MIGRATION = "tenant_indexes.E020"

# Adoption of a database Django did not build: the tenant column has another type than the
# one Django gives it (the tenant model's primary key type), e.g. varchar against uuid.
E_TENANT_COLUMN_TYPE = "tenant_indexes.E021"

# Usage findings (tenant_index_stats).
W_SEQ_SCAN_HEAVY = "tenant_indexes.W010"
W_PLAN_WITHOUT_TENANT_INDEX = "tenant_indexes.W011"

# Row-level security (rls.py).
E_RLS_POLICY_MISSING = "tenant_indexes.E030"
W_RLS_POLICY_UNSERVED = "tenant_indexes.W030"

# Coverage and leftovers on tenant tables.
E_TENANT_INDEX_WRONG_METHOD = "tenant_indexes.E050"
W_UNDECLARED_INVALID = "tenant_indexes.W050"

# The index advisor (suggest_tenant_indexes): a tenant statement from pg_stat_statements
# that no tenant-leading index serves.
W_STATEMENT_NOT_SERVED = "tenant_indexes.W060"
# The advisor was asked to run in the check and could not (pg_stat_statements missing, ...).
W_ADVISOR_UNAVAILABLE = "tenant_indexes.W061"

# The health view's probe could not finish.
E_PROBE_FAILED = "tenant_indexes.E101"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, with what to run to fix it.

    Attributes:
        id: ``tenant_indexes.E001`` and so on (docs/findings.md lists them all).
        level: error or warning.
        database: the alias.
        table: the table concerned.
        index: the index concerned, ``None`` for a table-level finding.
        message: what is wrong, in one line.
        hint: what to run to fix it.
        schema: the table's schema when known.
    """

    id: str
    level: Level
    database: str
    table: str
    index: str | None
    message: str
    hint: str
    schema: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The finding as in the ``--format json`` document."""
        return {
            "id": self.id,
            "level": self.level.value,
            "database": self.database,
            "schema": self.schema,
            "table": self.table,
            "index": self.index,
            "message": self.message,
            "hint": self.hint,
        }


class FindingSubject(TypedDict):
    """What a group of findings shares: where they are and how severe; ``**``-passed to
    :class:`Finding` along with each finding's own id, message and hint."""

    level: Level
    database: str
    schema: str | None
    table: str
    index: str | None
