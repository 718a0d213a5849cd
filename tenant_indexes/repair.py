"""Repair of declared tenant indexes: create the missing ones, rebuild the INVALID ones.

:func:`plan_repairs` compares what the models declare (:mod:`tenant_indexes.declared`) with
one catalog snapshot per database (the same comparison as ``check_tenant_indexes``) and
returns one :class:`RepairAction` per declared tenant index, with the exact SQL a repair
runs. :func:`run_repairs` carries them out through
:func:`~tenant_indexes.build.build_index_concurrently`: concurrently, with bounded lock
waits, the advisory lock, and verification that the result is valid. Neither prints.

Indexes declared in ``Meta.indexes`` are built here, and so are unique constraints that
include the tenant (a faked migration skips them): ``CREATE UNIQUE INDEX CONCURRENTLY``, then
``ADD CONSTRAINT ... UNIQUE USING INDEX``, re-runnable after either step. An index that
backs a field's ``db_index`` belongs to its migration. A drifted index (valid, other
definition) is reported and left alone, as the migration operation does.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast

from django.apps import apps
from django.db import DatabaseError, connections

from . import partitionplan, partitions
from .build import build_index_concurrently, build_settings, create_index_sql, drop_index_sql
from .buildcontrol import BUILD_LOCK_NAMESPACE, lock_holder
from .compare import index_reports
from .conf import get_config
from .exceptions import BuildRefusedError, IndexBuildError, SchemaNotFound
from .findings import IndexState
from .health import snapshot_for
from .progress import BuildOutput
from .reports import IndexReport
from .targeting import resolve_databases, search_path_of, tenant_tables_for
from .uniquebuild import (
    add_unique_constraint_concurrently,
    attach_constraint_sql,
    unique_index_sql,
    uses_index_then_constraint,
)

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper


class RepairKind(enum.StrEnum):
    """What a repair does with one declared index."""

    NOTHING = "nothing"  # ok
    CREATE = "create"  # missing: build it
    REBUILD = "rebuild"  # INVALID: drop it, build it
    WAIT = "wait"  # another tenant_indexes run is building it: wait for it, then adopt
    CANNOT = "cannot"  # drift, building, no table, not an index of Meta.indexes


@dataclass(frozen=True)
class RepairAction:
    """The repair of one declared tenant index on one database.

    Attributes:
        database: the alias.
        table: the table.
        index: the index name.
        state: the index's state before the repair.
        kind: what the repair does.
        statements: the SQL it runs, in order (empty unless it creates or rebuilds).
        reason: why nothing can be done, for :attr:`RepairKind.CANNOT`.
        model: the model label.
        schema: the checked schema the table is in (``CHECK_SCHEMAS``, django-tenants);
            ``None`` when the table is found on the search_path. The build runs with this
            schema first on its search_path, and the SQL names it.
    """

    database: str
    table: str
    index: str
    state: IndexState
    kind: RepairKind
    statements: tuple[str, ...] = ()
    reason: str = ""
    model: str = ""
    schema: str | None = None


@dataclass(frozen=True)
class RepairResult:
    """What became of one :class:`RepairAction` that was run."""

    action: RepairAction
    done: bool
    detail: str


def _declared_index(model_label: str, name: str) -> tuple[Any, Any] | None:
    model = apps.get_model(model_label)
    for index in model._meta.indexes:
        if index.name == name:
            return model, index
    return None


class _ActionSubject(TypedDict):
    """What every :class:`RepairAction` of one index shares."""

    database: str
    table: str
    index: str
    state: IndexState
    model: str
    schema: str | None


def _built_by_us(report: IndexReport) -> bool:
    """Whether the running build of the index holds this app's build lock."""
    if report.schema is None or _declared_index(report.model, report.name) is None:
        return False
    key = f"{report.schema}.{report.name}"
    holder = lock_holder(connections[report.database], BUILD_LOCK_NAMESPACE, key)
    return holder is not None


