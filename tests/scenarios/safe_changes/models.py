"""The safe-changes scenario declares its models step by step as migration states.

``tests/integration/test_safe_changes.py`` builds each step's ``ModelState`` (a plain
``ForeignKey`` to the tenant first, then the ``TenantForeignKey`` conversion, an added,
changed, renamed, unique, expression and removed index), lets makemigrations' autodetector
write the migration into a temporary package, and applies it under a live writer. The app
itself has no model class, so nothing else of the suite sees its table.
"""
