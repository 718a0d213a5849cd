"""The quoting rule and Django's ``"schema"."table"`` spelling of a ``db_table``."""

from __future__ import annotations

import pytest

from tenant_indexes.sql import split_db_table, table_name, table_reference


@pytest.mark.parametrize(
    ("db_table", "expected"),
    [
        ('"billing"."invoice"', ("billing", "invoice")),
        ("invoice", (None, "invoice")),
        ('"a""b"."c""d"', ('a"b', 'c"d')),
        ('"Billing"."Invoice"', ("Billing", "Invoice")),
        ("billing.invoice", (None, "billing.invoice")),  # one name with a dot in it
        ('"invoice"', (None, '"invoice"')),
    ],
)
def test_split_db_table(db_table: str, expected: tuple[str | None, str]) -> None:
    assert split_db_table(db_table) == expected


def test_table_reference_quotes_each_part() -> None:
    assert table_reference('"billing"."invoice"') == '"billing"."invoice"'
    assert table_reference("invoice") == '"invoice"'
    assert table_reference('"a""b"."c"') == '"a""b"."c"'
    assert table_name('"billing"."invoice"') == "invoice"
