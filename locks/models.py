from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.text import printable


class Repository(models.Model):
    """A repository whose files can be locked; the slug is the last part of its Git LFS URL."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "repositories"
        # Granted globally (through a role) or on one repository (django-guardian).
        permissions = [("force_unlock", "Can release other people's locks")]

    def __str__(self) -> str:
        return self.slug


class FileLock(models.Model):
    """A checked-out file: one lock per repository and path, held by its owner until checked in."""

    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="locks")
    path = models.CharField(max_length=1024, help_text="Normalised: relative, forward slashes, no '..'.")
    # PROTECT: a user who still holds locks cannot vanish and leave them unowned and unaudited.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="file_locks")
    ref_name = models.CharField(max_length=255, blank=True)
    locked_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["repository", "path"], name="locks_one_lock_per_path")]
        indexes = [models.Index(fields=["owner", "id"], name="locks_owner_id")]

    def __str__(self) -> str:
        # Shown in console titles and messages: the client's path with its control characters as escape codes.
        return printable(f"{self.repository.slug}:{self.path}")
