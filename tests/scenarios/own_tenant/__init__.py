"""A project of its own: only ``tenant_indexes`` installed, an ``Organization`` tenant model.

``settings.py`` is the project's settings module; ``accounts`` its app, whose tenant
foreign keys are called ``organization``. The integration test runs ``manage.py`` against a
database of its own with these settings.
"""
