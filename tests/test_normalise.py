"""Partial-index predicates and index expressions compared as the server normalises them.

The check (E003) and the build (adopt or refuse) share one comparison; both are driven here
against indexes that Django's own schema editor built (must compare equal) and indexes made
by hand with another predicate or expression (must differ). The declared probe indexes are
added to ``testapp.Order`` for the duration of a test only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, models
from django.db.models import F, Q
from django.db.models.functions import Collate, Lower, Upper
from django.test.utils import CaptureQueriesContext

from tenant_indexes import TenantIndex, buildcontrol, normalise
from tenant_indexes.build import BuildOutcome, build_index_concurrently
from tenant_indexes.compare import definition_differences
from tenant_indexes.exceptions import IndexDefinitionMismatchError
from tenant_indexes.findings import IndexState
from tenant_indexes.health import check_databases
from tests.testapp.models import Order

_SAVEPOINT_SQL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")

# Declarations whose Django-rendered SQL differs in text from what pg_get_expr() returns
# (casts, parentheses, IN as = ANY, LIKE as ~~ with an escaped %), yet mean the same.
SAME_DEFINITION = {
    "equals": TenantIndex(fields=["status"], name="probe_eq", condition=Q(status="open")),
    "in_list": TenantIndex(
        fields=["status"], name="probe_in", condition=Q(status__in=["open", "new"])
    ),
    "isnull": TenantIndex(fields=[], name="probe_null", condition=Q(number__isnull=True)),
    "and_or_not": TenantIndex(
        fields=["number"],
        name="probe_combo",
        condition=(Q(status="open") & ~Q(number="x")) | Q(status__in=["a", "b"]),
    ),
    "like_percent": TenantIndex(
        fields=[], name="probe_like", condition=Q(number__startswith="50%")
    ),
    "f_and_expressions": models.Index(
        F("tenant"), Lower("number"), Upper("status").desc(), name="probe_expr"
    ),
    "collation": models.Index(
        F("tenant"), Collate(F("number"), "C"), Collate(Lower("status"), "C"), name="probe_collate"
    ),
    "expression_and_predicate": models.Index(
        F("tenant"), Lower("status"), name="probe_expr_pred", condition=Q(number__gt="100")
    ),
}


@contextmanager
def declared_on_order(monkeypatch: pytest.MonkeyPatch, *indexes: models.Index) -> Iterator[None]:
    """``Order.Meta.indexes`` plus ``indexes``, as the check reads the models."""
    monkeypatch.setattr(Order._meta, "indexes", [*Order._meta.indexes, *indexes])
    yield


def _run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _build_with_django(index: models.Index) -> None:
    """Create ``index`` exactly as Django's schema editor writes it (a correct build)."""
    with connection.schema_editor() as editor:
        editor.add_index(Order, index)


def _probe_findings(report, name: str) -> list:
    return [f for f in report.findings if f.index == name]


def _probe_state(report, name: str) -> IndexState:
    return next(ix.status for ix in report.indexes if ix.name == name)


# The check.


@pytest.mark.django_db
def test_check__partial_index_with_another_predicate_is_e003_naming_it(monkeypatch) -> None:
    index = TenantIndex(fields=["status"], name="probe_open", condition=Q(status="open"))
    _run("CREATE INDEX probe_open ON testapp_order (tenant_id, status) WHERE status = 'closed'")
    with declared_on_order(monkeypatch, index):
        report = check_databases(["default"], app_labels=["testapp"])
    assert _probe_state(report, "probe_open") is IndexState.DRIFT
    (finding,) = _probe_findings(report, "probe_open")
    assert finding.id == "tenant_indexes.E003"
    assert "predicate" in finding.message and "'closed'" in finding.message
    assert "'open'" in finding.message
    assert report.exit_code() == 1


@pytest.mark.django_db
def test_check__expression_index_with_another_expression_is_e003(monkeypatch) -> None:
    index = models.Index(F("tenant"), Lower("number"), name="probe_lower")
    _run("CREATE INDEX probe_lower ON testapp_order (tenant_id, upper(number))")
    with declared_on_order(monkeypatch, index):
        report = check_databases(["default"], app_labels=["testapp"])
    (finding,) = _probe_findings(report, "probe_lower")
    assert finding.id == "tenant_indexes.E003"
    assert "expressions" in finding.message and "upper" in finding.message


