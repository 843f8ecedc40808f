"""FOIA requests: the response deadline, tracking numbers, the audited services and the entries a request covers.

Every change to a request goes through ``foia_request_create`` / ``foia_request_update``: each checks the actor's
right itself (``actor=None`` is the system) and is wrapped by ``@audited``, so the request's history (when it was
logged, every status change, the manifest it was released with) is in the tamper-evident trail, as 5 U.S.C.
552(a)(7) asks of tracking.
"""

import datetime as dt
import json
from collections.abc import Container, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .actions import AuditAction
from .authz import require
from .foia_models import SHA256_RE, FoiaRequest, RedactionProfile
from .models import AuditLog
from .services import audited

Status = FoiaRequest.Status

RESPONSE_WORKING_DAYS = 20  # 5 U.S.C. 552(a)(6)(A)(i)
TRACKING_DIGITS = 6
# Two requests logged at once may compute the same next number; the unique index refuses the second, which then
# takes the following number. More attempts than concurrent officers could ever collide.
TRACKING_ATTEMPTS = 10

# Releases happen only through the export (it sets the manifest hash), hence "released" is reachable from
# "processing" only and is never offered to a form.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.RECEIVED: frozenset({Status.PROCESSING, Status.CLOSED}),
    Status.PROCESSING: frozenset({Status.RELEASED}),
    Status.RELEASED: frozenset({Status.CLOSED}),
    Status.CLOSED: frozenset(),
}

CREATE_FIELDS = frozenset(
    {
        "requester",
        "requester_email",
        "description",
        "received_on",
        "scope_actor",
        "scope_action_prefix",
        "scope_entity",
        "scope_since",
        "scope_until",
        "redaction_profile",
    }
)
UPDATE_FIELDS = CREATE_FIELDS | {"status", "manifest_sha256"}
# What a release was made of: changing it afterwards would make the request disagree with the bundle sent out.
SCOPE_FIELDS = frozenset(
    {"scope_actor", "scope_action_prefix", "scope_entity", "scope_since", "scope_until", "redaction_profile"}
)
SNAPSHOT_FIELDS = (
    "tracking_number",
    "requester",
    "requester_email",
    "description",
    "received_on",
    "due_on",
    "status",
    "scope_actor",
    "scope_action_prefix",
    "scope_entity",
    "scope_since",
    "scope_until",
    "redaction_profile",
    "released_at",
    "manifest_sha256",
)


# --- working days -------------------------------------------------------------------------------------------------


def is_working_day(day: dt.date, holidays: Container[dt.date] = ()) -> bool:
    return day.weekday() < 5 and day not in holidays


def working_days_after(day: dt.date, days: int, holidays: Container[dt.date] = ()) -> dt.date:
    """The date ``days`` working days after ``day``: Saturdays and Sundays (and any ``holidays``) are skipped.

    ``day`` itself never counts, so a request received on a weekend has its first working day on Monday.
    ``working_days_after(day, 0)`` is ``day``.
    """
    if days < 0:
        raise ValueError("days must not be negative")
    current, left = day, days
    while left:
        current += dt.timedelta(days=1)
        if is_working_day(current, holidays):
            left -= 1
    return current


def working_days_left(due_on: dt.date, today: dt.date, holidays: Container[dt.date] = ()) -> int:
    """Working days from ``today`` to ``due_on`` (the due day counts, today does not); negative once overdue."""
    start, end, sign = (today, due_on, 1) if due_on >= today else (due_on, today, -1)
    count, current = 0, start
    while current < end:
        current += dt.timedelta(days=1)
        count += is_working_day(current, holidays)
    return sign * count


def due_date(received_on: dt.date) -> dt.date:
    return working_days_after(received_on, RESPONSE_WORKING_DAYS)


# --- tracking numbers ---------------------------------------------------------------------------------------------


def tracking_prefix(year: int) -> str:
    return f"FOIA-{year:04d}-"


def next_tracking_number(year: int) -> str:
    """The number after the year's highest, e.g. ``FOIA-2026-000124``; the first of a year is ``...-000001``."""
    prefix = tracking_prefix(year)
    # Fixed-width digits: the text order is the numeric order, and the unique index serves the lookup.
    last = (
        FoiaRequest.objects.filter(tracking_number__startswith=prefix)
        .order_by("-tracking_number")
        .values_list("tracking_number", flat=True)
        .first()
    )
    number = int(last[len(prefix) :]) + 1 if last else 1
    if number >= 10**TRACKING_DIGITS:
        raise ValidationError({"received_on": f"The tracking numbers of {year} are used up."})
    return f"{prefix}{number:0{TRACKING_DIGITS}d}"


