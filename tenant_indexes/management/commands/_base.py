"""What the tenant index commands share: their options and the exit-code mapping.

The leading underscore keeps Django from offering this module as a command.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable
from typing import Any, TypedDict

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from tenant_indexes.conf import get_config
from tenant_indexes.exceptions import TenantIndexesError
from tenant_indexes.findings import Level
from tenant_indexes.health import collector_paused
from tenant_indexes.reads import first_error_line
from tenant_indexes.sessions import interruptible_statements

OUTPUT_FORMATS = ("text", "json", "prometheus")


def add_target_arguments(parser: Any, *, app_labels_help: str, database_help: str) -> None:
    """Add the positional app labels and the repeatable ``--database ALIAS``.

    Args:
        parser: the command's argument parser.
        app_labels_help: help text of the app labels.
        database_help: help text of ``--database``.
    """
    parser.add_argument("app_labels", nargs="*", metavar="app_label", help=app_labels_help)
    parser.add_argument(
        "--database", action="append", dest="databases", metavar="ALIAS", help=database_help
    )


class Targets(TypedDict):
    """The keyword arguments :func:`targets` gives the core call."""

    databases: list[str] | None
    app_labels: list[str] | None


def targets(options: dict[str, Any]) -> Targets:
    """The core call's ``databases`` and ``app_labels``: ``None`` when none were given."""
    return {
        "databases": options["databases"] or None,
        "app_labels": options["app_labels"] or None,
    }


def raise_for_exit_code(report: Any, fail_level: str) -> None:
    """End the command with the report's exit code : 0 returns, 1 and 2 raise.

    Args:
        report: a report with ``exit_code()``, ``databases``, ``findings`` and ``status``.
        fail_level: the lowest finding level that makes the command exit 1.

    Raises:
        CommandError: ``returncode=2`` when a database could not be checked, ``returncode=1``
            when a finding is at or above ``fail_level``.
    """
    code = report.exit_code(fail_level)
    if code == 2:
        failed = "; ".join(d.error for d in report.databases if d.error)
        raise CommandError(f"could not check: {failed}", returncode=2)
    if code == 1:
        raise CommandError(
            f"unhealthy: {len(report.findings)} finding(s), status {report.status}",
            returncode=1,
        )


#: Exit codes of a command ended by a signal, as a shell reports them (128 + signal number).
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like SIGINT's KeyboardInterrupt: the driver cancels the running
    statement, ``finally`` blocks restore the session, then the command exits 143."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class SignalExitMixin:
    """SIGINT exits 130 and SIGTERM 143, a database error outside a build exits 2, each
    with one line on stderr and no traceback.

    Both unwind the command: a running statement is cancelled by the driver, the build's
    session settings and advisory locks are restored on the way out, and an index that was
    being built is left INVALID for the next run to drop and build again.
    """

    #: Whether the whole command runs with :func:`interruptible_statements`. ``migrate``
    #: says no: a user's migration may COPY, which psycopg2 refuses under a wait callback;
    #: its builds install it themselves (``build.py``).
    interruptible = True

    def execute(self, *args: Any, **options: Any) -> Any:
        previous = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, _raise_terminated)
        except ValueError:  # not the main thread: leave signals alone
            previous = None
        try:
            if not self.interruptible:
                return super().execute(*args, **options)  # type: ignore[misc]
            with interruptible_statements():
                return super().execute(*args, **options)  # type: ignore[misc]
        except KeyboardInterrupt as interrupt:
            terminated = isinstance(interrupt, Terminated)
            name, code = ("SIGTERM", EXIT_SIGTERM) if terminated else ("SIGINT", EXIT_SIGINT)
            sys.stderr.write(
                f"interrupted by {name}: stopped; run the command again to finish "
                "(an index left INVALID is dropped and built again)\n"
            )
            raise SystemExit(code) from None
        except DatabaseError as error:
            # Not a build (those raise IndexBuildError): the server could not be reached or
            # refused a statement outside one. One line, exit 2 ("could not check").
            sys.stderr.write(f"database error: {first_error_line(error)}\n")
            raise SystemExit(2) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


class ExitCodeArgumentsMixin:
    """Bad arguments exit 2 from ``call_command`` too, not only from a shell.

    From the command line argparse already exits 2; Django's parser raises a plain
    ``CommandError`` (exit 1) when the command is called from code.
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = super().create_parser(prog_name, subcommand, **kwargs)  # type: ignore[misc]
        argparse_error = parser.error

        def error(message: str) -> None:
            if parser.called_from_command_line:
                argparse_error(message)
            raise CommandError(f"Error: {message}", returncode=2)

        parser.error = error
        return parser


class ReportCommand(SignalExitMixin, ExitCodeArgumentsMixin, BaseCommand):
    """A command that collects one report, renders it in ``--format`` and maps it to an exit code.

    Subclasses set the help texts and implement :meth:`collect` and :meth:`render`.
    """

    # The command is the check; Django's own system checks would only delay a probe.
    requires_system_checks: list[str] = []
    app_labels_help = ""
    database_help = ""

    def add_arguments(self, parser: Any) -> None:
        add_target_arguments(
            parser, app_labels_help=self.app_labels_help, database_help=self.database_help
        )
        parser.add_argument("--format", choices=OUTPUT_FORMATS, default="text", dest="output")
        parser.add_argument(
            "--fail-level",
            choices=[level.value for level in Level],
            default=None,
            help="Lowest finding level that makes the command exit 1 (default: "
            "TENANT_INDEXES['HEALTH_FAIL_LEVEL'], itself 'error' by default).",
        )

    def collect(self, options: dict[str, Any]) -> Any:
        """Make the one core call and return its report."""
        raise NotImplementedError

    def render(self, report: Any, output: str) -> str | Iterable[str]:
        """The report in ``output`` (one of :data:`OUTPUT_FORMATS`), ending with a newline:
        one text, or its parts in order (written as they come)."""
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        # The report's objects (hundreds of thousands at thousands of schemas) stay alive
        # until it is written: the cyclic collector would only walk them again and again.
        with collector_paused():
            try:
                report = self.collect(options)
            except TenantIndexesError as e:
                raise CommandError(str(e), returncode=2) from e
            rendered = self.render(report, options["output"])
            for part in (rendered,) if isinstance(rendered, str) else rendered:
                self.stdout.write(part, ending="")
        # One verdict everywhere: without --fail-level the command fails where the health
        # view, the django-health-check backend and the system check do.
        fail_level = options["fail_level"] or get_config()["HEALTH_FAIL_LEVEL"]
        if fail_level not in {level.value for level in Level}:
            raise CommandError(
                f"TENANT_INDEXES['HEALTH_FAIL_LEVEL'] must be error or warning, not {fail_level!r}",
                returncode=2,
            )
        raise_for_exit_code(report, fail_level)
