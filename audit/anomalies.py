"""Automated review of the audit trail (PCI DSS 10.4.1.1, SOC 2 CC7.2): rules that flag suspicious sequences.

The rules:

- ``denied_then_privileged``: at least ``AUDIT_ANOMALY_DENIED_COUNT`` refused attempts (outcome ``denied``) by one
  actor, or from one address, then a successful privileged action by that actor / from that address, all within
  ``AUDIT_ANOMALY_WINDOW_MINUTES``: someone probing for a right and then getting one.
- ``failed_logins``: more than ``AUDIT_ANOMALY_FAILED_LOGINS`` failed logins for one user name or from one address
  within the window: password guessing or credential stuffing.
- ``force_release_off_hours``: a lock force-released outside ``AUDIT_WORKING_HOURS`` / ``AUDIT_WORKING_DAYS`` in
  ``AUDIT_WORKING_TIMEZONE``: an override nobody was around to see.

Each entry is a possible *trigger* (the privileged action, the failed login, the force release); the rule looks back
over the window from it. A trigger is tried by actor (or user name) first and by address second, and the first
subject that matches takes it, so one incident raises one anomaly, not one per way of counting it.

How it runs: the sealer calls ``scan_new_entries`` after it sealed something. The scan reads the entries sealed
since its watermark (a chain position, see ``AnomalyScanState``), so each entry is examined once, also entries
whose transactions committed out of id order. ``manage.py audit_scan`` runs the same scan, or with ``--since-id``
examines older entries again (``rescan``).

Each hit is recorded once as an ``AUDIT.ANOMALY`` entry and tracked in ``Anomaly``. A hit whose trigger falls into
the window of an anomaly already raised for the same rule and subject only moves that anomaly's
``last_evidence_id`` on; after the window a sustained attack raises the next one, so it keeps being reported
once per window, not once per event.
"""

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, transaction
from django.db.models import BooleanField, Count, Max, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from . import conf, context, privacy
from .actions import AuditAction
from .models import Anomaly, AnomalyScanState, AuditLog, Seal
from .services import Outcome, audited, record
from .text import printable

Rule = Anomaly.Rule
ACKNOWLEDGE_PERMISSION = "audit.acknowledge_anomaly"
NOTE_MAX_LENGTH = 2000
# An entry's meta is bounded (AUDIT_MAX_JSON_BYTES): a flood of failed logins is named by its first ids and the count.
MAX_EVIDENCE_IDS = 100
SUBJECT_MAX_LENGTH = Anomaly._meta.get_field("subject").max_length
# Detection is the system's doing: no request user or address of whichever request's commit ran the scan.
_SYSTEM_CONTEXT = context.RequestContext(request_id="", ip_address=None, user_agent="")

_EVENT_FIELDS = ("id", "created_at", "action", "outcome", "actor_id", "ip_address")


# --- what the rules read --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """The parts of an audit entry the rules look at."""

    id: int
    created_at: dt.datetime
    action: str
    outcome: str = Outcome.SUCCESS
    actor_id: int | None = None
    ip_address: str | None = None
    # For USER.LOGIN_FAILED: the user name that was tried (meta.username).
    username: str = ""


def _order(event: Event) -> tuple[dt.datetime, int]:
    # Time first, the id breaking ties: entries of one instant keep their insertion order.
    return (event.created_at, event.id)


def _event(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"],
        created_at=row["created_at"],
        action=row["action"],
        outcome=row["outcome"],
        actor_id=row["actor_id"],
        ip_address=row["ip_address"],
        username=str(row["attempted"] or "") if row["action"] == AuditAction.USER_LOGIN_FAILED else "",
    )


def _events(entries: QuerySet[AuditLog]) -> list[Event]:
    # meta.username is read in SQL: whole meta documents (up to AUDIT_MAX_JSON_BYTES each) are not loaded.
    rows = list(
        entries.annotate(attempted=KeyTextTransform("username", "meta")).values(
            *_EVENT_FIELDS, "attempted", "salt", "personal"
        )
    )
    # Encrypted addresses, decrypted with one key query for all rows.
    personal = privacy.personal_of(
        (AuditLog(id=row["id"], actor_id=row["actor_id"], salt=row["salt"], personal=row["personal"]) for row in rows),
        using=entries.db,
        after_commit_scan=True,
    )
    for row in rows:
        found = personal.get(row["id"])
        if found is not None:
            row["ip_address"] = None if found.erased else found.values["ip_address"]
    return [_event(row) for row in rows]


