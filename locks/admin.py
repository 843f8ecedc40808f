"""The locks in the console: who holds what, for how long, and a force-release that goes through the service.

Locks are made by checkout (REST or Git LFS) and released by checkin or force-checkin, each audited; the admin
therefore neither adds, edits nor deletes them. Its one write is the force-release action, which calls
``services.force_checkin`` per lock, so the right (global or per repository), the reason and the audit entries
are exactly those of the API.
"""

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.admin_text import text_column

from . import services
from .models import FileLock, Repository


def lock_age(locked_at: dt.datetime, now: dt.datetime) -> str:
    """``"5 min"``, ``"3 h"``, ``"2 d"``: coarse on purpose, the exact time is in the locked_at column."""
    seconds = max(0, int((now - locked_at).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    """Repositories, with their lock count and who may force-release locks in each.

    The per-repository right is given and taken away by ``manage.py locks_right``, which goes through the audited
    service; guardian's own object-permission pages would change rights without an audit entry, so they are not
    offered here.
    """

    list_display = ("slug", "name_text", "lock_count", "created_at")
    search_fields = ("slug", "name")
    ordering = ("slug",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The slug is the last part of the repository's Git LFS URL and names it in the audit trail: renaming it
        # would break the clients' configured URLs and re-label history.
        if obj is None:
            return ("created_at",)
        return ("slug", "created_at", "force_unlock_holders")

    name_text = text_column("name", sortable=True)

    @admin.display(description="may force-release locks here (manage.py locks_right)")
    def force_unlock_holders(self, repository: Repository) -> str:
        holders = services.repository_rights_snapshot(repository)["force_unlock"]
        return ", ".join(holders) or "nobody but lock administrators"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Repository]:
        # One query for the whole page instead of a COUNT per row.
        return super().get_queryset(request).annotate(lock_count=Count("locks"))

    @admin.display(description="locks", ordering="lock_count")
    def lock_count(self, repository: Repository) -> str:
        url = reverse("admin:locks_filelock_changelist") + f"?repository__id__exact={repository.pk}"
        return format_html('<a href="{}">{}</a>', url, repository.lock_count)

    # Every change goes through the audited services: the admin's own save and delete would leave no entry.
    def save_model(self, request: HttpRequest, obj: Repository, form: Any, change: bool) -> None:
        if change:
            services.repository_rename(actor=request.user, repository_id=obj.pk, name=form.cleaned_data["name"])
        else:
            obj.pk = services.repository_create(actor=request.user, slug=obj.slug, name=obj.name).pk

    def delete_model(self, request: HttpRequest, obj: Repository) -> None:
        services.repository_delete(actor=request.user, repository_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        for pk in queryset.values_list("pk", flat=True):
            services.repository_delete(actor=request.user, repository_id=pk)


class ForceReleaseForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=2000,
        help_text="Recorded in the audit trail with each release; the owners can read it there.",
    )


@admin.register(FileLock)
class FileLockAdmin(admin.ModelAdmin):
    list_display = ("path_text", "repository", "owner", "age", "locked_at", "ref_name_text")
    list_filter = ("repository",)
    list_select_related = ("repository", "owner")
    search_fields = ("path",)
    search_help_text = "Part of the path."
    ordering = ("repository__slug", "path")
    actions = ["force_release"]
    fields = ("repository", "path_text", "owner", "ref_name_text", "locked_at", "age", "reason_text")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A plain delete would release locks without a reason or an audit entry; force-release is the way.
        return False

    path_text = text_column("path", sortable=True)
    ref_name_text = text_column("ref_name")
    reason_text = text_column("reason")

    @admin.display(description="age", ordering="-locked_at")
    def age(self, lock: FileLock) -> str:
        return lock_age(lock.locked_at, timezone.now())

    # Offered to everyone who can see the locks: the right may be held on some repositories only (guardian), so
    # the service decides per lock, and a refusal is recorded as "denied" instead of the action being hidden.
    @admin.action(description="Force-release selected locks")
    def force_release(self, request: HttpRequest, queryset: QuerySet[FileLock]) -> HttpResponse | None:
        form = ForceReleaseForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._confirmation_page(request, queryset, form)
        reason = form.cleaned_data["reason"]
        released: list[str] = []
        for lock in queryset:
            try:
                services.force_checkin(actor=request.user, lock_id=lock.pk, reason=reason)
            except (PermissionDenied, ValidationError) as exc:
                messages.error(request, f"{lock}: not released: {_message(exc)}")
            except ObjectDoesNotExist:
                # Checked in by its owner between the selection and the confirmation.
                messages.warning(request, f"{lock}: already released")
            else:
                released.append(str(lock))
        if released:
            messages.success(request, f"Released {len(released)} lock(s): {', '.join(released)}")
        return None

    def _confirmation_page(
        self, request: HttpRequest, queryset: QuerySet[FileLock], form: ForceReleaseForm
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Force-release locks",
            "opts": self.model._meta,
            "locks": queryset.select_related("repository", "owner"),
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/locks/filelock/force_release.html", context)


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return " ".join(message for messages_ in exc.message_dict.values() for message in messages_)
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
