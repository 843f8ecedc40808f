"""Retention: archive requests (two officers), the guard of the one removal path, signed checkpoints, legal holds.

Imported at the end of ``audit.models`` so that the models belong to the audit app. Requests and holds are workflow
rows that change (pending -> approved -> executed, active -> released); every step is recorded in the trail itself
by the services of ``audit.archive`` and ``audit.holds``. Checkpoints are append-only like the trail they vouch for.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .models import AppendOnlyModel


class ArchiveRequest(models.Model):
    """One officer asks for the entries before ``before`` to be archived and removed; another one approves.

    NIST AU-9(5) dual authorization: the approver must be another person, checked by the service, by a check
    constraint here, and by the database triggers, which allow the removal only for a request approved by someone
    else than its requester.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a second officer"
        APPROVED = "approved", "Approved, not yet executed"
        # Only ever seen inside the archive transaction: the triggers allow the removal for this status alone, so a
        # request can never be left open for removals once that transaction has ended (commit or rollback).
        EXECUTING = "executing", "Being executed"
        EXECUTED = "executed", "Executed"

    before = models.DateTimeField(help_text="Entries created before this time (a month start, UTC) are archived.")
    reason = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # No constraint, as for the trail: deleting an officer's account must neither fail nor rewrite who acted.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    requested_by_label = models.CharField(max_length=150)
    requested_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    approved_by_label = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    # The chain positions removed: first_index..checkpoint_index. Set inside the archive transaction, before the
    # removal, because the triggers allow nothing outside this range.
    first_index = models.BigIntegerField(null=True, blank=True)
    checkpoint_index = models.BigIntegerField(null=True, blank=True)
    entries_archived = models.BigIntegerField(default=0)
    segments = models.JSONField(default=list, blank=True)
    # SHA-256 of the one-time token of the archive transaction (PostgreSQL: SET LOCAL audit.archive = token).
    guard_sha256 = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("request_archive", "Can request archiving (removal) of audit entries"),
            ("approve_archive", "Can approve another officer's archive request"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=F("requested_by")),
                name="audit_archive_two_officers",
            )
        ]

    def __str__(self) -> str:
        return f"archive request #{self.pk}: before {self.before:%Y-%m-%d} ({self.status})"


class ArchiveGuard(models.Model):
    """SQLite's stand-in for PostgreSQL's ``SET LOCAL``: a row inserted and deleted inside the archive transaction.

    SQLite has one writer at a time and no session variables; its DELETE triggers allow a removal only while such a
    row names an executing request. Nobody else ever sees the row: it is gone again when the transaction commits.
    """

    request = models.ForeignKey(ArchiveRequest, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"guard of archive request #{self.request_id}"


class ArchiveCheckpoint(AppendOnlyModel):
    """Where the chain in the database starts after an archive: positions up to ``chain_index`` are in segments.

    Signed with the digest key over ``(chain_index, head_hash, before, request, segments, created_at,
    prev_signature)``, each checkpoint also signing the one before, so ``audit_verify`` trusts a checkpoint only with
    the public key, and someone with database access cannot move the start of the chain forward to hide a removal.
    """

    chain_index = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    before = models.DateTimeField()
    # A plain id, not a foreign key: the signed record stands on its own.
    request_id = models.BigIntegerField()
    segments = models.JSONField(default=list)
    created_at = models.DateTimeField()
    prev_signature = models.CharField(max_length=128, blank=True)
    signature = models.CharField(max_length=128)
    key_fingerprint = models.CharField(max_length=64)

    class Meta:
        ordering = ["chain_index"]

    def __str__(self) -> str:
        return f"archive checkpoint at chain #{self.chain_index}"


class LegalHold(models.Model):
    """Entries that must not be archived while the hold is active: by entity, actor label and/or time range.

    Every criterion given must match (an entry about ``entity``/``entity_id``, by ``actor_label``, created in
    ``[since, until)``); at least one is required, so no hold silently covers everything.
    """

    entity = models.CharField(max_length=100, blank=True)
    entity_id = models.CharField(max_length=255, blank=True)
    actor_label = models.CharField(max_length=150, blank=True, help_text="The username as recorded in the entries.")
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(help_text="The matter, case or request the entries are kept for.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    created_by_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    released_by_label = models.CharField(max_length=150, blank=True)
    release_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("manage_legalhold", "Can place and release legal holds on audit entries")]
        indexes = [models.Index(fields=["released_at"], name="audit_legalhold_active")]

    def __str__(self) -> str:
        return f"legal hold #{self.pk} ({self.describe()})"

    @property
    def is_active(self) -> bool:
        return self.released_at is None

    def clean(self) -> None:
        if not (self.entity or self.entity_id or self.actor_label or self.since or self.until):
            raise ValidationError("A legal hold names an entity, an actor or a time range; it cannot cover everything.")
        if self.entity_id and not self.entity:
            raise ValidationError({"entity": "An entity id needs its entity (e.g. Role and 42)."})
        if self.since and self.until and self.since >= self.until:
            raise ValidationError({"until": "The end of the range must come after its start."})
        if not self.reason.strip():
            raise ValidationError({"reason": "A legal hold says what matter it is for."})

    def covers(self) -> Q:
        """The entries this hold covers, as a filter of ``AuditLog``."""
        condition = Q()
        if self.entity:
            condition &= Q(entity=self.entity)
        if self.entity_id:
            condition &= Q(entity_id=self.entity_id)
        if self.actor_label:
            condition &= Q(actor_label=self.actor_label)
        if self.since:
            condition &= Q(created_at__gte=self.since)
        if self.until:
            condition &= Q(created_at__lt=self.until)
        return condition

    def describe(self) -> str:
        parts = []
        if self.entity:
            parts.append(f"entity {self.entity}" + (f" {self.entity_id}" if self.entity_id else ""))
        if self.actor_label:
            parts.append(f"actor {self.actor_label}")
        if self.since or self.until:
            since = self.since.isoformat() if self.since else "the start"
            until = self.until.isoformat() if self.until else "now"
            parts.append(f"created from {since} until {until}")
        return ", ".join(parts) or "nothing"