def actor_subject(event: Event) -> str | None:
    return f"actor:{event.actor_id}" if event.actor_id is not None else None


def ip_subject(event: Event) -> str | None:
    return f"ip:{event.ip_address}" if event.ip_address else None


def username_subject(event: Event) -> str | None:
    # Cut to the stored length here, so that dedupe compares the subject as it was stored.
    return f"username:{event.username}"[:SUBJECT_MAX_LENGTH] if event.username else None


Subject = Callable[[Event], str | None]


class Timeline:
    """Events grouped by subject in time order, for "what happened in the window before this" by bisection."""

    def __init__(self, events: Iterable[Event], subjects: Sequence[Subject]) -> None:
        self._events: dict[str, list[Event]] = defaultdict(list)
        unique = {event.id: event for event in events}
        for event in sorted(unique.values(), key=_order):
            for subject_of in subjects:
                subject = subject_of(event)
                if subject:
                    self._events[subject].append(event)
        self._keys = {subject: [_order(event) for event in events] for subject, events in self._events.items()}

    def within(self, subject: str, trigger: Event, window: dt.timedelta) -> list[Event]:
        """``subject``'s events from ``window`` before ``trigger`` up to the trigger itself (both ends included)."""
        keys = self._keys.get(subject)
        if not keys:
            return []
        low = bisect.bisect_left(keys, (trigger.created_at - window, -1))
        high = bisect.bisect_right(keys, _order(trigger))
        return self._events[subject][low:high]


@dataclass(frozen=True)
class Hit:
    """A rule matched: ``evidence`` (oldest first) ends with the trigger."""

    rule: str
    subject: str
    trigger: Event
    evidence: tuple[Event, ...]
    summary: str
    parameters: dict[str, Any] = field(default_factory=dict)


def _who(subject: str) -> str:
    kind, _, value = subject.partition(":")
    if kind == "actor":
        # By id only: the summary is copied into an AUDIT.ANOMALY entry of the system, which no subject's key
        # covers, so a label decrypted here would outlive that subject's erasure.
        return f"user #{value}"
    if kind == "username":
        return f'the user name "{printable(value)}"'
    if kind == "ip":
        return f"the address {value}"
    return "the system"


def _minutes(window: dt.timedelta) -> str:
    return f"{window.total_seconds() / 60:g} min"


# --- the rules ------------------------------------------------------------------------------------------------------


def is_privileged(action: str, patterns: Sequence[str]) -> bool:
    """Whether ``action`` is one of ``patterns`` ("ROLE.*" matching every code that starts "ROLE.")."""
    return any(action.startswith(pattern[:-1]) if pattern.endswith(".*") else action == pattern for pattern in patterns)


def denied_then_privileged(
    trigger: Event, refused: Timeline, *, window: dt.timedelta, count: int, privileged: Sequence[str]
) -> Hit | None:
    """Rule 1: ``count`` or more refusals by the trigger's actor (else from its address) in the window before a
    successful privileged action."""
    if trigger.outcome != Outcome.SUCCESS or not is_privileged(trigger.action, privileged):
        return None
    for subject in (actor_subject(trigger), ip_subject(trigger)):
        if subject is None:
            continue
        attempts = [event for event in refused.within(subject, trigger, window) if event.id != trigger.id]
        if len(attempts) >= count:
            who = _who(subject)
            by = "" if subject == actor_subject(trigger) else f" by {_who(actor_subject(trigger) or '')}"
            return Hit(
                rule=Rule.DENIED_THEN_PRIVILEGED,
                subject=subject,
                trigger=trigger,
                evidence=(*attempts, trigger),
                summary=(
                    f"{len(attempts)} refused attempts by {who} within {_minutes(window)}, "
                    f"then {trigger.action}{by} succeeded"
                ),
                parameters={"denied_count": count, "window_minutes": window.total_seconds() / 60},
            )
    return None


