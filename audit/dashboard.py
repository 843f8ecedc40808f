"""Selectors of the officers' dashboard: activity per day, chain status, recent refusals and failures, anomalies.

Every read here is a fixed number of indexed queries, whatever the size of the trail: one GROUP BY over the last
30 days (``created_at`` index), the last AUDIT.VERIFY by ``(action, id)``, the newest seal and signed digest by
their primary keys, the newest refused and failed entries by ``(outcome, id)``, the open anomalies by
``(acknowledged_at, id)``. Nothing here verifies the chain: that is ``audit_verify``'s job, and the page shows
what the last run found.
"""

import datetime as dt
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Value
from django.db.models.functions import StrIndex, Substr, TruncDate
from django.utils import timezone

from .actions import AuditAction
from .models import Anomaly, AuditLog, Seal, SignedDigest
from .privacy import reveal
from .selectors import can_view_all
from .text import printable

DAYS = 30
RECENT = 10
OPEN_ANOMALIES_SHOWN = 50

# Fixed colours for the project's families, so that a family keeps its colour from one day to the next; other
# systems' families get one of the spare colours by a stable hash of their name.
FAMILY_COLOURS = {
    "ACCESS": "#e15759",
    "ACTION": "#76b7b2",
    "AUDIT": "#4e79a7",
    "FOIA": "#9c755f",
    "GROUP": "#b07aa1",
    "LOCK": "#f28e2b",
    "ROLE": "#edc948",
    "USER": "#59a14f",
}
SPARE_COLOURS = ("#ff9da7", "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8", "#8cd17d", "#b6992d", "#499894")


def family_colour(family: str) -> str:
    return FAMILY_COLOURS.get(family) or SPARE_COLOURS[zlib.crc32(family.encode()) % len(SPARE_COLOURS)]


# --- entries per day and family -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayCount:
    day: dt.date
    family: str
    count: int


