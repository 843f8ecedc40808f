from typing import Any

from django.contrib.auth.models import Permission, User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from audit.actions import AuditAction
from audit.diff import diff
from audit.services import record
from audit.tokens import token_create


def _permission_names(user: User) -> list[str]:
    return sorted(
        f"{app_label}.{codename}"
        for app_label, codename in user.user_permissions.values_list("content_type__app_label", "codename")
    )


class Command(BaseCommand):
    help = "Create (or reuse) a service account that may record events through the API, and print its token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="Name of the account, e.g. billing-service.")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        permission = Permission.objects.get(content_type__app_label="audit", codename="record_event")
        with transaction.atomic():
            account, created = User.objects.get_or_create(username=username)
            if not created and account.has_usable_password():
                raise CommandError(
                    f"user '{username}' is a person's account (it has a password), not a service account"
                )
            if created:
                account.set_unusable_password()
                account.save(update_fields=["password"])
            before = _permission_names(account)
            account.user_permissions.add(permission)
            after = _permission_names(account)
            if created or before != after:
                record(
                    AuditAction.USER_CREATE if created else AuditAction.USER_UPDATE,
                    entity="User",
                    entity_id=account.pk,
                    changes=diff({"user_permissions": before}, {"user_permissions": after}),
                    meta={"service_account": True, "via": "audit_service_account"},
                )
            if not Token.objects.filter(user=account).exists():
                token_create(actor=None, user_id=account.pk)
        self.stdout.write(Token.objects.get(user=account).key)
