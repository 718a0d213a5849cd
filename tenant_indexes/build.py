"""The safe concurrent build: ``CREATE INDEX CONCURRENTLY`` that is safe to run and re-run.

:func:`build_index_concurrently` makes the build safe on a busy production database:

- a valid index with the declared name and definition is *adopted* (no-op, logged); a valid
  one with another definition stops the build with :class:`IndexDefinitionMismatchError`;
- an INVALID index of that name (a killed or cancelled build) and the ``_ccnew``/``_ccold``
  leftovers of an interrupted ``REINDEX CONCURRENTLY`` are dropped concurrently, then the
  index is built again and checked to be valid;
- every lock wait is bounded by ``lock_timeout`` and retried with backoff; giving up names
  the blocking session; ``statement_timeout`` is off for the build; the session's settings
  are restored afterwards, also on failure;
- a session advisory lock per index keeps two ``migrate`` runs from building it at once;
- progress (phase, percent) comes from ``pg_stat_progress_create_index``
  (:mod:`tenant_indexes.progress`);
- PostgreSQL 14.0 to 14.3, whose concurrent builds can corrupt indexes, are refused.

The declared and the found definitions are compared by the check's own comparison
(:func:`tenant_indexes.compare.definition_differences`). Every identifier in the statements
is quoted by :func:`tenant_indexes.sql.quote_identifier`.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any

from django.db import DatabaseError, OperationalError

from . import buildcontrol
from .catalog import CatalogIndex
from .compare import definition_differences
from .conf import get_config
from .declared import declared_index
from .exceptions import (
    BuildInterruptedError,
    BuildRefusedError,
    IndexBuildError,
    IndexDefinitionMismatchError,
    LockWaitTimeoutError,
    UnsafeServerVersionError,
)
from .normalise import normalise_definitions, request_for
from .progress import BuildMonitor, BuildOutput, progress_reporter
from .reads import first_error_line
from .sessions import ensure_own_session, interruptible_statements
from .sql import qualified_name, quoting_by_our_rule, split_db_table, table_name

logger = logging.getLogger(__name__)

# The run-time settings a build changes; their previous values are restored afterwards.
_BUILD_SETTINGS = ("lock_timeout", "statement_timeout", "client_connection_check_interval")


def ensure_concurrent_builds_supported(server_version_num: int, *, allow_pg14_bug: bool) -> None:
    """Refuse concurrent builds on PostgreSQL 14.0 to 14.3.

    Those releases can build a corrupt index with ``CREATE INDEX CONCURRENTLY`` or
    ``REINDEX CONCURRENTLY`` (rows updated during the build may be missing from it); 14.4
    fixed it.

    Args:
        server_version_num: ``server_version_num`` of the server (``140003`` for 14.3).
        allow_pg14_bug: the ``ALLOW_CONCURRENT_BUILDS_ON_PG14_BEFORE_14_4`` setting.

    Raises:
        UnsafeServerVersionError: on 14.0 to 14.3 unless allowed.
    """
    if 140000 <= server_version_num < 140004 and not allow_pg14_bug:
        minor = server_version_num % 100
        raise UnsafeServerVersionError(
            f"Refusing to build an index concurrently on PostgreSQL 14.{minor}: concurrent "
            "builds on 14.0-14.3 can produce corrupt indexes (fixed in 14.4). Upgrade to "
            "14.4 or later, or set TENANT_INDEXES['ALLOW_CONCURRENT_BUILDS_ON_PG14_BEFORE_14_4']"
            " = True at your own risk and REINDEX after upgrading."
        )


class BuildOutcome(enum.Enum):
    """What :func:`build_index_concurrently` did."""

    ADOPTED = "adopted"  # a valid index with the declared definition was already there
    BUILT = "built"  # it was missing and is now built and valid
    REBUILT = "rebuilt"  # an INVALID one (and leftovers) was dropped, then built


def _is_lock_timeout(error: BaseException) -> bool:
    return buildcontrol.sqlstate(error) == buildcontrol.LOCK_NOT_AVAILABLE


def drop_index_sql(schema: str, name: str) -> str:
    """``DROP INDEX CONCURRENTLY IF EXISTS "schema"."name"``."""
    return f"DROP INDEX CONCURRENTLY IF EXISTS {qualified_name(schema, name)}"


class _QualifiedTable:
    """The ``table`` part of Django's index ``Statement``, qualified by its schema."""

    def __init__(self, schema: str, table: str):
        self.schema, self.table = schema, table

    def references_table(self, table: str) -> bool:
        return table == self.table

    def __str__(self) -> str:
        return qualified_name(self.schema, self.table)