def chart_days(*, now: dt.datetime | None = None, days: int = DAYS) -> list[dt.date]:
    """The last ``days`` calendar days in the current time zone, today included, oldest first."""
    today = timezone.localdate(now or timezone.now())
    return [today - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def daily_counts(*, since: dt.datetime) -> list[DayCount]:
    """Entries per day and action family since ``since``: one GROUP BY over the ``created_at`` index range."""
    # The family is the code up to its first dot; every code has one (ACTION_CODE_RE).
    family = Substr("action", 1, StrIndex("action", Value(".")) - 1)
    rows = (
        AuditLog.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"), family=family)
        .values("day", "family")
        .annotate(count=Count("id"))
        .order_by()
    )
    return [DayCount(day=row["day"], family=row["family"], count=row["count"]) for row in rows]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: dt.date
    family: str
    count: int
    colour: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class LegendItem:
    x: float
    y: float
    family: str
    total: int
    colour: str


@dataclass(frozen=True)
class Chart:
    """A stacked bar chart laid out in SVG user units: the template only draws what is here."""

    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    bars: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    legend: tuple[LegendItem, ...]
    first_day: dt.date
    last_day: dt.date
    total: int

    @property
    def families(self) -> list[str]:
        return [item.family for item in self.legend]

    @property
    def x_title_y(self) -> float:
        return self.bottom + 36

    @property
    def y_title_y(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def middle(self) -> float:
        return (self.left + self.right) / 2


def _nice_step(largest: int, ticks: int = 4) -> int:
    """The smallest 1, 2 or 5 times a power of ten that covers ``largest`` in at most ``ticks`` steps."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude * ticks >= largest:
                return factor * magnitude
        magnitude *= 10


CHART_WIDTH = 900
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP = 64, 16, 16
PLOT_HEIGHT = 220
LEGEND_ITEM_WIDTH = 140
LEGEND_ROW_HEIGHT = 20


def chart_layout(counts: Iterable[DayCount], days: Sequence[dt.date]) -> Chart:
    """Stacked bars, one per day, one segment per family (alphabetical from the axis up), with axes and legend."""
    per_day: dict[dt.date, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    shown = set(days)
    for item in counts:
        if item.day in shown and item.count:
            per_day[item.day][item.family] = per_day[item.day].get(item.family, 0) + item.count
            totals[item.family] += item.count
    families = sorted(totals)
    left, top = MARGIN_LEFT, MARGIN_TOP
    right, bottom = CHART_WIDTH - MARGIN_RIGHT, MARGIN_TOP + PLOT_HEIGHT
    largest = max((sum(values.values()) for values in per_day.values()), default=0)
    step = _nice_step(max(largest, 1))
    ceiling = step * max(1, -(-largest // step))
    scale = PLOT_HEIGHT / ceiling
    slot = (right - left) / len(days)
    bar_width = round(slot * 0.7, 1)
    bars = []
    for index, day in enumerate(days):
        x = round(left + index * slot + (slot - bar_width) / 2, 1)
        base = float(bottom)
        for family in families:
            count = per_day.get(day, {}).get(family, 0)
            if not count:
                continue
            height = count * scale
            base -= height
            bars.append(Bar(x, round(base, 1), bar_width, round(height, 1), day, family, count, family_colour(family)))
    y_ticks = tuple(Tick(round(bottom - value * scale, 1), str(value)) for value in range(0, ceiling + 1, step))
    # A label every fifth day from the newest back, so that today is always labelled.
    x_ticks = tuple(
        Tick(round(left + index * slot + slot / 2, 1), f"{day:%b} {day.day}")
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % 5 == 0
    )
    per_row = max(1, int((right - left) // LEGEND_ITEM_WIDTH))
    legend_top = bottom + 56
    legend = tuple(
        LegendItem(
            left + (index % per_row) * LEGEND_ITEM_WIDTH,
            legend_top + (index // per_row) * LEGEND_ROW_HEIGHT,
            family,
            totals[family],
            family_colour(family),
        )
        for index, family in enumerate(families)
    )
    rows = max(1, -(-len(families) // per_row))
    return Chart(
        width=CHART_WIDTH,
        height=legend_top + rows * LEGEND_ROW_HEIGHT + 4,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        bars=tuple(bars),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        legend=legend,
        first_day=days[0],
        last_day=days[-1],
        total=sum(totals.values()),
    )


# --- chain status ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainStatus:
    last_verify: AuditLog | None
    head: dict[str, Any] | None
    digest: SignedDigest | None

    @property
    def verified_intact(self) -> bool | None:
        """True/False as the last verify found the chain; None when it was never verified."""
        if self.last_verify is None:
            return None
        return self.last_verify.outcome == AuditLog.Outcome.SUCCESS

    @property
    def verify_findings(self) -> Any:
        return (self.last_verify.meta or {}).get("findings") if self.last_verify else None

    @property
    def verify_entries_checked(self) -> Any:
        return (self.last_verify.meta or {}).get("entries_checked") if self.last_verify else None

    @property
    def sealed_since_digest(self) -> int | None:
        if self.head is None or self.digest is None:
            return None
        return self.head["chain_index"] - self.digest.chain_index


def chain_status() -> ChainStatus:
    """What the last AUDIT.VERIFY found, the chain head and the newest signed digest: three indexed look-ups."""
    last_verify = (
        AuditLog.objects.filter(action=AuditAction.AUDIT_VERIFY)
        .only("id", "created_at", "outcome", "meta", "actor_label", "actor_id", "salt", "personal")
        .order_by("-id")
        .first()
    )
    if last_verify is not None:
        reveal([last_verify])
    head = Seal.objects.order_by("-chain_index").values("chain_index", "hash", "sealed_at").first()
    digest = SignedDigest.objects.order_by("-chain_index").first()
    return ChainStatus(last_verify=last_verify, head=head, digest=digest)


# --- recent refusals and failures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRow:
    """An entry as a list shows it, its text escaped for output (control characters as their escape codes)."""

    id: int
    created_at: dt.datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    ip_address: str | None
    outcome: str


def _row(entry: AuditLog) -> EntryRow:
    label = printable(entry.actor_label) or "—"
    return EntryRow(
        id=entry.pk,
        created_at=entry.created_at,
        actor=f"{label} (#{entry.actor_id})" if entry.actor_id else label,
        action=printable(entry.action),
        entity=printable(entry.entity),
        entity_id=printable(entry.entity_id),
        ip_address=entry.ip_address,
        outcome=entry.outcome,
    )


def recent_entries(outcome: str, *, limit: int = RECENT) -> list[EntryRow]:
    """The newest ``limit`` entries with ``outcome``: a backward walk of the ``(outcome, id)`` index."""
    entries = (
        AuditLog.objects.filter(outcome=outcome)
        .only(
            "id",
            "created_at",
            "actor_id",
            "actor_label",
            "action",
            "entity",
            "entity_id",
            "ip_address",
            "outcome",
            "meta",
            "salt",
            "personal",
        )
        .order_by("-id")[:limit]
    )
    entries = list(entries)
    reveal(entries)
    return [_row(entry) for entry in entries]


# --- anomalies ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnomalyRow:
    id: int
    rule: str
    rule_label: str
    subject: str
    summary: str
    entry_id: int | None
    first_evidence_id: int
    last_evidence_id: int
    window_start: dt.datetime
    window_end: dt.datetime
    detected_at: dt.datetime


def open_anomalies(*, limit: int = OPEN_ANOMALIES_SHOWN) -> tuple[list[AnomalyRow], bool]:
    """The newest unacknowledged anomalies and whether there are more than ``limit`` (one query, no COUNT)."""
    anomalies = list(Anomaly.objects.filter(acknowledged_at__isnull=True).order_by("-id")[: limit + 1])
    rows = [
        AnomalyRow(
            id=anomaly.pk,
            rule=anomaly.rule,
            rule_label=anomaly.get_rule_display(),
            subject=printable(anomaly.subject),
            summary=printable(anomaly.summary),
            entry_id=anomaly.entry_id,
            first_evidence_id=anomaly.first_evidence_id,
            last_evidence_id=anomaly.last_evidence_id,
            window_start=anomaly.window_start,
            window_end=anomaly.window_end,
            detected_at=anomaly.detected_at,
        )
        for anomaly in anomalies[:limit]
    ]
    return rows, len(anomalies) > limit


# --- the page -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    chart: Chart
    chain: ChainStatus
    denied: list[EntryRow]
    failed: list[EntryRow]
    anomalies: list[AnomalyRow]
    more_anomalies: bool


def officer_dashboard(*, viewer: Any, now: dt.datetime | None = None) -> Dashboard:
    """Everything the dashboard shows, for a holder of ``audit.view_auditlog`` (others: PermissionDenied)."""
    if not can_view_all(viewer):
        raise PermissionDenied("The dashboard is for holders of audit.view_auditlog.")
    days = chart_days(now=now)
    since = timezone.make_aware(dt.datetime.combine(days[0], dt.time.min))
    anomalies, more = open_anomalies()
    return Dashboard(
        chart=chart_layout(daily_counts(since=since), days),
        chain=chain_status(),
        denied=recent_entries(AuditLog.Outcome.DENIED),
        failed=recent_entries(AuditLog.Outcome.FAILURE),
        anomalies=anomalies,
        more_anomalies=more,
    )
