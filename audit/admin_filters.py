"""Changelist filters that stay on the indexes: fixed choices (no DISTINCT scans) and a date range."""

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .actions import ENTITIES, families
from .selectors import with_action_prefix
from .text import printable


class ActionFamilyFilter(admin.SimpleListFilter):
    title = "action family"
    parameter_name = "family"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(family, family) for family in families()]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        if self.value():
            return with_action_prefix(queryset, f"{self.value()}.")
        return queryset


class EntityFilter(admin.SimpleListFilter):
    title = "entity"
    parameter_name = "entity"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(entity, entity) for entity in ENTITIES]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(entity=self.value())
        return queryset


def _parse_bound(value: str, *, date_runs_to_end_of_day: bool = False) -> dt.datetime:
    """The time ``value`` names, in UTC. A plain date is its midnight (UTC), or with ``date_runs_to_end_of_day`` the
    next midnight. IncorrectLookupParameters (the changelist's ?e=1) for anything else: text that is no date, a date
    that does not exist (2026-13-01, which the parsers raise ValueError for), or one beyond the range of times
    (9999-12-31 to the end of its day)."""
    error = IncorrectLookupParameters(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time")
    try:
        moment = parse_datetime(value)
        day = parse_date(value)
        if moment is None and day is None:
            raise error
        if moment is None:
            moment = dt.datetime.combine(day, dt.time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, dt.UTC)
        # In UTC: PostgreSQL refuses offsets beyond ±15:59 in a query, which Python reads (+18:00).
        moment = moment.astimezone(dt.UTC)
        if date_runs_to_end_of_day and day is not None:
            moment += dt.timedelta(days=1)
    except (ValueError, OverflowError) as exc:
        raise error from exc
    return moment


class CreatedAtRangeFilter(admin.ListFilter):
    """From / until dates (UTC); until is inclusive of its whole day when given as a date."""

    title = "date range (UTC)"
    template = "admin/audit/date_range_filter.html"
    since_param = "since"
    until_param = "until"

    def __init__(self, request: Any, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in (self.since_param, self.until_param):
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.since_param, self.until_param]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        since = self.used_parameters.get(self.since_param)
        until = self.used_parameters.get(self.until_param)
        if since:
            queryset = queryset.filter(created_at__gte=_parse_bound(since))
        if until:
            # A plain date runs to the end of its day. (parse_datetime accepts a plain date too, as midnight.)
            queryset = queryset.filter(created_at__lt=_parse_bound(until, date_runs_to_end_of_day=True))
        return queryset

    def choices(self, changelist: Any) -> list[dict[str, Any]]:
        # The template renders a small form; it needs the other active parameters to keep them.
        kept = {
            key: value
            for key, value in changelist.get_filters_params().items()
            if key not in self.expected_parameters()
        }
        return [
            {
                "since": self.used_parameters.get(self.since_param, ""),
                "until": self.used_parameters.get(self.until_param, ""),
                "kept": [(key, item) for key, values in kept.items() for item in values],
                "clear_url": changelist.get_query_string(remove=self.expected_parameters()),
            }
        ]


class ExactValueFilter(admin.ListFilter):
    """``?<field>=<value>``: one exact value of an indexed column, set by a link (e.g. from an entry's detail page).

    No choices to offer (values are open-ended), so the sidebar shows only the active value with a link to drop it.
    """

    field_name: str = ""
    template = "admin/audit/exact_value_filter.html"

    def __init__(self, request: Any, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        if self.field_name in params:
            self.used_parameters[self.field_name] = params.pop(self.field_name)[-1]

    def has_output(self) -> bool:
        # A filter without output is not applied at all by the changelist: it must say True even when idle.
        return True

    def expected_parameters(self) -> list[str]:
        return [self.field_name]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.used_parameters.get(self.field_name)
        return queryset.filter(**{self.field_name: value}) if value is not None else queryset

    def choices(self, changelist: Any) -> list[dict[str, Any]]:
        value = self.used_parameters.get(self.field_name)
        if value is None:
            return []
        clear_url = changelist.get_query_string(remove=self.expected_parameters())
        return [{"value": printable(value), "clear_url": clear_url}]


class RequestIdFilter(ExactValueFilter):
    title = "request id"
    field_name = "request_id"


class EntityIdFilter(ExactValueFilter):
    title = "entity id"
    field_name = "entity_id"
