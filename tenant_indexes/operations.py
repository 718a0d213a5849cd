"""Migration operations that build and drop indexes without blocking writes, safely re-runnable.

Django ships ``AddIndexConcurrently`` in ``django.contrib.postgres``, but that module needs
psycopg at import time and raises ``TypeError`` on other backends (``add_index()`` there has
no ``concurrently`` argument). These operations are drop-in replacements that use
``CREATE INDEX CONCURRENTLY`` / ``DROP INDEX CONCURRENTLY`` on PostgreSQL and the plain
statements everywhere else, so one migration serves every backend.

On PostgreSQL, :func:`build_index_concurrently` makes the build safe to run (and re-run) on a
busy production database:

- a valid index with the declared name and definition is *adopted* (no-op, logged); a valid
  one with another definition stops the build with :class:`IndexDefinitionMismatchError`;
- an INVALID index of that name (a killed or cancelled build) and the ``_ccnew``/``_ccold``
  leftovers of an interrupted ``REINDEX CONCURRENTLY`` are dropped concurrently, then the
  index is built again and checked to be valid;
- every lock wait is bounded by ``lock_timeout`` and retried with backoff; giving up names
  the blocking session; ``statement_timeout`` is off for the build; the session's settings
  are restored afterwards, also on failure;
- a session advisory lock per index keeps two ``migrate`` runs from building it at once;
- progress (phase, percent) comes from ``pg_stat_progress_create_index``;
- PostgreSQL 14.0 to 14.3, whose concurrent builds can corrupt indexes, are refused.

``sqlmigrate`` (``collect_sql``) prints the plain ``CREATE INDEX CONCURRENTLY`` statement and
queries nothing.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import OutputWrapper
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, OperationalError, connections
from django.db.migrations.operations import AddIndex, RemoveIndex
from django.db.migrations.state import ProjectState
from django.db.models import Index
from django.db.models.signals import post_migrate, pre_migrate
from django.dispatch import receiver

from . import catalog
from .conf import get_config
from .declared import declared_index
from .exceptions import (
    IndexBuildError,
    IndexDefinitionMismatchError,
    LockWaitTimeoutError,
    UnsafeServerVersionError,
)
from .health import definition_differences

logger = logging.getLogger(__name__)

#: SQLSTATE ``lock_not_available``: a lock wait ran into ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"

# The run-time settings a build changes; their previous values are restored afterwards.
_BUILD_SETTINGS = ("lock_timeout", "statement_timeout", "client_connection_check_interval")


def _is_postgresql(schema_editor: Any) -> bool:
    return schema_editor.connection.vendor == "postgresql"


# --- Version gate ---------------------------------------------------------------------------


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


# --- Declared versus catalog definition ------------------------------------------------------
# One comparison for the build and the check: declared.declared_index() reads the declaration,
# health.definition_differences() compares it with the live index (see _SafeBuild._differences).


# --- Progress --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOutput:
    """Where a build reports what it does: a stream and the verbosity of the command.

    Attributes:
        stream: a Django ``OutputWrapper`` (a command's ``self.stdout``) or a text stream.
        verbosity: the command's verbosity; 0 prints nothing.
        inline: True inside ``migrate``, whose ``Applying ...`` line is still open: every
            line then starts with a newline and ``OK`` lands after the last one.
    """

    stream: Any
    verbosity: int = 1
    inline: bool = False

    def isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def write(self, text: str, *, newline: bool = True) -> None:
        if self.inline and newline:
            text, end = "\n" + text, ""
        else:
            end = "\n" if newline else ""
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending=end)
        else:
            self.stream.write(text + end)
        flush = getattr(self.stream, "flush", None)
        if flush:
            flush()


ProgressReporter = Callable[[catalog.BuildProgress], None]


def format_progress(index_name: str, sample: catalog.BuildProgress) -> str:
    """``idx_x: building index: scanning table 42%`` (no percent when the phase has none)."""
    percent = sample.percent
    text = f"{index_name}: {sample.phase}"
    if percent is not None:
        text += f" {percent:.0f}%"
    if sample.blocker is not None and sample.phase.startswith("waiting"):
        text += f" (waiting for pid {sample.blocker.pid})"
    return text


class ProgressBar:
    """A one-line progress bar redrawn in place, for an interactive terminal."""

    width = 30

    def __init__(self, output: BuildOutput, index_name: str) -> None:
        self.output = output
        self.index_name = index_name
        self.started = False
        self._last_len = 0

    def __call__(self, sample: catalog.BuildProgress) -> None:
        percent = sample.percent or 0.0
        filled = int(self.width * percent / 100)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"    [{bar}] {format_progress(self.index_name, sample)}"
        padding = " " * max(0, self._last_len - len(line))
        self._last_len = len(line)
        prefix = "\n" if (self.output.inline and not self.started) else "\r"
        self.started = True
        self.output.write(prefix + line + padding, newline=False)

    def close(self) -> None:
        if self.started and not self.output.inline:
            self.output.write("", newline=True)


class ProgressLines:
    """One line per phase change or per ``interval`` seconds, for logs and CI output."""

    def __init__(
        self,
        output: BuildOutput,
        index_name: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.index_name = index_name
        self.interval = interval
        self.clock = clock
        self._last_phase: str | None = None
        self._last_time = float("-inf")

    def __call__(self, sample: catalog.BuildProgress) -> None:
        now = self.clock()
        if sample.phase == self._last_phase and now - self._last_time < self.interval:
            return
        self._last_phase, self._last_time = sample.phase, now
        self.output.write(f"    {format_progress(self.index_name, sample)}")

    def close(self) -> None:
        pass


def progress_reporter(
    output: BuildOutput | None, index_name: str, config: dict[str, Any]
) -> ProgressBar | ProgressLines | None:
    """The reporter for ``output``: a bar on a terminal, lines otherwise, none at verbosity 0.

    ``BUILD_PROGRESS`` forces ``"bar"``, ``"lines"`` or ``"off"``.
    """
    mode = config["BUILD_PROGRESS"]
    if output is None or output.verbosity < 1 or mode == "off":
        return None
    if mode == "bar" or (mode == "auto" and output.isatty()):
        return ProgressBar(output, index_name)
    return ProgressLines(output, index_name, float(config["BUILD_PROGRESS_INTERVAL"]))


class _BuildMonitor(threading.Thread):
    """Samples the build's progress and blocker from a second connection while it runs."""

    poll_interval = 0.5

    def __init__(
        self, alias: str, build_pid: int, on_sample: ProgressReporter | None = None
    ) -> None:
        super().__init__(name=f"tenant_indexes build monitor {build_pid}", daemon=True)
        self.alias = alias
        self.build_pid = build_pid
        self.on_sample = on_sample
        self.last_blocker: catalog.BlockingSession | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        # An independent connection: the build's own one is busy with the statement.
        connection = connections.create_connection(self.alias)
        try:
            while True:
                sample = catalog.build_progress(connection, self.build_pid)
                if sample is not None:
                    if sample.blocker is not None:
                        self.last_blocker = sample.blocker
                    if self.on_sample is not None:
                        self.on_sample(sample)
                if self._stop_event.wait(self.poll_interval):
                    return
        except Exception:  # the monitor must never break the build it watches
            logger.debug("progress monitor of pid %s stopped", self.build_pid, exc_info=True)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# --- The safe build --------------------------------------------------------------------------


class BuildOutcome(enum.Enum):
    """What :func:`build_index_concurrently` did."""

    ADOPTED = "adopted"  # a valid index with the declared definition was already there
    BUILT = "built"  # it was missing and is now built and valid
    REBUILT = "rebuilt"  # an INVALID one (and leftovers) was dropped, then built


def _is_lock_timeout(error: BaseException) -> bool:
    cause = error.__cause__ or error
    return LOCK_NOT_AVAILABLE in (
        getattr(cause, "sqlstate", None),
        getattr(cause, "pgcode", None),
    )


def _qualified(connection: Any, schema: str, name: str) -> str:
    quote = connection.ops.quote_name
    return f"{quote(schema)}.{quote(name)}"


def drop_index_sql(connection: Any, schema: str, name: str) -> str:
    """``DROP INDEX CONCURRENTLY IF EXISTS "schema"."name"``."""
    return f"DROP INDEX CONCURRENTLY IF EXISTS {_qualified(connection, schema, name)}"


def create_index_sql(schema_editor: Any, model: Any, index: Any) -> str:
    """The ``CREATE INDEX CONCURRENTLY`` statement Django generates for ``index``."""
    return str(index.create_sql(model, schema_editor, concurrently=True))


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
        self.table = model._meta.db_table
        self.schema = "public"
        self.started_at: Any = None
        self.last_blocker: catalog.BlockingSession | None = None
        self.dropped_invalid = False

    # -- helpers --

    def _say(self, message: str, *args: Any) -> None:
        logger.info(message, *args)
        if self.output is not None and self.output.verbosity >= 1:
            self.output.write("    " + (message % args))

    def _execute(self, sql: str) -> None:
        self.schema_editor.execute(sql, params=None)

    def _lookup(self) -> tuple[catalog.CatalogIndex | None, list[catalog.CatalogIndex]]:
        found = catalog.index_and_leftovers(self.connection, self.table, self.index.name)
        main = next((f for f in found if f.name == self.index.name), None)
        return main, [f for f in found if f.name != self.index.name]

    # -- the steps --

    def run(self) -> BuildOutcome:
        ensure_concurrent_builds_supported(
            self.connection.pg_version,
            allow_pg14_bug=self.config["ALLOW_CONCURRENT_BUILDS_ON_PG14_BEFORE_14_4"],
        )
        schema = catalog.table_schema(self.connection, self.table)
        if schema is None:
            raise IndexBuildError(
                f'Cannot build index "{self.index.name}": table "{self.table}" does not exist.'
            )
        self.schema = schema
        previous = catalog.session_settings(self.connection, _BUILD_SETTINGS)
        wanted = build_settings(self.config)
        # client_connection_check_interval exists from PostgreSQL 14 on.
        wanted = {k: v for k, v in wanted.items() if previous.get(k) is not None}
        restore = {k: value for k in wanted if (value := previous[k]) is not None}
        catalog.set_session_settings(self.connection, wanted)
        lock_held = False
        try:
            retries = int(self.config["BUILD_LOCK_RETRIES"])
            backoff = float(self.config["BUILD_RETRY_BACKOFF"])
            for attempt in range(1, retries + 2):
                try:
                    if not lock_held:
                        catalog.acquire_build_lock(self.connection, self._qualified_name)
                        lock_held = True
                    return self._attempt()
                except OperationalError as error:
                    if not _is_lock_timeout(error):
                        raise
                    blocker_text = self._describe_blockers(lock_held)
                    if attempt > retries:
                        leftover = self._clean_up_after_giving_up() if lock_held else ""
                        raise LockWaitTimeoutError(
                            f'Gave up building index "{self.index.name}" on "{self.table}" '
                            f"after {attempt} lock waits of {wanted['lock_timeout']} each: "
                            f"{blocker_text}.{leftover} End or wait for that session, then "
                            "run migrate (or repair_tenant_indexes) again."
                        ) from error
                    pause = min(
                        backoff * 2 ** (attempt - 1), self.config["BUILD_RETRY_BACKOFF_MAX"]
                    )
                    logger.warning(
                        'Lock wait for index "%s" timed out (try %d of %d): %s; next try in %.1fs.',
                        self.index.name,
                        attempt,
                        retries + 1,
                        blocker_text,
                        pause,
                    )
                    time.sleep(pause)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._restore(restore, lock_held)

    @property
    def _qualified_name(self) -> str:
        return f"{self.schema}.{self.index.name}"

    def _restore(self, restore: dict[str, str], lock_held: bool) -> None:
        # After a terminated backend the connection is gone, and with it the session's
        # settings and advisory lock: nothing to restore, and the original error matters.
        if self.connection.connection is None or not self.connection.is_usable():
            logger.debug("connection gone after building %s: nothing to restore", self.index.name)
            return
        try:
            if lock_held:
                catalog.release_build_lock(self.connection, self._qualified_name)
            catalog.set_session_settings(self.connection, restore)
        except Exception:
            logger.warning(
                "Could not restore the session after building %s", self.index.name, exc_info=True
            )

    def _attempt(self) -> BuildOutcome:
        main, leftovers = self._lookup()
        if main is not None and main.building_pid is not None:
            raise IndexBuildError(
                f'Index "{self.index.name}" is being built right now by pid {main.building_pid}'
                " (not through tenant_indexes). Wait for that build to end, then run again."
            )
        if main is not None and main.is_valid:
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
        if main is None or not main.is_valid:
            raise IndexBuildError(
                f'CREATE INDEX CONCURRENTLY "{self.index.name}" returned but the index is '
                f"{'missing' if main is None else 'INVALID'}; run again to rebuild it."
            )
        return BuildOutcome.REBUILT if self.dropped_invalid else BuildOutcome.BUILT

    def _differences(self, main: catalog.CatalogIndex) -> list[str]:
        """What differs between the declared index and the valid one found, through the
        check's comparison (predicates and expressions normalised by the server)."""
        declared = declared_index(self.model, self.index, self.schema_editor)
        live = main.as_live_index()
        request = catalog.definition_request(
            live.schema,
            live.table,
            live.name,
            declared_predicate=declared.condition,
            live_predicate=live.predicate,
            declared_expressions=declared.key_expressions,
            live_expressions=live.expressions,
        )
        normalised = None
        if request is not None:
            (normalised,) = catalog.normalise_definitions(self.connection, [request])
        return definition_differences(declared, live, self.table, normalised)

    def _drop_invalid(self, indexes: list[catalog.CatalogIndex]) -> None:
        for found in indexes:
            if found.is_valid:
                continue
            if found.building_pid is not None:
                continue  # a REINDEX CONCURRENTLY in progress owns it
            self._say('dropping the INVALID index "%s" concurrently', found.name)
            self._execute(drop_index_sql(self.connection, found.schema, found.name))

    def _build(self) -> None:
        sql = create_index_sql(self.schema_editor, self.model, self.index)
        build_pid = catalog.backend_pid(self.connection)
        self.started_at = catalog.server_clock(self.connection)
        reporter = progress_reporter(self.output, self.index.name, self.config)
        monitor = _BuildMonitor(self.connection.alias, build_pid, reporter)
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
                holder = catalog.build_lock_holder(self.connection, self._qualified_name)
                if holder is not None:
                    return f"another build of it holds the build lock: {holder.describe()}"
            seen: list[catalog.BlockingSession] = []
            if self.last_blocker is not None:
                seen.append(self.last_blocker)
            started = self.started_at or catalog.server_clock(self.connection)
            for session in catalog.likely_build_blockers(self.connection, self.table, started):
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
        invalid = [f for f in ([main] if main else []) + leftovers if not f.is_valid]
        try:
            self._drop_invalid(invalid)
        except OperationalError:
            names = ", ".join(f'"{f.name}"' for f in invalid)
            return (
                f" The INVALID index {names} it left could not be dropped yet (the drop "
                "waits for the same session); the next run drops it."
            )
        return " Nothing was left behind." if invalid else ""


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
    return _SafeBuild(schema_editor, model, index, output).run()


# --- Output of the running migrate command ----------------------------------------------------

# migrate's verbosity and stdout, per database alias, from its pre_migrate signal: the
# operation API gives an operation only the schema editor, but pre_migrate carries both.
_migrate_output: dict[str, BuildOutput] = {}


@receiver(pre_migrate, dispatch_uid="tenant_indexes.operations.remember_migrate_output")
def _remember_migrate_output(
    sender: Any, verbosity: int = 1, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    stream = kwargs.get("stdout") or OutputWrapper(sys.stdout)
    _migrate_output[using] = BuildOutput(stream=stream, verbosity=verbosity, inline=True)


@receiver(post_migrate, dispatch_uid="tenant_indexes.operations.forget_migrate_output")
def _forget_migrate_output(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    _migrate_output.pop(using, None)


# --- Operations ------------------------------------------------------------------------------


class _NotInTransactionMixin:
    def _ensure_not_in_transaction(self, schema_editor: Any) -> None:
        # Only PostgreSQL refuses CONCURRENTLY inside a transaction block; elsewhere the
        # plain statement is fine either way. sqlmigrate (collect_sql) executes nothing.
        if (
            _is_postgresql(schema_editor)
            and not schema_editor.collect_sql
            and schema_editor.connection.in_atomic_block
        ):
            raise NotSupportedError(
                f"The {self.__class__.__name__} operation cannot be executed inside a "
                "transaction (set atomic = False on the migration)."
            )


class AddIndexConcurrently(_NotInTransactionMixin, AddIndex):
    """Create an index with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, plainly elsewhere.

    On PostgreSQL the build goes through :func:`build_index_concurrently`: it adopts an
    existing valid index with the same definition, replaces an INVALID one, bounds its lock
    waits and reports progress to ``migrate``. The migration that holds it must set
    ``atomic = False``.
    """

    atomic = False

    def describe(self) -> str:
        return (
            f"Concurrently create index {self.index.name} on field(s) "
            f"{', '.join(self.index.fields)} of model {self.model_name}"
        )

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not _is_postgresql(schema_editor):
            schema_editor.add_index(model, self.index)
        elif schema_editor.collect_sql:
            # sqlmigrate: print the statement, look nothing up.
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            output = _migrate_output.get(schema_editor.connection.alias)
            build_index_concurrently(schema_editor, model, self.index, output=output)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _is_postgresql(schema_editor):
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


class RemoveIndexConcurrently(_NotInTransactionMixin, RemoveIndex):
    """Drop an index with ``DROP INDEX CONCURRENTLY`` on PostgreSQL, plainly elsewhere."""

    atomic = False

    def describe(self) -> str:
        return f"Concurrently remove index {self.name} from {self.model_name}"

    def _index_from(self, state: ProjectState, app_label: str) -> Index:
        return state.models[app_label, self.model_name_lower].get_index_by_name(self.name)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = self._index_from(from_state, app_label)
        if _is_postgresql(schema_editor):
            schema_editor.remove_index(model, index, concurrently=True)
        else:
            schema_editor.remove_index(model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = self._index_from(to_state, app_label)
        if _is_postgresql(schema_editor) and not schema_editor.collect_sql:
            output = _migrate_output.get(schema_editor.connection.alias)
            build_index_concurrently(schema_editor, model, index, output=output)
        elif _is_postgresql(schema_editor):
            schema_editor.add_index(model, index, concurrently=True)
        else:
            schema_editor.add_index(model, index)