def _insert_with_tracking_number(foia: FoiaRequest) -> None:
    """Insert ``foia`` under the year's next free tracking number (the year it was received)."""
    for attempt in range(TRACKING_ATTEMPTS):
        foia.tracking_number = next_tracking_number(foia.received_on.year)
        try:
            # A savepoint: the refused INSERT must not abort the service's transaction (PostgreSQL would).
            with transaction.atomic():
                foia.save(force_insert=True)
            return
        except IntegrityError:
            taken = FoiaRequest.objects.filter(tracking_number=foia.tracking_number).exists()
            if not taken or attempt == TRACKING_ATTEMPTS - 1:
                raise  # another constraint, or contention beyond reason: not ours to hide


# --- services -----------------------------------------------------------------------------------------------------


def foia_request_snapshot(foia: FoiaRequest) -> dict[str, Any]:
    """The request as an entry's before/after shows it (the profile by name: ids mean nothing to a reader)."""
    values: dict[str, Any] = {name: getattr(foia, name) for name in SNAPSHOT_FIELDS if name != "redaction_profile"}
    profile = foia.redaction_profile
    values["redaction_profile"] = profile.name if profile is not None else None
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def _foia_request(*, request_id: int, **_: Any) -> FoiaRequest:
    # Locks the request row only: FOR UPDATE cannot reach across the outer join of the optional profile.
    return FoiaRequest.objects.select_for_update(of=("self",)).select_related("redaction_profile").get(pk=request_id)


