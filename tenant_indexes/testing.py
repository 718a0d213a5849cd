"""A pytest plugin for your own test suite: fail it when a tenant index is missing or broken.

Registered through the ``pytest11`` entry point, so it is loaded wherever the package is
installed with pytest and pytest-django, and it does nothing until a suite opts in:

- one line in ``conftest.py``::

      from tenant_indexes.testing import enable_tenant_index_check as pytest_configure

  checks once per session, before the first test that uses the database;
- or the ``tenant_indexes`` marker on the tests (or modules) that should trigger it;
- or the ``tenant_indexes_report`` fixture, which returns the report without failing, for
  custom assertions.

The check runs after pytest-django has created and migrated the test databases: the static
checks of the declarations (the system checks ``check`` runs) and the live check of the test
databases (the one ``check_tenant_indexes`` runs). Findings at or above
``tenant_indexes_fail_level`` (ini, ``error`` or ``warning``) that the
``tenant_indexes_allow`` allow-list (ini, one entry a line) does not name end the session with
exit code 1 and the findings with their hints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from .findings import Finding, Level

MARKER = "tenant_indexes"
_ENABLED = pytest.StashKey[bool]()
_RESULT = pytest.StashKey["TenantIndexTestReport"]()


@dataclass(frozen=True)
class StaticFinding:
    """One message of the static checks (a Django system check with a ``tenant_indexes`` id)."""

    id: str
    level: Level
    message: str
    hint: str
    obj: str


@dataclass(frozen=True)
class TenantIndexTestReport:
    """What the plugin found on the migrated test databases.

    Attributes:
        health: the live check's report (``check_tenant_indexes --format json``'s content).
        static: the static checks' messages at warning level or above.
        failing: the findings at or above the fail level that no allow-list entry names, as
            printable lines; empty when the session passes.
        allowed: the findings at or above the fail level that the allow-list names.
        fail_level: the level the session fails at.
    """

    health: Any
    static: tuple[StaticFinding, ...]
    fail_level: Level
    failing: tuple[str, ...] = ()
    allowed: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.failing

    def ids(self) -> list[str]:
        """Every finding id, live and static, sorted (handy in assertions)."""
        return sorted([f.id for f in self.health.findings] + [s.id for s in self.static])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "tenant_indexes_fail_level",
        "tenant_indexes plugin: fail the session on findings at or above this level "
        "(error or warning; default error).",
        default="error",
    )
    parser.addini(
        "tenant_indexes_allow",
        "tenant_indexes plugin: findings to accept, one a line: an id "
        "(tenant_indexes.W001 or W001), optionally ':' and a table, index or table.index.",
        "linelist",  # type: ignore[maybe-unrecognized-str-typeform]
        [],
    )
    parser.addini(
        "tenant_indexes_databases",
        "tenant_indexes plugin: the database aliases to check (default: every PostgreSQL "
        "alias the check would pick).",
        "linelist",  # type: ignore[maybe-unrecognized-str-typeform]
        [],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: check the tenant indexes of the migrated test database before this test "
        "(once per session); findings end the session.",
    )


def enable_tenant_index_check(config: pytest.Config) -> None:
    """Opt the whole suite in; meant to be imported into ``conftest.py`` as ``pytest_configure``.

    If your conftest has its own ``pytest_configure``, call this from it instead.
    """
    _fail_level(config)  # a bad value is a usage error before any test runs
    config.stash[_ENABLED] = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    enabled = config.stash.get(_ENABLED, False)
    databases = list(config.getini("tenant_indexes_databases")) or None
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is None:
            continue
        checked = enabled or item.get_closest_marker(MARKER) is not None
        if checked and "tenant_indexes_check" not in fixturenames:
            # First, so the check runs before the test's own fixtures change the database.
            fixturenames.insert(0, "tenant_indexes_check")
        if (checked or "tenant_indexes_report" in fixturenames) and (
            item.get_closest_marker("django_db") is None
        ):
            # pytest-django creates only the test databases that marked tests use.
            item.add_marker(pytest.mark.django_db(databases=databases))


def _parse_allow(entry: str) -> tuple[str, str | None]:
    finding_id, _, target = entry.strip().partition(":")
    finding_id = finding_id.strip()
    if not finding_id.startswith("tenant_indexes."):
        finding_id = f"tenant_indexes.{finding_id}"
    return finding_id, (target.strip() or None)


def _allowed(entries: Sequence[tuple[str, str | None]], finding_id: str, names: set[str]) -> bool:
    return any(fid == finding_id and (target is None or target in names) for fid, target in entries)


def _finding_names(finding: Finding) -> set[str]:
    names = {finding.table, f"{finding.schema}.{finding.table}"}
    if finding.index:
        names |= {
            finding.index,
            f"{finding.table}.{finding.index}",
            f"{finding.schema}.{finding.table}.{finding.index}",
        }
    return names


def _finding_line(finding: Finding) -> str:
    where = f"{finding.database}: {finding.schema or 'public'}.{finding.table}"
    if finding.index:
        where += f" / {finding.index}"
    return (
        f"{finding.id} ({finding.level.value}) {where}: {finding.message}\n    hint: {finding.hint}"
    )


def build_report(
    databases: Sequence[str] | None, fail_level: str, allow: Sequence[str]
) -> TenantIndexTestReport:
    """Run the static and the live check and judge them (the database must be reachable)."""
    from django.core import checks as django_checks

    from .checks import check_tenant_index_declarations
    from .health import check_databases

    level = Level(fail_level)
    entries = [_parse_allow(e) for e in allow if e.strip()]
    static: list[StaticFinding] = []
    for message in check_tenant_index_declarations():
        if message.level < django_checks.WARNING:
            continue
        static.append(
            StaticFinding(
                id=str(message.id),
                level=Level.ERROR if message.level >= django_checks.ERROR else Level.WARNING,
                message=str(message.msg),
                hint=str(message.hint or ""),
                obj=str(message.obj),
            )
        )
    health = check_databases(list(databases or ()) or None)
    failing: list[str] = []
    allowed: list[str] = []
    for database in health.databases:
        if database.error:
            failing.append(f"{database.alias}: could not check: {database.error}")
    for finding in health.findings:
        if finding.level.rank < level.rank:
            continue
        line = _finding_line(finding)
        names = _finding_names(finding)
        (allowed if _allowed(entries, finding.id, names) else failing).append(line)
    for item in static:
        if item.level.rank < level.rank:
            continue
        line = f"{item.id} ({item.level.value}) {item.obj}: {item.message}\n    hint: {item.hint}"
        (allowed if _allowed(entries, item.id, {item.obj}) else failing).append(line)
    return TenantIndexTestReport(
        health=health,
        static=tuple(static),
        fail_level=level,
        failing=tuple(failing),
        allowed=tuple(allowed),
    )


def _fail_level(config: pytest.Config) -> str:
    value = str(config.getini("tenant_indexes_fail_level")).strip() or "error"
    if value not in ("error", "warning"):
        raise pytest.UsageError(
            f"tenant_indexes_fail_level must be 'error' or 'warning', not {value!r}."
        )
    return value


@pytest.fixture(scope="session")
def tenant_indexes_report(
    request: pytest.FixtureRequest, django_db_setup: Any, django_db_blocker: Any
) -> TenantIndexTestReport:
    """The check's report on the migrated test databases, computed once per session."""
    config = request.config
    cached = config.stash.get(_RESULT, None)
    if cached is not None:
        return cached
    with django_db_blocker.unblock():
        report = build_report(
            config.getini("tenant_indexes_databases"),
            _fail_level(config),
            config.getini("tenant_indexes_allow"),
        )
    config.stash[_RESULT] = report
    return report


@pytest.fixture(scope="session")
def tenant_indexes_check(tenant_indexes_report: TenantIndexTestReport) -> Iterator[None]:
    """End the session (exit code 1) when the report has findings that fail it."""
    report = tenant_indexes_report
    if report.failing:
        lines = "\n".join(report.failing)
        pytest.exit(
            f"tenant_indexes: {len(report.failing)} finding(s) at or above "
            f"{report.fail_level.value} on the migrated test database:\n{lines}\n"
            "Fix them, or name accepted ones in the tenant_indexes_allow ini option.",
            returncode=1,
        )
    yield


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.stash.get(_ENABLED, False):
        return f"tenant_indexes: checking the test database (fail level {_fail_level(config)})"
    return None


__all__ = [
    "MARKER",
    "StaticFinding",
    "TenantIndexTestReport",
    "build_report",
    "enable_tenant_index_check",
    "tenant_indexes_check",
    "tenant_indexes_report",
]
