"""A small django-tenants project: one schema per tenant, the shop's tables in each.

Run only in subprocesses (``tests/djtenants/test_djtenants.py``), with
``DJANGO_SETTINGS_MODULE=tests.djtenants.settings``: its backend is django-tenants' own.
"""
