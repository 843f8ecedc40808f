from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Now

from .actions import ACTION_CODE_RE, AuditAction
from .exceptions import AuditLogImmutableError


class AppendOnlyQuerySet(models.QuerySet):
    """Refuses bulk changes; the database triggers refuse them too, this fails earlier and clearer."""

    def update(self, **kwargs: Any) -> int:
        raise AuditLogImmutableError(f"{self.model.__name__} rows cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogImmutableError(f"{self.model.__name__} rows cannot be deleted")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise AuditLogImmutableError(f"{self.model.__name__} rows cannot be updated")

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditLogImmutableError(f"{self.model.__name__} rows cannot be updated")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditLogImmutableError(f"{type(self).__name__} #{self.pk} is append-only and cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogImmutableError(f"{type(self).__name__} #{self.pk} is append-only and cannot be deleted")


class AuditLog(AppendOnlyModel):
    """One security-relevant event. Written only through ``audit.services.record``."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        DENIED = "denied", "Denied"

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_default=Now())
    # No cascade and no constraint: deleting a user must neither delete nor block its history. No index of its
    # own: the (actor, id) index serves every look-up by actor, and each index costs every insert.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=100)
    entity = models.CharField(max_length=100, blank=True)
    entity_id = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    perms_snapshot = models.JSONField(default=dict)
    changes = models.JSONField(default=dict)
    meta = models.JSONField(default=dict)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # Set only for events another system recorded through the API; the actor is then that system's account.
    on_behalf_of = models.CharField(
        max_length=150, blank=True, help_text="The end user, as the source system names them."
    )
    client_ip = models.GenericIPAddressField(null=True, blank=True, help_text="The end user's address, as reported.")
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="When it happened, as the source system says.")
    # Secret per-entry key of the field commitments; never leaves the server.
    salt = models.BinaryField(max_length=16, editable=False)
    # GDPR: an actor's personal fields, AES-GCM under the actor's key (audit.privacy); the plain columns stay empty.
    # The commitments over the plaintext stand in for those columns in the digest, so the chain outlives the key.
    personal = models.BinaryField(null=True, editable=False)
    personal_commitments = models.JSONField(null=True, editable=False)
    # A keyed 16-bit bucket of the encrypted IP address: enough to find candidate entries by address (anomaly rules),
    # each bucket shared by some 65,000 IPv4 addresses, so it does not give the address back after erasure.
    # NULL, not "": a column without a default is added in place, where SQLite would rebuild the table (and lose
    # its append-only triggers).
    ip_bucket = models.CharField(max_length=4, null=True, editable=False)  # noqa: DJ001

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        permissions = [("record_event", "Can record events from another system through the API")]
        indexes = [
            models.Index(fields=["actor", "id"], name="audit_actor_id"),
            models.Index(fields=["action", "id"], name="audit_action_id"),
            models.Index(fields=["entity", "entity_id", "id"], name="audit_entity_id"),
            models.Index(fields=["entity_id"], name="audit_entity_id_only"),
            models.Index(fields=["created_at"], name="audit_created_at"),
            models.Index(fields=["request_id"], name="audit_request_id"),
            # The console's latest refused and failed entries: an index walk, however rare they are.
            models.Index(fields=["outcome", "id"], name="audit_outcome_id"),
            models.Index(fields=["ip_bucket"], name="audit_ip_bucket"),
            # A subject's entries recorded by other systems on their behalf (subject access). Partial: only the
            # ingested events that name an end user pay for it on insert.
            models.Index(
                fields=["on_behalf_of", "id"], name="audit_on_behalf_of_id", condition=~models.Q(on_behalf_of="")
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.outcome}"


class Seal(AppendOnlyModel):
    """An entry's place in the hash chain: ``hash = SHA-256(prev_hash || digest)``.

    Kept apart from the entries so that both tables stay INSERT-only and writers never wait on a chain head.
    """

    chain_index = models.BigIntegerField(primary_key=True)
    # One seal per entry (unique); no constraint so that a removed entry shows up as "missing", not as an error.
    entry = models.OneToOneField(AuditLog, on_delete=models.DO_NOTHING, db_constraint=False, related_name="seal")
    digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["chain_index"]

    def __str__(self) -> str:
        return f"seal #{self.chain_index} of entry {self.entry_id}"


class SignedDigest(AppendOnlyModel):
    """A signed statement of the chain head: ``(chain_index, head_hash, signed_at, prev_signature)``.

    Each digest signs the previous digest's signature too, so digests form a chain of their own, as CloudTrail's
    digest files do. Rewriting the hash chain after a digest is then detectable without the private key.
    """

    chain_index = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    prev_signature = models.CharField(max_length=128, blank=True)
    signature = models.CharField(max_length=128)
    key_fingerprint = models.CharField(max_length=64)

    class Meta:
        ordering = ["chain_index"]

    def __str__(self) -> str:
        return f"digest at chain #{self.chain_index}"


class RegisteredAction(models.Model):
    """An action code of another system, accepted by the ingestion API (the project's own codes live in code)."""

    code = models.CharField(
        max_length=100,
        unique=True,
        validators=[RegexValidator(ACTION_CODE_RE, "An upper-case ENTITY.OPERATION code, e.g. PROVIDER.CONNECT.")],
    )
    description = models.CharField(max_length=255)
    compliance = models.CharField(
        max_length=255, blank=True, help_text='The requirements it answers, e.g. "PCI DSS 10.2.1.1; SOC 2 CC6.1".'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        if self.code in AuditAction.values:
            raise ValidationError({"code": "This is one of the project's own codes; it needs no registration."})


class IdempotencyRecord(models.Model):
    """The first result of an ``Idempotency-Key``: a retry gets these entries back instead of new ones."""

    source = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body's canonical JSON.")
    entry_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "key"], name="audit_idempotency_source_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.source_id})"


from .anomaly_models import Anomaly, AnomalyScanState  # noqa: E402,F401
from .foia_models import FoiaRequest, RedactionProfile  # noqa: E402,F401
from .privacy_models import SubjectKey  # noqa: E402,F401
from .retention_models import ArchiveCheckpoint, ArchiveGuard, ArchiveRequest, LegalHold  # noqa: E402,F401