def action_for(report: IndexReport, scoped: bool = False, exists: bool = True) -> RepairAction:
    """What ``repair_tenant_indexes`` would do about ``report``: its statements, or why none.

    The admin dashboard shows the same plan, so the page and ``--dry-run`` never disagree.
    """
    base: _ActionSubject = {
        "database": report.database,
        "table": report.table,
        "index": report.name,
        "state": report.status,
        "model": report.model,
        "schema": report.schema if scoped else None,
    }
    constraint_action = unique_constraint_action(report, base, exists)
    if constraint_action is not None:
        return constraint_action
    if report.status == IndexState.OK:
        return RepairAction(kind=RepairKind.NOTHING, **base)
    if report.status == IndexState.DRIFT:
        reason = "a valid index with another definition: drop or rename it, or fix the model"
        return RepairAction(kind=RepairKind.CANNOT, reason=reason, **base)
    if report.status == IndexState.BUILDING and _built_by_us(report):
        reason = "another migrate or repair is building it: waiting for it to finish"
        return RepairAction(kind=RepairKind.WAIT, reason=reason, **base)
    if report.status == IndexState.BUILDING:
        reason = "a build of it is running right now"
        return RepairAction(kind=RepairKind.CANNOT, reason=reason, **base)
    if report.schema is None or not exists:
        reason = f'table "{report.table}" does not exist: run migrate'
        return RepairAction(kind=RepairKind.CANNOT, reason=reason, **base)
    declared = _declared_index(report.model, report.name)
    if declared is None:
        reason = "it backs a constraint or db_index=True: its migration creates it"
        return RepairAction(kind=RepairKind.CANNOT, reason=reason, **base)
    model, index = declared
    # Only PostgreSQL aliases have index reports: catalog_snapshot() refuses the others.
    connection = cast("PostgreSQLWrapper", connections[report.database])
    with connection.schema_editor(atomic=False) as editor:
        statements = _session_sql(connection, editor)
        if partitions.is_partitioned(connection, report.table, report.schema):
            # Never CONCURRENTLY on the parent (PostgreSQL refuses it): the build's own plan,
            # ON ONLY, then each partition not yet attached concurrently (or adopted), attached.
            statements.extend(
                partitionplan.partitioned_index_sql(editor, model, index, report.schema)
            )
        else:
            if report.status == IndexState.INVALID:
                statements.append(drop_index_sql(report.schema, report.name))
            statements.append(create_index_sql(editor, model, index, base["schema"]))
    kind = RepairKind.REBUILD if report.status == IndexState.INVALID else RepairKind.CREATE
    return RepairAction(kind=kind, statements=tuple(statements), **base)


def plan_repairs(
    databases: Sequence[str] | None = None, app_labels: Sequence[str] | None = None
) -> tuple[RepairAction, ...]:
    """One :class:`RepairAction` per declared tenant index on each database.

    Args:
        databases: aliases (default: every PostgreSQL alias that tenant models migrate to).
        app_labels: only these apps' models (default: all).

    Raises:
        CatalogUnavailable: a database is not PostgreSQL, unreachable, or timed out.
        UnknownDatabaseAlias: an alias is not in ``settings.DATABASES``.
        UnknownAppLabel: an app label is not installed.
        SchemaNotFound: a checked schema does not exist.
    """
    actions: list[RepairAction] = []
    for alias in resolve_databases(databases, app_labels):
        tables = tenant_tables_for(alias, app_labels)
        snapshot = snapshot_for(alias, tables)
        if snapshot.missing_schemas:
            raise SchemaNotFound(
                f"database {alias!r}: schema(s) {', '.join(snapshot.missing_schemas)} of "
                "TENANT_INDEXES['CHECK_SCHEMAS'] do not exist"
            )
        scoped = any(t.schema is not None for t in tables)
        present = {(t.schema, t.name) for t in snapshot.tables}
        actions.extend(
            action_for(report, scoped, (report.schema, report.table) in present)
            for report in index_reports(tables, snapshot)
        )
    return tuple(actions)


def needs_work(action: RepairAction) -> bool:
    """The action creates or rebuilds an index."""
    return action.kind in (RepairKind.CREATE, RepairKind.REBUILD, RepairKind.WAIT)


def still_unhealthy(
    actions: Sequence[RepairAction], results: Sequence[RepairResult] | None = None
) -> int:
    """How many declared indexes need repair (``results`` is ``None``: a dry run) or are
    still unhealthy after the repair (the ones it cannot fix, and the failed builds)."""
    blocked = sum(a.kind == RepairKind.CANNOT for a in actions)
    if results is None:
        return blocked + sum(needs_work(a) for a in actions)
    return blocked + sum(not r.done for r in results)


def _ended_valid(action: RepairAction) -> bool:
    """Whether the index of ``action`` is there and OK now, by the check's own comparison."""
    try:
        connections[action.database].close()  # a failed build may have left it unusable
        tables = [t for t in tenant_tables_for(action.database, None) if t.table == action.table]
        snapshot = snapshot_for(action.database, tables)
        return any(
            r.name == action.index and r.status == IndexState.OK
            for r in index_reports(tables, snapshot)
        )
    except Exception:
        return False


