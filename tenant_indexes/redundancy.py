"""W002's rule: when another index on the same table makes an index redundant.

"Redundant" needs the same table, method and predicate, and this index's keys (each a
column or an expression with its operator class, collation and order, read per key from the
catalog: :attr:`CatalogIndex.keys`) as a leading prefix of the other's keys (btree) or
exactly equal (any method); INCLUDE columns are not key columns. A B-tree prefix is covered
whatever the later keys are: ``(tenant_id)`` by ``(tenant_id, lower(name))``, and
``(tenant_id, lower(name))`` by ``(tenant_id, lower(name), upper(email))``. Pure functions
over :class:`~tenant_indexes.catalog.CatalogIndex` rows, whoever read them (the check's
snapshot or the usage statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

from .catalog import CatalogIndex


def backs_constraint(index: CatalogIndex) -> bool:
    """The index backs a primary key, unique or exclusion constraint."""
    return index.primary or index.constraint is not None


def _same_shape(a: CatalogIndex, b: CatalogIndex) -> bool:
    return (
        a.schema == b.schema
        and a.table == b.table
        and a.method == b.method
        and a.predicate == b.predicate
    )


def covers(other: CatalogIndex, index: CatalogIndex) -> bool:
    """Whether ``other`` makes ``index`` redundant (ignoring which of a duplicate pair to keep).

    ``other`` must be usable (valid, not being built) and of the same shape (table, method,
    predicate); ``index``'s keys (column or expression with operator class,
    collation and order) must be a leading prefix of ``other``'s keys (btree only; any other
    method needs equal keys), and ``index``'s INCLUDE columns must be among ``other``'s
    columns, or an index-only scan that ``index`` serves would lose them. A unique index is
    only covered by a unique index with the same keys: uniqueness over more columns is a
    weaker constraint.
    """
    if other is index or not other.usable or not _same_shape(index, other):
        return False
    mine, theirs = index.keys, other.keys
    if not mine or len(mine) > len(theirs) or theirs[: len(mine)] != mine:
        return False
    if None in mine:  # a key of an index being changed: unknown, so it covers nothing
        return False
    if len(mine) < len(theirs) and index.method != "btree":
        return False
    if index.unique and not (
        other.unique
        and len(mine) == len(theirs)
        and ("NULLS NOT DISTINCT" in index.definition) == ("NULLS NOT DISTINCT" in other.definition)
    ):
        return False
    other_columns = set(other.columns) | set(other.include)
    return set(index.include) <= other_columns


def _is_exact_duplicate(a: CatalogIndex, b: CatalogIndex) -> bool:
    return covers(a, b) and covers(b, a)


def find_redundant(indexes: Sequence[CatalogIndex]) -> dict[str, str]:
    """``{redundant index name: covering index name}`` among the indexes of one alias.

    Never lists an index that backs a constraint (primary key, unique or exclusion
    constraint) or that is invalid. Of two exact duplicates one is kept: the one that backs
    a constraint, else the one whose name sorts first.
    """
    result: dict[str, str] = {}
    for index in indexes:
        if not index.usable or backs_constraint(index):
            continue
        for other in indexes:
            if not covers(other, index):
                continue
            if (
                _is_exact_duplicate(index, other)
                and not backs_constraint(other)
                and other.name > index.name
            ):
                continue  # of a duplicate pair, keep the first name and report the other
            result[index.name] = other.name
            break
    return result
