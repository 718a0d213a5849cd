"""The help desk: a tenant model and eight tenant-scoped tables, ready to migrate.

Install it beside the core app (``INSTALLED_APPS += ["tenant_indexes",
"tenant_indexes.helpdesk"]``) to get the help-desk schema with its tenant indexes; a project
with its own models installs ``"tenant_indexes"`` alone.
"""