def failed_logins(trigger: Event, failures: Timeline, *, window: dt.timedelta, limit: int) -> Hit | None:
    """Rule 2: more than ``limit`` failed logins for the trigger's user name (else from its address) in the window
    up to and including the trigger."""
    if trigger.action != AuditAction.USER_LOGIN_FAILED:
        return None
    for subject in (username_subject(trigger), ip_subject(trigger)):
        if subject is None:
            continue
        attempts = failures.within(subject, trigger, window)
        if len(attempts) > limit:
            return Hit(
                rule=Rule.FAILED_LOGINS,
                subject=subject,
                trigger=trigger,
                evidence=tuple(attempts),
                summary=f"{len(attempts)} failed logins for {_who(subject)} within {_minutes(window)}",
                parameters={"failed_logins_above": limit, "window_minutes": window.total_seconds() / 60},
            )
    return None


def is_working_time(moment: dt.datetime, *, hours: tuple[dt.time, dt.time], days: frozenset[int], tz: ZoneInfo) -> bool:
    """Whether ``moment`` falls into the working hours of a working day, read in ``tz``.

    A range that spans midnight ("22:00-06:00") belongs to the day it starts on: Friday 02:00 is in Thursday's
    shift.
    """
    local = moment.astimezone(tz)
    start, end = hours
    clock = local.time().replace(tzinfo=None)
    if start < end:
        return local.weekday() in days and start <= clock < end
    if clock >= start:
        return local.weekday() in days
    if clock < end:
        return (local.weekday() - 1) % 7 in days
    return False


def force_release_off_hours(
    trigger: Event, *, hours: tuple[dt.time, dt.time], days: frozenset[int], tz: ZoneInfo
) -> Hit | None:
    """Rule 3: a successful LOCK.FORCE_RELEASE outside working time (refused ones are refusals, rule 1's input)."""
    if trigger.action != AuditAction.LOCK_FORCE_RELEASE or trigger.outcome != Outcome.SUCCESS:
        return None
    if is_working_time(trigger.created_at, hours=hours, days=days, tz=tz):
        return None
    subject = actor_subject(trigger) or ip_subject(trigger) or "system"
    local = trigger.created_at.astimezone(tz)
    span = f"{hours[0]:%H:%M}-{hours[1]:%H:%M}"
    return Hit(
        rule=Rule.FORCE_RELEASE_OFF_HOURS,
        subject=subject,
        trigger=trigger,
        evidence=(trigger,),
        summary=(
            f"{trigger.action} by {_who(subject)} on {local:%a %Y-%m-%d %H:%M} {tz.key}, outside working hours {span}"
        ),
        parameters={"working_hours": span, "working_days": sorted(days), "timezone": tz.key},
    )


# --- the scan -------------------------------------------------------------------------------------------------------


@dataclass
class ScanResult:
    examined: int = 0
    raised: list[Anomaly] = field(default_factory=list)
    watermark: int | None = None  # the chain position the scan moved the watermark to (None: it did not move it)

    def add(self, other: "ScanResult") -> None:
        self.examined += other.examined
        self.raised.extend(other.raised)
        if other.watermark is not None:
            self.watermark = other.watermark


def _locked_state(using: str) -> AnomalyScanState:
    # One scan at a time: dedupe must see the anomalies another scan just raised. The row lock queues scans on
    # PostgreSQL; on SQLite the IMMEDIATE transaction already admits one writer.
    state, _ = AnomalyScanState.objects.using(using).select_for_update().get_or_create(pk=1)
    return state


def _refusals_around(triggers: Sequence[Event], window: dt.timedelta, using: str) -> list[Event]:
    actors = {event.actor_id for event in triggers if event.actor_id is not None}
    addresses = {event.ip_address for event in triggers if event.ip_address}
    if not actors and not addresses:
        return []
    buckets = {privacy.ip_bucket(address) for address in addresses}
    entries = AuditLog.objects.using(using).filter(
        # The bucket finds encrypted addresses too; its other addresses fall into other subjects of the timeline.
        Q(actor_id__in=actors) | Q(ip_address__in=addresses) | Q(ip_bucket__in=buckets),
        outcome=Outcome.DENIED,
        created_at__gte=min(event.created_at for event in triggers) - window,
        created_at__lte=max(event.created_at for event in triggers),
    )
    return _events(entries)


