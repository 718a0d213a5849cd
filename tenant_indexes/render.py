"""A :class:`~tenant_indexes.health.HealthReport` as text, JSON or Prometheus exposition.

Machine formats carry no colour; text is coloured through a Django ``Style`` (the command's
``self.style``, which ``--no-color`` turns off).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.color import no_style

from .health import HealthReport, IndexState, Level

_STATE_STYLE = {
    IndexState.OK: "SUCCESS",
    IndexState.BUILDING: "WARNING",
    IndexState.MISSING: "ERROR",
    IndexState.INVALID: "ERROR",
    IndexState.DRIFT: "ERROR",
}
_LEVEL_STYLE = {Level.ERROR: "ERROR", Level.WARNING: "WARNING"}
_STATUS_STYLE = {"ok": "SUCCESS", "warning": "WARNING", "error": "ERROR", "unknown": "ERROR"}


def _paint(style: Any, role: str, text: str) -> str:
    return getattr(style, role, lambda s: s)(text)


def render_text(report: HealthReport, style: Any = None) -> str:
    """A readable table of databases, indexes and findings.

    Args:
        report: the report.
        style: a Django ``Style`` (``self.style`` in a command); ``None`` for no colour.

    Returns:
        The text, ending with a newline.
    """
    style = style or no_style()
    lines: list[str] = []
    for db in report.databases:
        if db.error:
            lines.append(_paint(style, "ERROR", f"{db.alias}: could not check: {db.error}"))
        else:
            lines.append(
                f"{db.alias}: {db.vendor} {db.server_version}, {db.tables} tenant table(s) "
                f"checked in {db.duration_seconds * 1000:.0f} ms"
            )
    if report.indexes:
        headers = ("DATABASE", "TABLE", "INDEX", "COLUMNS", "STATUS")
        rows = [
            (
                ix.database,
                f"{ix.schema}.{ix.table}" if ix.schema else ix.table,
                ix.name,
                ", ".join(c if c is not None else "<expr>" for c in ix.columns),
                ix.status.value,
            )
            for ix in report.indexes
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines.append("")
        lines.append(
            _paint(
                style,
                "MIGRATE_HEADING",
                "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
            )
        )
        for ix, row in zip(report.indexes, rows, strict=True):
            cells = "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True))
            lines.append(f"{cells}  {_paint(style, _STATE_STYLE[ix.status], row[-1])}")
    if report.findings:
        lines.append("")
        for f in report.findings:
            where = f"{f.database}:{f.table}" + (f".{f.index}" if f.index else "")
            lines.append(_paint(style, _LEVEL_STYLE[f.level], f"{f.id} {where}: {f.message}"))
            lines.append(f"    HINT: {f.hint}")
    lines.append("")
    counts = f"{len(report.indexes)} index(es), {len(report.findings)} finding(s)"
    lines.append(
        _paint(style, _STATUS_STYLE.get(report.status, "ERROR"), f"status: {report.status}")
        + f" ({counts})"
    )
    return "\n".join(lines) + "\n"


def render_json(report: HealthReport) -> str:
    """DESIGN.md's JSON document (one object, keys in a stable order)."""
    return json.dumps(report.as_dict(), indent=2) + "\n"


_STATUS_CODE = {"ok": 0, "warning": 1, "error": 2, "unknown": 3}


def _label(value: str) -> str:
    # Exposition format escaping for label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(report: HealthReport) -> str:
    """Prometheus text exposition: a handful of gauges, labelled by database, never tenant.

    Gauges: ``tenant_indexes_status`` (0 ok, 1 warning, 2 error, 3 unknown),
    ``tenant_indexes_database_up``, ``tenant_indexes_check_duration_seconds``,
    ``tenant_indexes_indexes{status}`` (every state, zeros included, so alerts can use
    ``> 0``) and ``tenant_indexes_findings{id}``.
    """
    out = [
        "# HELP tenant_indexes_status Overall result: 0 ok, 1 warning, 2 error, 3 unknown.",
        "# TYPE tenant_indexes_status gauge",
        f"tenant_indexes_status {_STATUS_CODE.get(report.status, 3)}",
        "# HELP tenant_indexes_database_up 1 when the database could be checked.",
        "# TYPE tenant_indexes_database_up gauge",
    ]
    for db in report.databases:
        out.append(
            f'tenant_indexes_database_up{{database="{_label(db.alias)}"}} {int(not db.error)}'
        )
    out += [
        "# HELP tenant_indexes_check_duration_seconds Time the check of the database took.",
        "# TYPE tenant_indexes_check_duration_seconds gauge",
    ]
    for db in report.databases:
        out.append(
            f'tenant_indexes_check_duration_seconds{{database="{_label(db.alias)}"}} '
            f"{db.duration_seconds:.6f}"
        )
    out += [
        "# HELP tenant_indexes_indexes Declared tenant indexes by state.",
        "# TYPE tenant_indexes_indexes gauge",
    ]
    for db in report.databases:
        if db.error:
            continue
        for state in IndexState:
            count = sum(
                1 for ix in report.indexes if ix.database == db.alias and ix.status is state
            )
            out.append(
                f'tenant_indexes_indexes{{database="{_label(db.alias)}",status="{state.value}"}} '
                f"{count}"
            )
    out += [
        "# HELP tenant_indexes_findings Findings by id.",
        "# TYPE tenant_indexes_findings gauge",
    ]
    counts: dict[tuple[str, str, str], int] = {}
    for f in report.findings:
        key = (f.database, f.id, f.level.value)
        counts[key] = counts.get(key, 0) + 1
    for (database, finding_id, level), count in sorted(counts.items()):
        out.append(
            f'tenant_indexes_findings{{database="{_label(database)}",id="{_label(finding_id)}",'
            f'level="{level}"}} {count}'
        )
    return "\n".join(out) + "\n"
