"""The state of the automated review: anomalies found and how far the scan has read.

Imported at the end of ``audit.models`` so that the models belong to the audit app. Unlike the audit trail these
rows change (an anomaly is acknowledged, the watermark moves on): they track work, while what happened (each
anomaly found, each acknowledgement) is recorded in the trail itself as ``AUDIT.ANOMALY`` / ``AUDIT.ANOMALY.ACK``.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Anomaly(models.Model):
    """One hit of a rule of ``audit.anomalies`` for one subject in one time window."""

    class Rule(models.TextChoices):
        DENIED_THEN_PRIVILEGED = "denied_then_privileged", "Refused attempts, then a privileged action"
        FAILED_LOGINS = "failed_logins", "Many failed logins"
        FORCE_RELEASE_OFF_HOURS = "force_release_off_hours", "Lock force-released outside working hours"

    rule = models.CharField(max_length=40, choices=Rule.choices)
    # "actor:<user id>", "ip:<address>" or "username:<name as typed>": what the rule counted by.
    subject = models.CharField(max_length=200)
    summary = models.CharField(max_length=500, help_text="What was seen, in one sentence.")
    # The AUDIT.ANOMALY entry that records this hit. No constraint, as for seals: the trail is the record.
    entry = models.ForeignKey(
        "audit.AuditLog", on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    first_evidence_id = models.BigIntegerField(help_text="The oldest audit entry that made the rule fire.")
    last_evidence_id = models.BigIntegerField(help_text="The newest audit entry of this hit, later ones included.")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    detected_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "anomalies"
        permissions = [("acknowledge_anomaly", "Can acknowledge an anomaly (with a note)")]
        constraints = [
            # The scan's own dedupe decides first; this refuses a second row for the same hit even if two scans
            # raced past the scan lock.
            models.UniqueConstraint(fields=["rule", "subject", "window_start"], name="audit_anomaly_once_per_window")
        ]
        indexes = [models.Index(fields=["acknowledged_at", "id"], name="audit_anomaly_open")]

    def __str__(self) -> str:
        return f"{self.get_rule_display()}: {self.subject}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class AnomalyScanState(models.Model):
    """The scan's watermark: the last chain position whose entry was examined (one row).

    A chain position, not an entry id: entries are sealed in commit order, so an entry whose transaction
    committed after a later id's is still examined once it is sealed, where an id watermark would have passed it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_chain_index = models.BigIntegerField(default=-1)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"anomaly scan at chain #{self.last_chain_index}"