def _failed_logins_around(triggers: Sequence[Event], window: dt.timedelta, using: str) -> list[Event]:
    usernames = {event.username for event in triggers if event.username}
    addresses = {event.ip_address for event in triggers if event.ip_address}
    if not usernames and not addresses:
        return []
    entries = AuditLog.objects.using(using).filter(
        Q(meta__username__in=usernames) | Q(ip_address__in=addresses),
        action=AuditAction.USER_LOGIN_FAILED,
        created_at__gte=min(event.created_at for event in triggers) - window,
        created_at__lte=max(event.created_at for event in triggers),
    )
    return _events(entries)


def _can_trigger() -> Q:
    """The entries ``find_hits`` takes as triggers, as a filter: a successful privileged action or force release, or
    a failed login."""
    successful = Q()
    for pattern in sorted({*conf.anomaly_privileged_actions(), AuditAction.LOCK_FORCE_RELEASE}):
        successful |= Q(action__startswith=pattern[:-1]) if pattern.endswith(".*") else Q(action=pattern)
    return Q(action=AuditAction.USER_LOGIN_FAILED) | (successful & Q(outcome=Outcome.SUCCESS))


def find_hits(events: Sequence[Event], *, using: str = "default") -> list[Hit]:
    """Every rule's hits among ``events`` as triggers, in the order of ``events``; reads the windows before them."""
    window = conf.anomaly_window()
    privileged = conf.anomaly_privileged_actions()
    elevated = [e for e in events if e.outcome == Outcome.SUCCESS and is_privileged(e.action, privileged)]
    logins = [e for e in events if e.action == AuditAction.USER_LOGIN_FAILED]
    releases = [e for e in events if e.action == AuditAction.LOCK_FORCE_RELEASE and e.outcome == Outcome.SUCCESS]
    if not (elevated or logins or releases):
        return []
    # Context is read only for the rules that have a trigger in this batch: most batches need no query at all.
    refused = Timeline(_refusals_around(elevated, window, using) if elevated else [], (actor_subject, ip_subject))
    failures = Timeline(
        [*_failed_logins_around(logins, window, using), *logins] if logins else [], (username_subject, ip_subject)
    )
    count, limit = conf.anomaly_denied_count(), conf.anomaly_failed_logins()
    hours, days, tz = (conf.working_hours(), conf.working_days(), conf.working_timezone()) if releases else (None,) * 3
    hits = []
    for event in events:
        found = [
            denied_then_privileged(event, refused, window=window, count=count, privileged=privileged),
            failed_logins(event, failures, window=window, limit=limit),
            force_release_off_hours(event, hours=hours, days=days, tz=tz) if releases else None,
        ]
        hits.extend(hit for hit in found if hit is not None)
    return hits


def _record_anomaly(hit: Hit, start: dt.datetime, end: dt.datetime, using: str) -> Anomaly:
    evidence_ids = [event.id for event in hit.evidence]
    anomaly = Anomaly.objects.using(using).create(
        rule=hit.rule,
        subject=hit.subject,
        summary=hit.summary[:500],
        first_evidence_id=min(evidence_ids),
        last_evidence_id=max(evidence_ids),
        window_start=start,
        window_end=end,
    )
    shown = (
        evidence_ids
        if len(evidence_ids) <= MAX_EVIDENCE_IDS
        else [*evidence_ids[: MAX_EVIDENCE_IDS - 1], hit.trigger.id]
    )
    with context.bound(_SYSTEM_CONTEXT):
        entry = record(
            AuditAction.AUDIT_ANOMALY,
            entity="Anomaly",
            entity_id=anomaly.pk,
            meta={
                "rule": hit.rule,
                "subject": hit.subject,
                "summary": hit.summary,
                "evidence": shown,
                "evidence_count": len(evidence_ids),
                # isoformat: the JSON encoder would cut the microseconds that tell two entries of one second apart.
                "window": {"start": start.isoformat(), "end": end.isoformat()},
                "parameters": hit.parameters,
            },
            using=using,
        )
    anomaly.entry = entry
    anomaly.save(using=using, update_fields=["entry"])
    return anomaly