def create_index_sql(schema_editor: Any, model: Any, index: Any, schema: str | None = None) -> str:
    """The ``CREATE INDEX CONCURRENTLY`` statement Django generates for ``index``, with
    every identifier quoted by :func:`tenant_indexes.sql.quote_identifier`; the table is
    qualified by ``schema``, else by the one its ``db_table`` names (``"schema"."table"``)."""
    own_schema, table = split_db_table(model._meta.db_table)
    schema = own_schema if schema is None else schema
    with quoting_by_our_rule(schema_editor):
        statement = index.create_sql(model, schema_editor, concurrently=True)
        if schema is not None:
            statement.parts["table"] = _QualifiedTable(schema, table)
        return str(statement)


def build_settings(config: dict[str, Any]) -> dict[str, str]:
    """The session settings a build runs with (see :data:`_BUILD_SETTINGS`)."""
    values = {"lock_timeout": str(config["BUILD_LOCK_TIMEOUT"]), "statement_timeout": "0"}
    if config["BUILD_CLIENT_CHECK_INTERVAL"]:
        values["client_connection_check_interval"] = str(config["BUILD_CLIENT_CHECK_INTERVAL"])
    return values


class _SafeBuild:
    """One call of :func:`build_index_concurrently`; holds what a retry needs."""

    def __init__(self, schema_editor: Any, model: Any, index: Any, output: BuildOutput | None):
        self.schema_editor = schema_editor
        self.connection = schema_editor.connection
        self.model = model
        self.index = index
        self.output = output
        self.config = get_config()
        self.db_table = model._meta.db_table  # maybe "schema"."table": for the lookups
        self.table = table_name(self.db_table)
        self.schema = "public"
        self.started_at: Any = None
        self.last_blocker: buildcontrol.BlockingSession | None = None
        self.dropped_invalid = False
        self.session: Any = None

    # -- helpers --

    def _say(self, message: str, *args: Any) -> None:
        logger.info(message, *args)
        if self.output is not None and self.output.verbosity >= 1:
            self.output.write("    " + (message % args))

    def _execute(self, sql: str) -> None:
        self.schema_editor.execute(sql, params=None)

    def _lookup(self) -> tuple[CatalogIndex | None, list[CatalogIndex]]:
        found = buildcontrol.index_and_leftovers(self.connection, self.db_table, self.index.name)
        main = next((f for f in found if f.name == self.index.name), None)
        return main, [f for f in found if f.name != self.index.name]

    # -- the steps --

    def run(self) -> BuildOutcome:
        ensure_concurrent_builds_supported(
            self.connection.pg_version,
            allow_pg14_bug=self.config["ALLOW_CONCURRENT_BUILDS_ON_PG14_BEFORE_14_4"],
        )
        try:
            return self._run()
        except (IndexBuildError, KeyboardInterrupt, SystemExit):
            raise
        except DatabaseError as error:
            raise BuildInterruptedError(self._failure_line(error)) from error

    def _failure_line(self, error: BaseException) -> str:
        cause = error.__cause__ or error
        code = buildcontrol.sqlstate(error)
        what = {
            "40P01": "a deadlock was detected (the server cancelled the build)",
            "57014": "the statement was cancelled (statement_timeout, or a cancel request)",
            "57P01": "the server terminated the build's connection",
            "57P02": "the server is shutting down",
            "57P03": "the server is shutting down",
            "25006": "the server is read-only: run against the primary",
        }.get(code or "")
        gone = self.connection.connection is None or not self.connection.is_usable()
        if what is None:
            what = "the connection to the server was lost" if gone else "the server refused it"
        return (
            f'Building index "{self.index.name}" on "{self.table}" failed: {what}: '
            f"{first_error_line(cause)}. Run migrate (or repair_tenant_indexes) again: it drops "
            "what an interrupted build left and builds the index again."
        )

    def _run(self) -> BuildOutcome:
        if buildcontrol.in_recovery(self.connection):
            raise BuildRefusedError(
                f'Cannot build index "{self.index.name}": read-only: run against the primary '
                f'(database alias "{self.connection.alias}" is a hot standby).'
            )
        self.session = ensure_own_session(self.connection)
        schema = buildcontrol.table_schema(self.connection, self.db_table)
        if schema is None:
            raise IndexBuildError(
                f'Cannot build index "{self.index.name}": table "{self.table}" does not exist.'
            )
        self.schema = schema
        previous = buildcontrol.session_settings(self.connection, _BUILD_SETTINGS)
        wanted = build_settings(self.config)
        # client_connection_check_interval exists from PostgreSQL 14 on.
        wanted = {k: v for k, v in wanted.items() if previous.get(k) is not None}
        restore = {k: value for k in wanted if (value := previous[k]) is not None}
        self.session.verify("setting the build's session settings")
        buildcontrol.set_session_settings(self.connection, wanted)
        held: list[tuple[str, str]] = []
        try:
            self._take_build_locks(held)
            retries = int(self.config["BUILD_LOCK_RETRIES"])
            attempt = 0
            while True:
                attempt += 1
                try:
                    self.session.verify("building")
                    return self._attempt()
                except OperationalError as error:
                    if not _is_lock_timeout(error):
                        raise
                    blocker_text = self._describe_blockers(True)
                    if attempt > retries:
                        leftover = self._clean_up_after_giving_up()
                        raise LockWaitTimeoutError(
                            f'Gave up building index "{self.index.name}" on "{self.table}" '
                            f"after {attempt} lock waits of {wanted['lock_timeout']} each: "
                            f"{blocker_text}.{leftover} End or wait for that session, then "
                            "run migrate (or repair_tenant_indexes) again."
                        ) from error
                    pause = buildcontrol.retry_pause(self.config, attempt)
                    logger.warning(
                        'Lock wait for index "%s" timed out (try %d of %d): %s; next try in %.1fs.',
                        self.index.name,
                        attempt,
                        retries + 1,
                        blocker_text,
                        pause,
                    )
                    time.sleep(pause)
        finally:
            self._restore(restore, held)

    @property
    def _qualified_name(self) -> str:
        return f"{self.schema}.{self.index.name}"

    def _take_build_locks(self, held: list[tuple[str, str]]) -> None:
        """The per-index, then the per-table advisory lock, polled from the client.

        ``pg_try_advisory_lock()`` never waits on the server, and between two tries the
        session is idle outside any transaction: a waiting builder holds no snapshot, so
        the ``CREATE INDEX CONCURRENTLY`` of the holder never waits for it. Always index
        before table, and the table lock's holder waits for no index lock: no cycle. The
        wait is bounded by ``BUILD_BUILDER_WAIT`` seconds.
        """
        wanted = [
            (buildcontrol.BUILD_LOCK_NAMESPACE, self._qualified_name),
            (buildcontrol.BUILD_TABLE_LOCK_NAMESPACE, f"{self.schema}.{self.table}"),
        ]
        bound = float(self.config["BUILD_BUILDER_WAIT"])
        deadline = time.monotonic() + bound
        for namespace, key in wanted:
            announced = False
            pause = 0.05
            while True:
                self.session.verify("taking the build lock")
                if buildcontrol.try_build_lock(self.connection, namespace, key):
                    held.append((namespace, key))
                    break
                holder = buildcontrol.lock_holder(self.connection, namespace, key)
                other = holder.describe() if holder else "a session that has ended since"
                what = "index" if namespace == buildcontrol.BUILD_LOCK_NAMESPACE else "table"
                if not announced:
                    self._say(
                        'waiting for another build on the %s "%s" (at most %.0fs): %s',
                        what,
                        key,
                        bound,
                        other,
                    )
                    announced = True
                if time.monotonic() >= deadline:
                    raise LockWaitTimeoutError(
                        f'Gave up building index "{self.index.name}" on "{self.table}" after '
                        f"waiting {bound:.0f}s (BUILD_BUILDER_WAIT) for another build on the "
                        f'{what} "{key}": {other}. Let it finish, then run again.'
                    )
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _restore(self, restore: dict[str, str], held: list[tuple[str, str]]) -> None:
        # After a terminated backend the connection is gone, and with it the session's
        # settings and advisory locks: nothing to restore, and the original error matters.
        if self.connection.connection is None or not self.connection.is_usable():
            logger.debug("connection gone after building %s: nothing to restore", self.index.name)
            return
        try:
            # Behind a pooler the settings and locks live on the session they were made in:
            # restore only there (SessionGuard.verify raises otherwise, and says so).
            if self.session is not None:
                self.session.verify("restoring the session")
            for namespace, key in reversed(held):
                buildcontrol.release_lock(self.connection, namespace, key)
            buildcontrol.set_session_settings(self.connection, restore)
        except Exception:
            logger.warning(
                "Could not restore the session after building %s", self.index.name, exc_info=True
            )

    def _attempt(self) -> BuildOutcome:
        main, leftovers = self._lookup()
        if main is not None and main.building:
            raise IndexBuildError(
                f'Index "{self.index.name}" is being built right now by pid {main.building_pid}'
                " (not through tenant_indexes). Wait for that build to end, then run again."
            )
        if main is not None and main.valid:
            differences = self._differences(main)
            if not differences:
                self._say(
                    'adopted the existing valid index "%s" on "%s" (same definition)',
                    self.index.name,
                    self.table,
                )
                self._drop_invalid(leftovers)
                return BuildOutcome.ADOPTED
            raise IndexDefinitionMismatchError(
                f'Index "{self.index.name}" already exists and is valid, but its definition '
                f"differs from the declared one.\n  in the database: {main.definition}\n"
                f"  declared:        {create_index_sql(self.schema_editor, self.model, self.index)}"
                f"\n  ({'; '.join(differences)}.) Drop or rename the existing index, or "
                "change the declaration; it is never kept or replaced silently."
            )
        invalid = ([main] if main is not None else []) + leftovers
        if invalid:
            self._drop_invalid(invalid)
            self.dropped_invalid = True
        self._build()
        main, _ = self._lookup()
        if main is None or not main.valid:
            raise IndexBuildError(
                f'CREATE INDEX CONCURRENTLY "{self.index.name}" returned but the index is '
                f"{'missing' if main is None else 'INVALID'}; run again to rebuild it."
            )
        return BuildOutcome.REBUILT if self.dropped_invalid else BuildOutcome.BUILT

    def _differences(self, main: CatalogIndex) -> list[str]:
        """What differs between the declared index and the valid one found, through the
        check's comparison (predicates and expressions normalised by the server)."""
        declared = declared_index(self.model, self.index, self.schema_editor)
        request = request_for(main, declared.condition, declared.key_expressions)
        normalised = None
        if request is not None:
            (normalised,) = normalise_definitions(self.connection, [request])
        return definition_differences(declared, main, self.table, normalised)

    def _drop_invalid(self, indexes: list[CatalogIndex]) -> None:
        for found in indexes:
            if found.valid:
                continue
            if found.building:
                continue  # a REINDEX CONCURRENTLY in progress owns it
            self._say('dropping the INVALID index "%s" concurrently', found.name)
            self._execute(drop_index_sql(found.schema, found.name))

    def _build(self) -> None:
        sql = create_index_sql(self.schema_editor, self.model, self.index)
        self.session.verify("CREATE INDEX CONCURRENTLY")
        build_pid = self.session.pid
        self.started_at = buildcontrol.server_clock(self.connection)
        reporter = progress_reporter(self.output, self.index.name, self.config)
        monitor = BuildMonitor(self.connection.alias, build_pid, reporter)
        monitor.start()
        began = time.monotonic()
        try:
            self._execute(sql)
        finally:
            monitor.stop()
            self.last_blocker = monitor.last_blocker or self.last_blocker
            if reporter is not None:
                reporter.close()
        self._say(
            'built index "%s" on "%s" concurrently in %.1fs',
            self.index.name,
            self.table,
            time.monotonic() - began,
        )

    def _describe_blockers(self, lock_held: bool) -> str:
        try:
            if not lock_held:
                holder = buildcontrol.build_lock_holder(self.connection, self._qualified_name)
                if holder is not None:
                    return f"another build of it holds the build lock: {holder.describe()}"
            seen: list[buildcontrol.BlockingSession] = []
            if self.last_blocker is not None:
                seen.append(self.last_blocker)
            started = self.started_at or buildcontrol.server_clock(self.connection)
            blockers = buildcontrol.likely_build_blockers(self.connection, self.db_table, started)
            for session in blockers:
                if all(s.pid != session.pid for s in seen):
                    seen.append(session)
        except Exception:
            logger.debug("could not name the blocker", exc_info=True)
            return "blocked by another session (could not look it up)"
        if not seen:
            return "blocked by a session that has ended since"
        return "blocked by " + "; ".join(s.describe() for s in seen[:3])

    def _clean_up_after_giving_up(self) -> str:
        main, leftovers = self._lookup()
        invalid = [f for f in ([main] if main else []) + leftovers if not f.valid]
        try:
            self._drop_invalid(invalid)
        except OperationalError:
            names = ", ".join(f'"{f.name}"' for f in invalid)
            return (
                f" The INVALID index {names} it left could not be dropped yet (the drop "
                "waits for the same session); the next run drops it."
            )
        return " Nothing was left behind." if invalid else ""