def _tracking_meta(before: FoiaRequest | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    # An update's diff holds only what changed; the number is what a FOIA officer searches the trail by.
    return {"tracking_number": before.tracking_number} if before is not None else {}


def _check_fields(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TypeError(f"not a field of a FOIA request that can be set: {', '.join(unknown)}")


def _profile(value: Any) -> RedactionProfile | None:
    """A profile given as object, id or None (the admin passes objects, scripts ids)."""
    if value is None or isinstance(value, RedactionProfile):
        return value
    try:
        return RedactionProfile.objects.get(pk=value)
    except (RedactionProfile.DoesNotExist, ValueError, TypeError) as error:
        raise ValidationError({"redaction_profile": f"No redaction profile with id {value!r}."}) from error


def _normalised(name: str, value: Any) -> Any:
    """Text stripped; None as "" for the text fields, whose "not set" is the empty string."""
    if isinstance(value, str):
        return value.strip()
    if value is None and isinstance(FoiaRequest._meta.get_field(name), (models.CharField, models.TextField)):
        return ""
    return value


def _assign(foia: FoiaRequest, fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        if name == "redaction_profile":
            foia.redaction_profile = _profile(value)
        else:
            setattr(foia, name, _normalised(name, value))


def check_transition(current: str, new: str) -> None:
    """ValidationError on "status" unless a request may go from ``current`` to ``new`` (staying put is fine)."""
    if new == current:
        return
    if new not in Status.values:
        raise ValidationError({"status": f"Unknown status {new!r}."})
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (it is closed)"
        raise ValidationError({"status": f"A {current} request cannot become {new}; allowed: {allowed}."})


def next_statuses(current: str) -> list[str]:
    """The statuses a form may offer: the current one and its successors, except "released" (the export's)."""
    successors = TRANSITIONS[current] - {Status.RELEASED}
    return [current, *(status for status in Status.values if status in successors)]


@audited(AuditAction.FOIA_REQUEST_CREATE, entity="FoiaRequest", snapshot_with=foia_request_snapshot)
def foia_request_create(*, actor: Any, reason: str = "", **fields: Any) -> FoiaRequest:
    """Log a new request: tracking number and due date are computed, the status is "received".

    ``fields``: requester, requester_email, description, received_on (default today), scope_actor,
    scope_action_prefix, scope_entity, scope_since, scope_until, redaction_profile (object or id).
    Raises PermissionDenied without ``audit.add_foiarequest``, ValidationError for bad values.
    """
    require(actor, "audit.add_foiarequest")
    _check_fields(fields, CREATE_FIELDS)
    foia = FoiaRequest(status=Status.RECEIVED)
    _assign(foia, {"received_on": timezone.localdate(), **fields})
    # The number is allocated at the INSERT; its uniqueness is the database's to enforce, not a prior SELECT's.
    # The due date follows from received_on once full_clean has made a date of it.
    foia.full_clean(exclude=["tracking_number", "due_on"])
    foia.due_on = due_date(foia.received_on)
    _insert_with_tracking_number(foia)
    return foia


@audited(
    AuditAction.FOIA_REQUEST_UPDATE,
    entity="FoiaRequest",
    pre_fetch=_foia_request,
    snapshot_with=foia_request_snapshot,
    meta_from=_tracking_meta,
)
def foia_request_update(*, actor: Any, request_id: int, reason: str = "", **fields: Any) -> FoiaRequest:
    """Change a request: only the given fields are set (None clears an optional one).

    ``fields``: those of ``foia_request_create``, plus ``status`` and ``manifest_sha256``. The due date follows a
    changed received_on. Status goes received -> processing -> released -> closed, or received -> closed;
    "released" needs ``manifest_sha256`` (the export's call) and sets ``released_at``; a released request may be
    released again with a new manifest. Once released, the scope and profile are frozen; once closed, everything.
    Raises PermissionDenied without ``audit.change_foiarequest``, ValidationError (on the field) otherwise.
    """
    require(actor, "audit.change_foiarequest")
    _check_fields(fields, UPDATE_FIELDS)
    foia = FoiaRequest.objects.select_related("redaction_profile").get(pk=request_id)
    current = foia.status
    new_status = fields.get("status", current)
    check_transition(current, new_status)
    manifest = fields.get("manifest_sha256")
    frozen = set(fields) if current == Status.CLOSED else SCOPE_FIELDS if current == Status.RELEASED else set()
    for name in sorted(frozen & set(fields)):
        if _differs(foia, name, fields[name]):
            why = "is closed: nothing about it changes" if current == Status.CLOSED else "was released with this scope"
            raise ValidationError({name: f"{foia.tracking_number} {why}."})
    if new_status == Status.RELEASED and (new_status != current or manifest is not None):
        if not isinstance(manifest, str) or not SHA256_RE.match(manifest):
            raise ValidationError(
                {"manifest_sha256": "A release records the SHA-256 of its bundle's manifest (64 hex characters)."}
            )
        foia.released_at = timezone.now()
    elif manifest is not None:
        raise ValidationError({"manifest_sha256": "A manifest hash is recorded only with the release."})
    _assign(foia, fields)
    foia.full_clean(exclude=["due_on"])
    foia.due_on = due_date(foia.received_on)
    foia.save()
    return foia


def _differs(foia: FoiaRequest, name: str, value: Any) -> bool:
    if name == "redaction_profile":
        profile = _profile(value)
        return (profile.pk if profile else None) != foia.redaction_profile_id
    return _normalised(name, value) != getattr(foia, name)


# --- the entries a request covers ---------------------------------------------------------------------------------


def entries_in_scope(filters: Mapping[str, Any]) -> QuerySet[AuditLog]:
    """The entries matching ``FoiaRequest.scope_filters()``-shaped ``filters``, oldest first.

    actor: the actor's username at the time (``actor_label``); action_prefix: the action starts with it;
    entity: exact; since: created at or after (inclusive); until: created before (exclusive). Reading the
    manifest's own filters back keeps what the manifest says and what was selected the same thing.
    """
    entries = AuditLog.objects.all()
    if filters.get("actor"):
        entries = entries.filter(actor_label=filters["actor"])
    if filters.get("action_prefix"):
        entries = entries.filter(action__startswith=filters["action_prefix"])
    if filters.get("entity"):
        entries = entries.filter(entity=filters["entity"])
    if filters.get("since"):
        entries = entries.filter(created_at__gte=_datetime(filters["since"]))
    if filters.get("until"):
        entries = entries.filter(created_at__lt=_datetime(filters["until"]))
    return entries.order_by("id")


def foia_scope(request: FoiaRequest) -> QuerySet[AuditLog]:
    """The audit entries ``request`` asks for, ordered by id."""
    return entries_in_scope(request.scope_filters())


def _datetime(value: dt.datetime | str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if timezone.is_naive(moment):
        raise ValueError(f"{value!r} carries no time zone")
    return moment


def _when(value: dt.datetime | str) -> str:
    moment = _datetime(value).astimezone(dt.timezone.utc)
    if moment.time() == dt.time(0):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_scope(filters: Mapping[str, Any]) -> str:
    """What was searched, as a sentence for the cover letter, e.g.
    "audit entries with action starting LOCK., from 2026-01-01 to 2026-02-01 (exclusive)"."""
    parts = []
    if filters.get("actor"):
        parts.append(f"by the user {filters['actor']}")
    if filters.get("action_prefix"):
        parts.append(f"with action starting {filters['action_prefix']}")
    if filters.get("entity"):
        parts.append(f"about {filters['entity']}")
    since, until = filters.get("since"), filters.get("until")
    if since and until:
        parts.append(f"from {_when(since)} to {_when(until)} (exclusive)")
    elif since:
        parts.append(f"from {_when(since)}")
    elif until:
        parts.append(f"before {_when(until)}")
    return " ".join(["all audit entries" if not parts else "audit entries", ", ".join(parts)]).strip()