def raise_anomalies(hits: Sequence[Hit], *, using: str = "default") -> list[Anomaly]:
    """Record each hit that no anomaly covers yet; move covering anomalies' ``last_evidence_id`` on.

    An anomaly covers a hit of its rule and subject whose trigger lies in its window. A new anomaly's window starts
    at its oldest evidence, or where the subject's previous window ended if that is later, and lasts one window
    length: a sustained attack is reported once per window.
    """
    if not hits:
        return []
    window = conf.anomaly_window()
    known: dict[tuple[str, str], list[Anomaly]] = defaultdict(list)
    for anomaly in Anomaly.objects.using(using).filter(
        rule__in={hit.rule for hit in hits},
        subject__in={hit.subject for hit in hits},
        window_end__gte=min(hit.trigger.created_at for hit in hits) - window,
    ):
        known[(anomaly.rule, anomaly.subject)].append(anomaly)
    raised: list[Anomaly] = []
    moved: dict[int, Anomaly] = {}
    for hit in hits:
        windows = known[(hit.rule, hit.subject)]
        moment = hit.trigger.created_at
        covering = next((a for a in windows if a.window_start <= moment <= a.window_end), None)
        if covering is not None:
            if hit.trigger.id > covering.last_evidence_id:
                covering.last_evidence_id = hit.trigger.id
                moved[covering.pk] = covering
            continue
        start = max([hit.evidence[0].created_at, *(a.window_end for a in windows if a.window_end < moment)])
        anomaly = _record_anomaly(hit, start, start + window, using)
        windows.append(anomaly)
        raised.append(anomaly)
    if moved:
        Anomaly.objects.using(using).bulk_update(moved.values(), ["last_evidence_id"])
    return raised


def _sealed_after(after: int, limit: int, using: str) -> tuple[int, int | None]:
    """How many chain positions follow ``after``, up to ``limit``, and the last of them (None if none)."""
    window = Seal.objects.using(using).filter(chain_index__gt=after).order_by("chain_index")[:limit]
    found = window.aggregate(read=Count("chain_index"), last=Max("chain_index"))
    return found["read"], found["last"]


def _sealed_between(low: int, high: int, using: str) -> Q | RawSQL:
    """Entries whose chain positions lie in (``low``, ``high``], as a filter that keeps their ids in the database."""
    positions = Seal.objects.using(using).filter(chain_index__gt=low, chain_index__lte=high).values("entry_id")
    connection = connections[using]
    if connection.vendor != "postgresql":
        return Q(id__in=positions)
    # ANY(ARRAY(...)): the positions are read first, then each partition's key is probed for them. As IN (...)
    # PostgreSQL may hash every partition of the entries, as it did for a join.
    sql, params = positions.query.get_compiler(using).as_sql()
    qn = connection.ops.quote_name
    column = f"{qn(AuditLog._meta.db_table)}.{qn('id')}"
    return RawSQL(f"{column} = ANY(ARRAY({sql}))", params, output_field=BooleanField())


def _scan_next_batch(using: str, limit: int) -> tuple[int, ScanResult]:
    """Examine up to ``limit`` entries sealed after the watermark; returns (seals read, result)."""
    with transaction.atomic(using=using):
        state = _locked_state(using)
        read, last = _sealed_after(state.last_chain_index, limit, using)
        if last is None:
            return 0, ScanResult()
        # Only entries that can trigger a rule come out of the database (and are decrypted): the rules read the
        # windows before them themselves, so the ordinary traffic that makes up nearly every batch costs nothing
        # per entry here.
        events = _events(
            AuditLog.objects.using(using).filter(_can_trigger(), _sealed_between(state.last_chain_index, last, using))
        )
        if events:
            # Chain order is commit order, which the rules go by.
            position = dict(
                Seal.objects.using(using)
                .filter(entry_id__in=[event.id for event in events])
                .values_list("entry_id", "chain_index")
            )
            events.sort(key=lambda event: position[event.id])
        raised = raise_anomalies(find_hits(events, using=using), using=using)
        state.last_chain_index = last
        state.save(using=using, update_fields=["last_chain_index", "updated_at"])
    return read, ScanResult(examined=read, raised=raised, watermark=last)


