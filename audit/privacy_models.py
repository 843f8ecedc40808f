"""Per-subject keys of the personal fields in audit entries: the one mutable table the GDPR erasure writes to."""

from django.db import models


class SubjectKey(models.Model):
    """The AES-256-GCM key of one data subject (a user, by id). Erasure destroys ``key``; the row stays, so that
    entries recorded later about the subject are not given a fresh, readable key."""

    subject_id = models.BigIntegerField(unique=True, help_text="The user's id; no constraint, users may go.")
    key = models.BinaryField(max_length=32, null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "subject key"
        permissions = [
            ("erase_subject", "Can erase a data subject's personal fields from the audit trail"),
            ("export_subject_access", "Can export the audit entries about a data subject"),
        ]

    def __str__(self) -> str:
        state = "erased" if self.key is None else "active"
        return f"key of subject #{self.subject_id} ({state})"
