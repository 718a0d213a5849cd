"""The admin of the scoping scenario: TenantScopedAdmin as a user mixes it in."""

from django.contrib import admin

from tenant_indexes.admin import TenantScopedAdmin

from .models import Comment, Project, Task


@admin.register(Project)
class ProjectAdmin(TenantScopedAdmin, admin.ModelAdmin):
    list_display = ["name", "tenant"]
    search_fields = ["name"]


@admin.register(Task)
class TaskAdmin(TenantScopedAdmin, admin.ModelAdmin):
    list_display = ["title", "project", "tenant"]
    list_select_related = ["project"]
    search_fields = ["title"]
    ordering = ["title"]


@admin.register(Comment)
class CommentAdmin(TenantScopedAdmin, admin.ModelAdmin):
    """Its task is picked through the admin's autocomplete view (a JSON view of TaskAdmin)."""

    list_display = ["body", "task"]
    autocomplete_fields = ["task"]