def run_repairs(
    actions: Sequence[RepairAction],
    output: BuildOutput | None = None,
    jobs: int = 1,
    on_done: Callable[[RepairResult, int, int], None] | None = None,
) -> tuple[RepairResult, ...]:
    """Carry out the CREATE and REBUILD actions.

    The actions are grouped by database and schema; ``jobs`` groups are worked on at once,
    each in its own thread with its own connection, and within a group one index is built
    at a time, so no more than ``jobs`` concurrent builds ever run. A failure (a lock wait
    that ran out of retries, a build that did not end valid) is recorded in its result and
    the next index is tried. A repair that is killed leaves at most ``jobs`` INVALID
    indexes, which the next run rebuilds: it plans from the catalog again.

    Args:
        actions: from :func:`plan_repairs`.
        output: where a single build's progress goes (``jobs`` 1 only: interleaved bars of
            several builds would be unreadable).
        jobs: how many schemas (or databases) to build in at once.
        on_done: called after each index with its result, how many are done, and the total.
    """
    work = [a for a in actions if needs_work(a)]
    groups: dict[tuple[str, str | None], list[RepairAction]] = {}
    for action in work:
        groups.setdefault((action.database, action.schema), []).append(action)
    results: list[RepairResult] = []
    lock = threading.Lock()

    def build_group(group: list[RepairAction], in_thread: bool) -> None:
        database, schema = group[0].database, group[0].schema
        try:
            with search_path_of(connections[database], schema):
                for action in group:
                    result = _run_one(action, output if not in_thread else None)
                    with lock:
                        results.append(result)
                        if on_done is not None:
                            on_done(result, len(results), len(work))
        finally:
            if in_thread:
                connections[database].close()

    if jobs <= 1 or len(groups) <= 1:
        for group in groups.values():
            build_group(group, in_thread=False)
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="repair") as pool:
            for future in [pool.submit(build_group, g, True) for g in groups.values()]:
                future.result()
    order = {id(a): n for n, a in enumerate(work)}
    return tuple(sorted(results, key=lambda r: order[id(r.action)]))


def _run_one(action: RepairAction, output: BuildOutput | None) -> RepairResult:
    if _declared_constraint(action) is not None:
        return run_unique_constraint(action)
    model, index = _declared_index(action.model, action.index)  # type: ignore[misc]
    try:
        with connections[action.database].schema_editor(atomic=False) as editor:
            outcome = build_index_concurrently(editor, model, index, output=output)
    except BuildRefusedError:
        raise  # the whole database cannot be repaired here: exit 2
    except (IndexBuildError, DatabaseError) as e:
        if _ended_valid(action):
            # Lost a race to another builder that finished it: healthy is healthy.
            return RepairResult(action, done=True, detail="valid (built elsewhere)")
        return RepairResult(action, done=False, detail=str(e).strip())
    return RepairResult(action, done=True, detail=outcome.value)


def _declared_constraint(report: IndexReport | RepairAction) -> tuple[Any, Any] | None:
    """The model and the unique constraint called like the report's index, if the model
    declares one that is attached ``USING INDEX`` (a plain unique constraint on fields)."""
    name = report.name if isinstance(report, IndexReport) else report.index
    model = apps.get_model(report.model)
    for constraint in model._meta.constraints:
        if constraint.name == name and uses_index_then_constraint(constraint):
            return model, constraint
    return None


def _session_sql(connection: Any, editor: Any) -> list[str]:
    """The ``SET`` statements of the session a build runs with (:func:`build_settings`),
    for the printed SQL of a repair."""
    session = build_settings(get_config())
    if connection.pg_version < 140000:  # no client_connection_check_interval before 14
        session.pop("client_connection_check_interval", None)
    # Setting names are fixed identifiers; values are quoted as SQL literals.
    return [f"SET {name} = {editor.quote_value(value)}" for name, value in session.items()]


def unique_constraint_action(
    report: IndexReport, base: _ActionSubject, exists: bool
) -> RepairAction | None:
    """The repair of a declared unique constraint whose migration was faked, or ``None``
    when ``report`` is not one (or when the constraint is there, or cannot be repaired).

    Missing: its unique index concurrently, then the constraint ``USING INDEX``. INVALID
    (e.g. a unique build over duplicate rows): dropped first. Valid but not attached to a
    constraint (a run stopped between the two steps): only the constraint.
    """
    declared = _declared_constraint(report)
    if declared is None or report.schema is None or not exists:
        return None
    if report.status not in (IndexState.OK, IndexState.MISSING, IndexState.INVALID):
        return None
    if report.status == IndexState.OK and (report.live is None or report.live.constraint):
        return None
    model, constraint = declared
    connection = cast("PostgreSQLWrapper", connections[report.database])
    with connection.schema_editor(atomic=False) as editor:
        statements = _session_sql(connection, editor) if report.status != IndexState.OK else []
        if report.status == IndexState.INVALID:
            statements.append(drop_index_sql(report.schema, report.name))
        if report.status != IndexState.OK:
            statements.append(unique_index_sql(editor, model, constraint, base["schema"]))
        statements.append(attach_constraint_sql(editor, model, constraint.name, base["schema"]))
    kind = RepairKind.REBUILD if report.status == IndexState.INVALID else RepairKind.CREATE
    return RepairAction(kind=kind, statements=tuple(statements), **base)


def run_unique_constraint(action: RepairAction) -> RepairResult:
    """Carry out a :func:`unique_constraint_action` through the migration operation's own
    :func:`~tenant_indexes.uniquebuild.add_unique_constraint_concurrently`."""
    model, constraint = _declared_constraint(action)  # type: ignore[misc]
    try:
        with connections[action.database].schema_editor(atomic=False) as editor:
            add_unique_constraint_concurrently(editor, model, constraint)
    except BuildRefusedError:
        raise
    except (IndexBuildError, DatabaseError) as e:
        return RepairResult(action, done=False, detail=str(e).strip())
    return RepairResult(action, done=True, detail="constraint built")