@interruptible_statements()  # SIGINT/SIGTERM cancel the build on psycopg2 too
def build_index_concurrently(
    schema_editor: Any, model: Any, index: Any, *, output: BuildOutput | None = None
) -> BuildOutcome:
    """Build ``index`` on ``model`` with ``CREATE INDEX CONCURRENTLY``, safely re-runnable.

    See the module docstring for the steps. The connection must be in autocommit mode (a
    migration with ``atomic = False``, or a management command outside ``atomic()``).

    Args:
        schema_editor: a schema editor of a PostgreSQL connection, not in ``collect_sql``.
        model: the model (historical or real) the index belongs to.
        index: a ``django.db.models.Index`` with a name.
        output: where to report adoption, drops, the build and its progress.

    Returns:
        What was done.

    Raises:
        IndexDefinitionMismatchError: a valid index of that name differs from ``index``.
        LockWaitTimeoutError: the lock waits ran out of retries; names the blocker.
        UnsafeServerVersionError: PostgreSQL 14.0-14.3 without the override.
        IndexBuildError: the index is being built by someone else, or is not valid after.
    """
    from . import partitions

    connection = schema_editor.connection
    table = model._meta.db_table
    if partitions.is_partitioned(connection, table):
        # CREATE INDEX CONCURRENTLY is refused on a partitioned table: ON ONLY the parent,
        # then each partition concurrently, attached (partitions.py).
        schema = buildcontrol.table_schema(connection, table)
        assert schema is not None
        done = partitions.build_partitioned_index(
            schema_editor, model, index, schema, output=output
        )
        return BuildOutcome.ADOPTED if done == "adopted" else BuildOutcome.BUILT
    return _SafeBuild(schema_editor, model, index, output).run()


def existing_index_state(schema_editor: Any, model: Any, index: Any) -> str:
    """What the database has under ``index.name`` on ``model``'s table, by the build's rule.

    Used by operations that replace an index in several steps, to know on a re-run which
    step was done: ``"missing"``, ``"invalid"`` (or being built), ``"same"`` (valid, with the
    declared definition) or ``"different"`` (valid, with another one).
    """
    build = _SafeBuild(schema_editor, model, index, None)
    build.schema = buildcontrol.table_schema(build.connection, build.db_table) or "public"
    main, _leftovers = build._lookup()
    if main is None:
        return "missing"
    if not main.valid or main.building:
        return "invalid"
    return "different" if build._differences(main) else "same"
