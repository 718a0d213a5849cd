from django.apps import AppConfig


class TenantIndexesConfig(AppConfig):
    name = "tenant_indexes"
    verbose_name = "Tenant indexes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the setting_changed receiver.
        from . import conf  # noqa: F401

        # The system checks: declarations, and the live catalog under Tags.database.
        from .checks import register as register_checks

        register_checks()
        # W001/W002 in check_databases, when CHECK_INCLUDES_USAGE is on.
        from .usage import register_check_producers

        register_check_producers()
        # Fail-closed scoping binds the tenant when a query is compiled, not when it is built.
        from .querybinding import install as install_query_binding

        install_query_binding()
        # E030/W030: tables of models that ask for row-level security (tenant_rls = True).
        from .health import register_finding_producer
        from .rls import rls_check_producer

        register_finding_producer(rls_check_producer)
        # E021: a tenant column of another type than Django's (a database built elsewhere).
        from .adoption import tenant_column_type_findings

        register_finding_producer(tenant_column_type_findings)
        # W060/W061 in check_databases, when CHECK_INCLUDES_ADVISOR is on.
        from .advisor import register_check_producer

        register_check_producer()
        # The admin dashboard, when the admin is installed.
        from django.apps import apps

        if apps.is_installed("django.contrib.admin"):
            from .dashboard import register as register_dashboard

            register_dashboard()
        # django-tenants' migrate (migrate_schemas) shares makemigrations' autodetector.
        if apps.is_installed("django_tenants"):
            from .contrib.django_tenants import install

            install()
