"""Every SQL statement that reads PostgreSQL's catalogs and statistics views.

Nothing outside this module queries ``pg_catalog`` or ``pg_stat_*``. Values go through
parameters and identifiers through ``quote_name`` / ``to_regclass``; one snapshot per
database alias costs a constant number of queries, never one per table or index.
"""

from __future__ import annotations

# --- Snapshot of indexes and tables (check_tenant_indexes, tenant_index_stats) ----------

# --- Usage statistics beyond the snapshot (tenant_index_stats) ---------------------------

# --- Index builds (operations.py, repair_tenant_indexes) --------------------------------
