"""A :class:`~tenant_indexes.reports.HealthReport` as text, JSON or Prometheus exposition.

Machine formats carry no colour; text is coloured through a Django ``Style`` (the command's
``self.style``, which ``--no-color`` turns off).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.core.management.color import no_style

from .findings import IndexState, Level
from .repair import RepairKind
from .reports import HealthReport

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


def _column_widths(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]


def _findings_and_status_lines(report: Any, style: Any) -> list[str]:
    """The findings with their hints, then the status line: the end of every text report."""
    lines: list[str] = []
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
    return lines


def render_text(report: HealthReport, style: Any = None) -> str:
    """A readable table of databases, indexes and findings.

    Args:
        report: the report.
        style: a Django ``Style`` (``self.style`` in a command); ``None`` for no colour.

    Returns:
        The text, ending with a newline.
    """
    style = style or no_style()
    lines = _database_lines(style, report.databases, "check", _checked_line)
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
        widths = _column_widths(headers, rows)
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
    lines.extend(_findings_and_status_lines(report, style))
    return "\n".join(lines) + "\n"


def render_json(report: HealthReport) -> str:
    """The ``--format json`` document: one object on one line, keys in a stable order.

    Compact on purpose: ``indent`` switches ``json`` to its pure-Python encoder, which takes
    longer than the whole catalog pass at thousands of indexes. Pipe to ``jq`` to read it.
    The same text as ``json.dumps(report.as_dict())``; :func:`json_document_parts` gives it
    in parts.
    """
    return "".join(json_document_parts(report))


#: Indexes or findings per part of :func:`json_document_parts`.
JSON_PART_ITEMS = 1000


def json_document_parts(report: HealthReport) -> Iterator[str]:
    """:func:`render_json`'s text in parts, to be written as they come: the dictionaries of
    at most :data:`JSON_PART_ITEMS` indexes or findings exist at once, and never the whole
    text (tens of megabytes at thousands of schemas)."""
    dumps = json.dumps
    yield '{"status": ' + dumps(report.status)
    yield ', "databases": ' + dumps([d.as_dict() for d in report.databases])
    for key, items in (("indexes", report.indexes), ("findings", report.findings)):
        yield f', "{key}": ['
        for start in range(0, len(items), JSON_PART_ITEMS):
            part = dumps([item.as_dict() for item in items[start : start + JSON_PART_ITEMS]])
            yield (", " if start else "") + part[1:-1]
        yield "]"
    yield "}\n"


_STATUS_CODE = {"ok": 0, "warning": 1, "error": 2, "unknown": 3}


def _label(value: str) -> str:
    # Exposition format escaping for label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_status_gauge(status: str) -> str:
    """Only the overall ``tenant_indexes_status`` gauge, e.g. for a probe that did not finish.

    Args:
        status: ``ok``, ``warning``, ``error`` or ``unknown``.

    Returns:
        The gauge's exposition lines, ending with a newline.
    """
    return "\n".join(_status_gauge(status)) + "\n"


def _status_gauge(status: str) -> list[str]:
    return [
        "# HELP tenant_indexes_status Overall result: 0 ok, 1 warning, 2 error, 3 unknown.",
        "# TYPE tenant_indexes_status gauge",
        f"tenant_indexes_status {_STATUS_CODE.get(status, 3)}",
    ]


def _gauge(
    metric: str, help_text: str, samples: Iterable[tuple[dict[str, str], object]]
) -> list[str]:
    """One gauge: its HELP and TYPE lines, then one line per ``(labels, value)``."""
    lines = [f"# HELP tenant_indexes_{metric} {help_text}", f"# TYPE tenant_indexes_{metric} gauge"]
    for labels, value in samples:
        text = ",".join(f'{name}="{_label(label)}"' for name, label in labels.items())
        lines.append(f"tenant_indexes_{metric}{{{text}}} {value}")
    return lines


def _findings_gauges(findings: Any) -> list[str]:
    """``tenant_indexes_findings{database,id,level}``: how many findings of each id."""
    counts: dict[tuple[str, str, str], int] = {}
    for f in findings:
        key = (f.database, f.id, f.level.value)
        counts[key] = counts.get(key, 0) + 1
    return _gauge(
        "findings",
        "Findings by id.",
        (
            ({"database": database, "id": finding_id, "level": level}, count)
            for (database, finding_id, level), count in sorted(counts.items())
        ),
    )


def render_prometheus(report: HealthReport) -> str:
    """Prometheus text exposition: a handful of gauges, labelled by database, never tenant.

    Gauges: ``tenant_indexes_status`` (0 ok, 1 warning, 2 error, 3 unknown),
    ``tenant_indexes_database_up``, ``tenant_indexes_check_duration_seconds``,
    ``tenant_indexes_indexes{status}`` (every state, zeros included, so alerts can use
    ``> 0``) and ``tenant_indexes_findings{id}``.
    """
    databases = report.databases
    out = [
        *_status_gauge(report.status),
        *_gauge(
            "database_up",
            "1 when the database could be checked.",
            (({"database": db.alias}, int(not db.error)) for db in databases),
        ),
        *_gauge(
            "check_duration_seconds",
            "Time the check of the database took.",
            (({"database": db.alias}, f"{db.duration_seconds:.6f}") for db in databases),
        ),
        *_gauge(
            "indexes",
            "Declared tenant indexes by state.",
            (
                (
                    {"database": db.alias, "status": state.value},
                    sum(
                        1 for ix in report.indexes if ix.database == db.alias and ix.status is state
                    ),
                )
                for db in databases
                if not db.error
                for state in IndexState
            ),
        ),
    ]
    out += _findings_gauges(report.findings)
    return "\n".join(out) + "\n"


# The usage report of tenant_index_stats.


def human_size(size_bytes: int, byte_unit: str = "B") -> str:
    """``size_bytes`` in the largest of bytes, kB, MB and GB that keeps it under 1024."""
    value = float(size_bytes)
    for unit in (byte_unit, "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == byte_unit else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size_bytes} {byte_unit}"  # pragma: no cover


def _database_lines(
    style: Any, databases: Sequence[Any], verb: str, describe: Callable[[Any], str]
) -> list[str]:
    """A line per database: ``describe(db)``, or in red why it could not be read."""
    return [
        _paint(style, "ERROR", f"{db.alias}: could not {verb}: {db.error}")
        if db.error
        else describe(db)
        for db in databases
    ]


def _checked_line(db: Any) -> str:
    return (
        f"{db.alias}: {db.vendor} {db.server_version}, {db.tables} tenant table(s) "
        f"checked in {db.duration_seconds * 1000:.0f} ms"
    )


def _read_line(db: Any) -> str:
    return f"{db.alias}: {db.vendor} {db.server_version}, {db.tables} table(s)"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = _column_widths(headers, rows)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def render_usage_text(report: Any, style: Any = None) -> str:
    """A :class:`~tenant_indexes.usage.UsageReport` (``report``) as readable tables, coloured
    with a Django ``Style`` when ``style`` is given; the text ends with a newline."""
    style = style or no_style()
    lines = _database_lines(style, report.databases, "read", _read_line)
    for age in report.statistics:
        days = age.age.total_seconds() / 86400
        young = age.age < report.stats_min_age
        text = (
            f"statistics of {age.alias}: {days:.1f} days old (since {age.since:%Y-%m-%d %H:%M} "
            f"UTC, {age.source})"
        )
        if young:
            text += " - too young to judge unused indexes"
        lines.append(_paint(style, "WARNING", text) if young else text)
    if report.indexes:
        lines.append("")
        rows = [
            (
                f"{s.index.schema}.{s.index.table}",
                s.index.name,
                human_size(s.index.known_size_bytes),
                str(s.idx_scan),
                str(s.idx_tup_read),
                str(s.idx_tup_fetch),
                s.as_dict()["last_idx_scan"] or "never",
                s.unused.value
                + (
                    f"; redundant (kept: {s.redundancy_kept}) to {s.redundant_to}"
                    if s.redundant_to and s.redundancy_kept
                    else (f"; redundant to {s.redundant_to}" if s.redundant_to else "")
                ),
            )
            for s in report.indexes
        ]
        headers = ("TABLE", "INDEX", "SIZE", "SCANS", "TUP_READ", "TUP_FETCH", "LAST_SCAN", "USE")
        table = _table(headers, rows)
        lines.append(_paint(style, "MIGRATE_HEADING", table[0]))
        lines.extend(table[1:])
        lines.extend(f"  {s.index.name}: {s.drop_hint}" for s in report.indexes if s.drop_hint)
    if report.tables:
        lines.append("")
        table_rows: list[tuple[str, ...]] = []
        for t in report.tables:
            share = t.seq_scan_share
            plan = ""
            if t.plan is not None:
                plan = (
                    "no rows"
                    if t.plan.tenant is None
                    else ", ".join(t.plan.index_names) or " > ".join(t.plan.node_types)
                )
                big = t.largest_plan
                if big is not None and big.tenant is not None:
                    part = f" {big.tenant_share:.0%}" if big.tenant_share is not None else ""
                    big_plan = ", ".join(big.index_names) or " > ".join(big.node_types)
                    plan = f"typical: {plan}; largest ({big.tenant}{part}): {big_plan}"
            table_rows.append(
                (
                    f"{t.schema}.{t.table}",
                    str(t.n_live_tup),
                    human_size(t.total_bytes),
                    str(t.seq_scan),
                    str(t.idx_scan),
                    f"{share:.0%}" if share is not None else "-",
                    plan,
                )
            )
        table_headers = ("TABLE", "LIVE_ROWS", "SIZE", "SEQ_SCAN", "IDX_SCAN", "SEQ%", "PLAN")
        table = _table(table_headers, table_rows)
        lines.append(_paint(style, "MIGRATE_HEADING", table[0]))
        lines.extend(table[1:])
    if report.history is not None:
        lines.append("")
        lines.append(f"recorded history, last {report.history_days:g} days:")
        if not report.history:
            lines.append("  no snapshots recorded (tenant_index_stats --record)")
        history_rows = [
            (
                f"{h.schema}.{h.table}",
                h.name,
                str(h.idx_scan),
                str(h.idx_tup_read),
                f"{h.covered.total_seconds() / 86400:.1f}",
                str(h.segments),
                "-"
                if h.size_growth_per_day is None
                else f"{human_size(int(h.size_growth_per_day))}/day",
            )
            for h in report.history
        ]
        if history_rows:
            history_headers = ("TABLE", "INDEX", "SCANS", "TUP_READ", "DAYS", "SEGMENTS", "GROWTH")
            table = _table(history_headers, history_rows)
            lines.append(_paint(style, "MIGRATE_HEADING", table[0]))
            lines.extend(table[1:])
    lines.extend(_findings_and_status_lines(report, style))
    return "\n".join(lines) + "\n"


def render_usage_prometheus(report: Any) -> str:
    """Usage gauges per index and per table (labelled by database, table, index; no tenant).

    Gauges: ``tenant_indexes_status``, ``tenant_indexes_index_scans``,
    ``tenant_indexes_index_size_bytes``, ``tenant_indexes_table_seq_scans``,
    ``tenant_indexes_table_idx_scans``, ``tenant_indexes_statistics_age_seconds`` and
    ``tenant_indexes_findings{id}``.
    """
    out = [
        *_status_gauge(report.status),
        *_gauge(
            "statistics_age_seconds",
            "Age of the statistics per database.",
            (({"database": age.alias}, int(age.age.total_seconds())) for age in report.statistics),
        ),
    ]
    for metric, help_text, value in (
        ("index_scans", "Index scans summed over the databases.", lambda s: s.idx_scan),
        ("index_size_bytes", "Index size on disk.", lambda s: s.index.known_size_bytes),
    ):
        out += _gauge(
            metric,
            help_text,
            (
                (
                    {"schema": s.index.schema, "table": s.index.table, "index": s.index.name},
                    value(s),
                )
                for s in report.indexes
            ),
        )
    for metric, help_text, value in (
        ("table_seq_scans", "Sequential scans summed over the databases.", lambda t: t.seq_scan),
        ("table_idx_scans", "Index scans summed over the databases.", lambda t: t.idx_scan),
    ):
        out += _gauge(
            metric,
            help_text,
            (({"schema": t.schema, "table": t.table}, value(t)) for t in report.tables),
        )
    out += _findings_gauges(report.findings)
    return "\n".join(out) + "\n"


def render_usage_json(report: Any) -> str:
    """A :class:`~tenant_indexes.usage.UsageReport` as one indented JSON document."""
    return json.dumps(report.as_dict(), indent=2, default=str) + "\n"


# The repair of repair_tenant_indexes.


def render_repair_sql(actions: Sequence[Any]) -> str:
    """The SQL a repair would run, per index, as ``--dry-run`` prints it (safe for psql)."""
    lines: list[str] = []
    for action in actions:
        if action.kind in (RepairKind.CREATE, RepairKind.REBUILD):
            where = f"{action.schema}." if action.schema else ""
            # A comment ends at a line break: a name with one must not end it early.
            comment = " ".join(
                f"{action.database}: {action.kind} {where}{action.index}".splitlines()
            )
            lines.append(f"-- {comment}")
            lines.extend(f"{statement};" for statement in action.statements)
    return "".join(line + "\n" for line in lines)


def render_action_name(action: Any) -> str:
    """``alias: schema.index`` (the schema only where one was checked)."""
    where = f"{action.schema}." if action.schema else ""
    return f"{action.database}: {where}{action.index}"


def render_not_repaired(actions: Sequence[Any]) -> list[str]:
    """One line per declared index the repair cannot fix, with the reason."""
    return [
        f"{a.database}: {a.index} on {a.schema + '.' if a.schema else ''}{a.table} is "
        f"{a.state}, not repaired: {a.reason}"
        for a in actions
        if a.kind == RepairKind.CANNOT
    ]