def scan_watermark(*, using: str = "default") -> tuple[int, dt.datetime | None]:
    """The last chain position a scan examined (-1: none yet), and when a scan last moved it (by the clock of the
    process that ran it)."""
    found = AnomalyScanState.objects.using(using).filter(pk=1).values_list("last_chain_index", "updated_at").first()
    return found or (-1, None)


def scan_new_entries(*, using: str = "default") -> ScanResult:
    """Examine the entries sealed since the last scan, in chain order, until none is left; each one once.

    Called by the sealer after each batch it seals, and by ``manage.py audit_scan``.
    """
    limit = conf.anomaly_scan_batch_size()
    result = ScanResult()
    while True:
        read, batch = _scan_next_batch(using, limit)
        result.add(batch)
        if read < limit:
            return result


def rescan(*, since_id: int, using: str = "default") -> ScanResult:
    """Examine every entry with an id above ``since_id`` again, oldest first, sealed or not.

    For new or changed thresholds and for history from before the scan existed. The watermark stays where it is;
    hits already raised are not raised again.
    """
    limit = conf.anomaly_scan_batch_size()
    result = ScanResult()
    after = since_id
    while True:
        with transaction.atomic(using=using):
            _locked_state(using)
            events = _events(AuditLog.objects.using(using).filter(id__gt=after).order_by("id")[:limit])
            if not events:
                return result
            raised = raise_anomalies(find_hits(events, using=using), using=using)
        result.add(ScanResult(examined=len(events), raised=raised))
        after = events[-1].id
        if len(events) < limit:
            return result


# --- acknowledgement ------------------------------------------------------------------------------------------------


def _require_acknowledger(actor: Any) -> None:
    # A person answers for an acknowledgement: the system (actor None) cannot give one.
    if actor is None or not actor.is_authenticated or not actor.has_perm(ACKNOWLEDGE_PERMISSION):
        name = actor.get_username() if actor is not None and actor.is_authenticated else "anonymous"
        raise PermissionDenied(f"{name} does not have the permission {ACKNOWLEDGE_PERMISSION}")


def _anomaly_for_update(*, actor: Any, anomaly_id: int, **_: Any) -> Anomaly:
    # The right is checked before the row is read, so that a refused caller learns nothing about which ids exist.
    _require_acknowledger(actor)
    return Anomaly.objects.select_for_update().get(pk=anomaly_id)


def _anomaly_meta(before: Anomaly | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    # The diff shows what changed; these say which anomaly it was, also on a refusal.
    meta: dict[str, Any] = {"anomaly_id": kwargs.get("anomaly_id")}
    if before is not None:
        meta.update(rule=before.rule, subject=before.subject, anomaly_entry_id=before.entry_id)
    return meta


@audited(
    AuditAction.AUDIT_ANOMALY_ACK,
    entity="Anomaly",
    pre_fetch=_anomaly_for_update,
    diff_keys=("acknowledged_at", "acknowledged_by", "note"),
    meta_from=_anomaly_meta,
)
def anomaly_acknowledge(*, actor: Any, anomaly_id: int, note: str) -> Anomaly:
    """Mark an open anomaly as reviewed, with a note saying what was checked; recorded as AUDIT.ANOMALY.ACK.

    Raises PermissionDenied without ``audit.acknowledge_anomaly`` (recorded as ``denied``), ValidationError for an
    empty or too long note or an anomaly already acknowledged, Anomaly.DoesNotExist for an unknown id (both
    recorded as ``failure``).
    """
    _require_acknowledger(actor)
    text = (note or "").strip()
    if not text:
        raise ValidationError({"note": "Say what was checked: an acknowledgement needs a note."})
    if len(text) > NOTE_MAX_LENGTH:
        raise ValidationError({"note": f"A note has at most {NOTE_MAX_LENGTH} characters."})
    anomaly = Anomaly.objects.select_for_update().get(pk=anomaly_id)
    if anomaly.acknowledged_at is not None:
        raise ValidationError(
            f"Anomaly #{anomaly.pk} was acknowledged already, on {anomaly.acknowledged_at:%Y-%m-%d %H:%M}."
        )
    anomaly.acknowledged_at = timezone.now()
    anomaly.acknowledged_by = actor
    anomaly.note = text
    anomaly.save(update_fields=["acknowledged_at", "acknowledged_by", "note"])
    return anomaly