@pytest.mark.django_db
@pytest.mark.parametrize("shape", sorted(SAME_DEFINITION))
def test_check__index_built_by_django_is_ok_whatever_its_predicate_or_expressions(
    monkeypatch, shape: str
) -> None:
    index = SAME_DEFINITION[shape]
    _build_with_django(index)
    with declared_on_order(monkeypatch, index):
        report = check_databases(["default"], app_labels=["testapp"])
    assert _probe_findings(report, index.name) == []
    assert _probe_state(report, index.name) is IndexState.OK
    assert report.status == "ok", [f.message for f in report.findings]


@pytest.mark.django_db
def test_check__costs_statements_only_for_partial_and_expression_indexes(monkeypatch) -> None:
    """None without such indexes; one for the settings plus a savepoint pair and two
    EXPLAINs for each declared partial or expression index that exists."""

    def statements() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            check_databases(["default"], app_labels=["testapp"])
        return [q["sql"] for q in queries]

    baseline = statements()
    assert not any("EXPLAIN" in sql for sql in baseline)
    probes = [SAME_DEFINITION["equals"], SAME_DEFINITION["f_and_expressions"]]
    for index in probes:
        _build_with_django(index)
    with declared_on_order(monkeypatch, *probes):
        with_probes = statements()
    explains = [sql for sql in with_probes if sql.startswith("EXPLAIN")]
    assert len(explains) == 2 * len(probes)
    others = [s for s in with_probes if "EXPLAIN" not in s and not s.startswith(_SAVEPOINT_SQL)]
    assert len(others) == len([s for s in baseline if not s.startswith(_SAVEPOINT_SQL)]) + 1


@pytest.mark.django_db
def test_normalise__text_the_server_cannot_parse_is_an_error_and_a_difference() -> None:
    """A failed normalisation is reported, never taken for "same"; later requests still run."""
    from tenant_indexes.declared import declared_index

    broken = normalise.definition_request(
        "public",
        "testapp_order",
        "probe_broken",
        declared_predicate="(AND: ('status', 'open'))",  # str(Q), what an uncompilable one gives
        live_predicate="((status)::text = 'open'::text)",
        declared_expressions=(),
        live_expressions=None,
    )
    fine = normalise.definition_request(
        "public",
        "testapp_order",
        "probe_fine",
        declared_predicate="\"status\" = 'open'",
        live_predicate="((status)::text = 'open'::text)",
        declared_expressions=(),
        live_expressions=None,
    )
    bad, good = normalise.normalise_definitions(connection, [broken, fine])
    assert bad.error and bad.declared_predicate is None
    assert good.error is None and good.declared_predicate == good.live_predicate
    index = TenantIndex(fields=["status"], name="probe_broken", condition=Q(status="open"))
    _build_with_django(index)
    with connection.schema_editor() as editor:
        declared = declared_index(Order, index, editor)
    live = next(
        ix for ix in buildcontrol.index_and_leftovers(connection, "testapp_order", "probe_broken")
    )
    (difference,) = definition_differences(declared, live, "testapp_order", bad)
    assert "could not be compared" in difference and bad.error in difference


# The build.


def _build(index: models.Index):
    with connection.schema_editor(atomic=False) as editor:
        return build_index_concurrently(editor, Order, index)


@pytest.mark.django_db(transaction=True)
def test_build__refuses_a_valid_index_with_another_predicate_or_expression() -> None:
    cases = [
        (
            TenantIndex(fields=["status"], name="probe_open", condition=Q(status="open")),
            "CREATE INDEX probe_open ON testapp_order (tenant_id, status) WHERE status = 'closed'",
            "predicate",
        ),
        (
            models.Index(F("tenant"), Lower("number"), name="probe_lower"),
            "CREATE INDEX probe_lower ON testapp_order (tenant_id, upper(number))",
            "expressions",
        ),
    ]
    try:
        for index, sql, what in cases:
            _run(sql)
            with pytest.raises(IndexDefinitionMismatchError) as raised:
                _build(index)
            message = str(raised.value)
            assert "differs from the declared one" in message and what in message, message
    finally:
        for index, _, _ in cases:
            _run(f"DROP INDEX IF EXISTS {index.name}")


@pytest.mark.django_db(transaction=True)
def test_build__adopts_an_identical_index_of_every_predicate_and_expression_shape() -> None:
    """Including ``F("tenant")`` + an expression: the catalog reports that key as a column.

    One transactional test for every shape: each such test empties the database at its end.
    """
    try:
        for shape, index in SAME_DEFINITION.items():
            _build_with_django(index)
            assert _build(index) is BuildOutcome.ADOPTED, shape
    finally:
        for index in SAME_DEFINITION.values():
            _run(f"DROP INDEX IF EXISTS {index.name}")
