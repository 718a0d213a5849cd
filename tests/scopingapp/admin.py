"""The admin of the scoping scenario: TenantScopedAdmin as a user mixes it in."""

from django.contrib import admin

from tenant_indexes.admin import TenantScopedAdmin

from .models import Project, Task


@admin.register(Project)
class ProjectAdmin(TenantScopedAdmin, admin.ModelAdmin):
    list_display = ["name", "tenant"]
    search_fields = ["name"]


@admin.register(Task)
class TaskAdmin(TenantScopedAdmin, admin.ModelAdmin):
    list_display = ["title", "project", "tenant"]
    list_select_related = ["project"]
