"""Authentication events. Django offers no other hook for them than its auth signals."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from .actions import AuditAction
from .redaction import redact
from .services import Outcome, record


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record(AuditAction.USER_LOGIN, entity="User", entity_id=user.pk, actor=user, request=request, independent=True)


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    record(AuditAction.USER_LOGOUT, entity="User", entity_id=user.pk, actor=user, request=request)


@receiver(user_login_failed, dispatch_uid="audit_user_login_failed")
def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Only the attempted user name: Django masks the password already, and nothing else is needed.
    username = redact(credentials).get("username", "")
    record(
        AuditAction.USER_LOGIN_FAILED,
        entity="User",
        outcome=Outcome.FAILURE,
        meta={"username": str(username)[:150]},
        request=request,
        independent=True,
    )
