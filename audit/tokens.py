"""API tokens (DRF's authtoken): issued and revoked only here, each audited without the token itself.

A token is a password; the entry says that a user has one and since when.
"""

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from .actions import AuditAction
from .authz import require
from .services import audited

User = get_user_model()


def _user(*, user_id: int, **_: Any) -> Any:
    return User.objects.select_for_update().get(pk=user_id)


def token_snapshot(user: Any) -> dict[str, Any]:
    # Keys without "token" in them: the redaction of secrets would hide the very fact recorded.
    created = Token.objects.filter(user=user).values_list("created", flat=True).first()
    return {"issued": created is not None, "issued_at": created.isoformat() if created else None}


@audited(AuditAction.USER_TOKEN_CREATE, entity="User", pre_fetch=_user, snapshot_with=token_snapshot)
def token_create(*, actor: Any, user_id: int) -> Any:
    """Issue the user an API token if they have none; returns the user. Raises PermissionDenied without
    ``authtoken.add_token``."""
    require(actor, "authtoken.add_token")
    user = User.objects.get(pk=user_id)
    Token.objects.get_or_create(user=user)
    return user


@audited(AuditAction.USER_TOKEN_DELETE, entity="User", pre_fetch=_user, snapshot_with=token_snapshot)
def token_delete(*, actor: Any, user_id: int) -> Any:
    """Revoke the user's API token; returns the user. Raises PermissionDenied without ``authtoken.delete_token``."""
    require(actor, "authtoken.delete_token")
    user = User.objects.get(pk=user_id)
    Token.objects.filter(user=user).delete()
    return user
