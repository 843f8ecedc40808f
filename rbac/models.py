from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import models

from audit.text import printable


def empty_scope() -> dict[str, Any]:
    return {"allow": []}


class Role(models.Model):
    """A named bundle of permissions, given to users directly or through their groups."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    privileged = models.BooleanField(
        default=False, help_text="Granting, removing or changing a privileged role needs a written reason."
    )
    permissions = models.ManyToManyField(Permission, blank=True, related_name="rbac_roles")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="rbac_roles")
    groups = models.ManyToManyField(Group, blank=True, related_name="rbac_roles")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("assign_role", "Can give roles to users and take them away")]

    def __str__(self) -> str:
        # Shown in console titles, choices and messages: control characters as escape codes.
        return printable(self.name)


class GroupScope(models.Model):
    """The branches a group's members act on: ``{"allow": [branch ids]}``."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, primary_key=True, related_name="scope")
    branch_scope = models.JSONField(default=empty_scope)

    def __str__(self) -> str:
        return f"scope of {self.group}"
