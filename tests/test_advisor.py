"""The advisor's statement reading, candidate building and merging (pure functions; the
scenarios on real servers are in tests/integration/test_advisor.py)."""

from __future__ import annotations

from tenant_indexes.advisor import (
    Statement,
    _Candidate,
    _covered,
    _estimated_bytes,
    _index_name,
    _merge,
    _predicates,
    _tenant_param,
)
from tenant_indexes.declared import TenantTable

COLUMNS = ["id", "tenant_id", "status", "priority", "created_at", "subject"]
TABLE = TenantTable("a", "a.Ticket", None, "tickets", "tenant_id", ())


def test_tenant_param__finds_the_parameter_compared_with_the_tenant_column() -> None:
    django = (
        'SELECT "tickets"."id" FROM "tickets" WHERE ("tickets"."status" = $1 AND '
        '"tickets"."tenant_id" = $2)'
    )
    assert _tenant_param(django, "tickets", "tenant_id") == 2
    assert _tenant_param("SELECT id FROM tickets WHERE $3 = tenant_id", "tickets", "tenant_id") == 3


def test_tenant_param__none_for_another_table_or_no_tenant_equality() -> None:
    assert _tenant_param("SELECT 1 FROM files WHERE tenant_id = $1", "tickets", "tenant_id") is None
    assert (
        _tenant_param("SELECT 1 FROM tickets WHERE tenant_id > $1", "tickets", "tenant_id") is None
    )
    assert _tenant_param("SELECT 1 FROM tickets WHERE id = $1", "tickets", "tenant_id") is None


def test_predicates__equality_ranges_and_order_by_in_order() -> None:
    query = (
        'SELECT * FROM "tickets" WHERE ("tickets"."tenant_id" = $1 AND "tickets"."status" IN '
        '($2, $3) AND "tickets"."created_at" >= $4 AND "tickets"."priority" = $5) '
        'ORDER BY "tickets"."created_at" DESC LIMIT $6'
    )
    preds = _predicates(query, "tickets", COLUMNS)
    assert preds.equality == ("tenant_id", "status", "priority")
    assert preds.ranges == ("created_at",)
    assert preds.order_by == (("created_at", True),)
    assert preds.params == {
        1: "tenant_id",
        2: "status",
        3: "status",
        4: "created_at",
        5: "priority",
    }


def test_predicates__order_by_an_expression_gives_no_index_order() -> None:
    query = "SELECT * FROM tickets WHERE tenant_id = $1 ORDER BY lower(subject), created_at"
    assert _predicates(query, "tickets", COLUMNS).order_by == ()


def _candidate(columns: tuple[str, ...], queryid: int) -> _Candidate:
    statement = Statement(queryid, f"q{queryid}", 10, 1.0, "tickets", 1)
    return _Candidate(TABLE, columns, {}, [f"r{queryid}"], [statement])


def test_merge__a_prefix_folds_into_the_longer_candidate() -> None:
    merged = _merge(
        [
            _candidate(("tenant_id", "status"), 1),
            _candidate(("tenant_id", "status", "created_at"), 2),
            _candidate(("tenant_id", "priority"), 3),
            _candidate(("tenant_id", "status"), 4),
        ]
    )
    by_key = {c.columns: sorted(s.queryid for s in c.statements) for c in merged}
    assert by_key == {
        ("tenant_id", "status", "created_at"): [1, 2, 4],
        ("tenant_id", "priority"): [3],
    }


def test_covered__only_by_a_usable_index_that_starts_with_the_columns() -> None:
    live = [(("tenant_id", "status", "created_at"), True), (("created_at", "tenant_id"), True)]
    assert _covered(("tenant_id", "status"), live)
    assert not _covered(("tenant_id", "created_at"), live)
    assert not _covered(("tenant_id",), [(("tenant_id",), False)])  # INVALID or partial


def test_estimated_bytes__grows_with_rows_and_key_width() -> None:
    small = _estimated_bytes(1_000, {"tenant_id": 16}, ("tenant_id",))
    many = _estimated_bytes(1_000_000, {"tenant_id": 16}, ("tenant_id",))
    wide = _estimated_bytes(1_000_000, {"tenant_id": 16, "subject": 60}, ("tenant_id", "subject"))
    assert small < many < wide
    # 16-byte key, 8-byte header, 4-byte line pointer: about 28 bytes a row in 8 kB pages.
    assert 25_000_000 < many < 40_000_000


def test_index_name__fits_postgresql_limit() -> None:
    assert _index_name("tickets", ("tenant_id", "status")) == "idx_tickets_status"
    long = _index_name("t" * 40, ("tenant_id", "a" * 30, "b" * 30))
    assert len(long) <= 63
