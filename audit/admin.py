"""The compliance console: a read-only view of the audit trail that stays quick at millions of rows."""

from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .actions import AuditAction
from .admin_filters import (
    ActionFamilyFilter,
    CreatedAtRangeFilter,
    EntityFilter,
    EntityIdFilter,
    RequestIdFilter,
)
from .admin_text import text_column
from .catalogue import registered_action_save
from .export.bundle import ExportError, ExportScope
from .export.flat import Format, export_entries
from .export.service import cover_for, export_response
from .models import AuditLog, RegisteredAction
from .privacy import reveal, subjects_of
from .selectors import console_search, same_entity, same_request
from .services import record
from .text import iso_utc, printable

# The query parameters the changelist takes besides Django's own (page, search, popup...): those of the filters,
# each on an index. Anything else, e.g. a hand-made ?meta__icontains=x, would scan the whole table.
CHANGELIST_LOOKUPS = frozenset(
    {"family", "entity", "entity_id", "request_id", "outcome__exact", "outcome__isnull", "since", "until"}
)


class BoundedCountPaginator(Paginator):
    """Counts at most ``COUNT_CAP`` rows, so a changelist over millions of rows never runs a full COUNT(*)."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.COUNT_CAP].count()

    @property
    def capped(self) -> bool:
        """Whether there are more rows than were counted: the templates then say "10000 or more"."""
        return self.count >= self.COUNT_CAP


class NewestFirstChangeList(ChangeList):
    """Always ordered by id, newest first: the primary key read backwards, whatever ``?o=`` asks. Sorting by another
    column would sort the whole (filtered) table before the first page could be shown."""

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list[str]:
        return ["-id"]

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The page's personal fields decrypted with one query for all their keys. Iterating fills the queryset's
        # cache, so the template shows these very instances; the paginator's page shares that queryset.
        reveal(self.result_list)


def _json_cell(value: Any) -> str:
    return printable(value) if isinstance(value, str) else printable(repr(value)) if value is not None else "—"


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created_at_iso",
        "actor_text",
        "action",
        "entity_text",
        "entity_id_text",
        "outcome",
        "ip_address",
        "sealed",
    )
    list_display_links = ("id", "created_at_iso")
    list_filter = (ActionFamilyFilter, "outcome", EntityFilter, CreatedAtRangeFilter, RequestIdFilter, EntityIdFilter)
    list_select_related = ("seal",)
    list_per_page = 50
    # A "Show all" link would load every matching row at once.
    list_max_show_all = 0
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = BoundedCountPaginator
    # The search itself is console_search: exact matches on indexed columns. Listed here for the search box.
    search_fields = ("id", "request_id", "entity_id", "actor__username")
    search_help_text = "Exact match on entry id, request id, entity id or the actor's username."
    ordering = ("-id",)
    actions = ("export_csv", "export_json", "export_bundle")
    fields = (
        "id",
        "created_at_detail",
        "actor_text",
        "action",
        "action_description",
        "entity_text",
        "entity_id_text",
        "outcome",
        "changes_table",
        "meta_table",
        "perms_text",
        "ip_address",
        "user_agent_text",
        "request_id_text",
        "on_behalf_of_text",
        "client_ip",
        "occurred_at_detail",
        "seal_status",
        "same_request_entries",
        "same_entity_entries",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # The site-wide "delete selected" is filtered out by the missing delete permission already; this keeps it
        # out even if a permission were ever granted by mistake (the database triggers would refuse it anyway).
        actions.pop("delete_selected", None)
        return actions

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return NewestFirstChangeList

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in CHANGELIST_LOOKUPS

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return console_search(queryset, search_term), False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The detail page shows the seal too; the changelist joins it through list_select_related.
        return super().get_queryset(request).select_related("seal")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        # Only a rendered list is a view: an export records AUDIT.EXPORT itself, a redirect shows nothing.
        if isinstance(response, TemplateResponse) and response.status_code == 200:
            filters = {key: value for key, value in request.GET.items()}
            shown = response.context_data["cl"].result_list
            record(
                AuditAction.AUDIT_VIEW,
                entity="AuditLog",
                meta={"filters": filters, "via": "admin", "subjects": subjects_of(shown)},
                actor=request.user,
            )
        return response

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> AuditLog | None:
        entry = super().get_object(request, object_id, from_field)
        if entry is not None:
            reveal([entry])
        return entry

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200:
            shown = response.context_data["original"] if isinstance(response, TemplateResponse) else None
            record(
                AuditAction.AUDIT_VIEW,
                entity="AuditLog",
                entity_id=object_id,
                meta={"via": "admin", "subjects": subjects_of([shown] if shown is not None else [])},
                actor=request.user,
            )
        return response

    # --- exports --------------------------------------------------------------------------------------------------

    @staticmethod
    def _selection(request: HttpRequest, count: int | None = None) -> dict[str, Any]:
        """How the rows were chosen, for the AUDIT.EXPORT entry and the manifest: ticked rows, or every row
        matching the console's filters ("select all")."""
        if request.POST.get("select_across") == "1":
            selection: dict[str, Any] = {"ids": "all matching", "console_filters": dict(request.GET.items())}
        else:
            selection = {"ids": "selected"}
        return selection if count is None else {**selection, "count": count}

    def _export_flat(self, request: HttpRequest, queryset: QuerySet, fmt: Format) -> HttpResponseBase | None:
        try:
            return export_entries(queryset, fmt=fmt, actor=request.user, selection=self._selection(request))
        except ExportError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponseBase | None:
        return self._export_flat(request, queryset, "csv")

    @admin.action(description="Export selected as JSON", permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet) -> HttpResponseBase | None:
        return self._export_flat(request, queryset, "json")

    @admin.action(description="Export selected as a verifiable bundle (ZIP)", permissions=["view"])
    def export_bundle(self, request: HttpRequest, queryset: QuerySet) -> HttpResponseBase | None:
        scope = ExportScope(entries=queryset, rules=[], filters=self._selection(request, queryset.count()))
        try:
            return export_response(
                scope=scope,
                actor=request.user,
                cover=lambda summary: cover_for(scope, summary, searched="entries selected in the console"),
            )
        except ExportError as exc:
            # E.g. no signing key configured: a message on the changelist, not a server error.
            self.message_user(request, str(exc), messages.ERROR)
            return None

    # --- columns and fields ---------------------------------------------------------------------------------------

    @admin.display(description="time (UTC)")
    def created_at_iso(self, entry: AuditLog) -> str:
        return iso_utc(entry.created_at)

    @admin.display(description="time (UTC)")
    def created_at_detail(self, entry: AuditLog) -> str:
        # Microseconds too: entries of one request often share the second.
        return iso_utc(entry.created_at, timespec="microseconds")

    @admin.display(description="occurred at (as the source system says)")
    def occurred_at_detail(self, entry: AuditLog) -> str:
        return iso_utc(entry.occurred_at, timespec="microseconds") or "—"

    @admin.display(description="on behalf of")
    def on_behalf_of_text(self, entry: AuditLog) -> str:
        return printable(entry.on_behalf_of) or "—"

    @admin.display(description="actor")
    def actor_text(self, entry: AuditLog) -> str:
        label = printable(entry.actor_label) or "—"
        return f"{label} (#{entry.actor_id})" if entry.actor_id else label

    entity_text = text_column("entity")
    entity_id_text = text_column("entity_id", description="entity id")
    request_id_text = text_column("request_id", description="request id")
    user_agent_text = text_column("user_agent")

    @admin.display(description="description")
    def action_description(self, entry: AuditLog) -> str:
        try:
            return AuditAction(entry.action).label
        except ValueError:
            return "—"

    @admin.display(boolean=True, description="sealed")
    def sealed(self, entry: AuditLog) -> bool:
        return getattr(entry, "seal", None) is not None

    @admin.display(description="changes")
    def changes_table(self, entry: AuditLog) -> str:
        if not entry.changes:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            (
                (printable(field), _json_cell(change.get("before")), _json_cell(change.get("after")))
                if isinstance(change, dict)
                else (printable(field), "—", _json_cell(change))
                for field, change in entry.changes.items()
            ),
        )
        return format_html(
            '<table class="audit-diff"><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="context (meta)")
    def meta_table(self, entry: AuditLog) -> str:
        if not entry.meta:
            return "—"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((printable(k), _json_cell(v)) for k, v in entry.meta.items())
        )
        return format_html('<table class="audit-meta"><tbody>{}</tbody></table>', rows)

    @admin.display(description="permissions at the time")
    def perms_text(self, entry: AuditLog) -> str:
        perms = entry.perms_snapshot.get("perms", []) if isinstance(entry.perms_snapshot, dict) else []
        return printable(", ".join(map(str, perms))) or "none"

    @admin.display(description="seal")
    def seal_status(self, entry: AuditLog) -> str:
        seal = getattr(entry, "seal", None)
        if seal is None:
            return "Not sealed yet: the sealer appends committed entries to the chain within seconds."
        return format_html(
            "Sealed at chain position #{} on {}<br>hash <code>{}</code><br>previous <code>{}</code>",
            seal.chain_index,
            iso_utc(seal.sealed_at, timespec="microseconds"),
            seal.hash,
            seal.prev_hash,
        )

    # --- related entries on the detail page -----------------------------------------------------------------------

    def _changelist_url(self, **params: str) -> str:
        return reverse(f"{self.admin_site.name}:audit_auditlog_changelist") + "?" + urlencode(params)

    def _related(self, entries: list[AuditLog], link: str, link_text: str) -> str:
        """A link to all of them in the changelist, then the newest few (no count: the link's list has the rest)."""
        if not entries:
            return format_html('No other entries. <a href="{}">{}</a>', link, link_text)
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse(f"{self.admin_site.name}:audit_auditlog_change", args=[other.pk]),
                    other.pk,
                    iso_utc(other.created_at),
                    printable(other.actor_label) or "—",
                    other.action,
                    other.outcome,
                )
                for other in entries
            ),
        )
        return format_html(
            '<a href="{}">{}</a><table class="audit-related"><thead><tr><th>entry</th><th>time (UTC)</th>'
            "<th>actor</th><th>action</th><th>outcome</th></tr></thead><tbody>{}</tbody></table>",
            link,
            link_text,
            rows,
        )

    @admin.display(description="same request (newest 10 others)")
    def same_request_entries(self, entry: AuditLog) -> str:
        if not entry.request_id:
            return "— (recorded outside a request)"
        return self._related(
            reveal_list(same_request(entry)),
            self._changelist_url(request_id=entry.request_id),
            f"All entries of request {printable(entry.request_id)}",
        )

    @admin.display(description="same entity (newest 10 others)")
    def same_entity_entries(self, entry: AuditLog) -> str:
        if not entry.entity or not entry.entity_id:
            return "— (no entity id)"
        return self._related(
            reveal_list(same_entity(entry)),
            self._changelist_url(entity=entry.entity, entity_id=entry.entity_id),
            f"All entries of {printable(entry.entity)} {printable(entry.entity_id)}",
        )


def reveal_list(entries: list[AuditLog]) -> list[AuditLog]:
    reveal(entries)
    return entries


@admin.register(RegisteredAction)
class RegisteredActionAdmin(admin.ModelAdmin):
    """Other systems' action codes. Saved through the catalogue service, so every change is audited."""

    list_display = ("code", "description", "compliance", "updated_at")
    search_fields = ("code", "description")
    fields = ("code", "description", "compliance")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Entries refer to the code: renaming it would silently re-label history.
        return ("code",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RegisteredAction, form: Any, change: bool) -> None:
        saved = registered_action_save(
            actor=request.user, code=obj.code, description=obj.description, compliance=obj.compliance
        )
        obj.pk = saved.pk


from . import foia_admin  # noqa: E402,F401  (FOIA requests and redaction profiles)
