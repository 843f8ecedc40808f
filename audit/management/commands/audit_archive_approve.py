from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.archive import approve_archive
from audit.retention_models import ArchiveRequest
from audit.text import printable

from ._officer import error_message, officer


class Command(BaseCommand):
    help = "Approve another officer's archive request (the second of two officers; never one's own, NIST AU-9(5))."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request", type=int, help="The archive request's number.")
        parser.add_argument("--as", dest="username", required=True, help="The approving officer's username.")
        parser.add_argument("--reason", default="", help="A note for the trail (optional).")

    def handle(self, *args: Any, request: int, username: str, reason: str, **options: Any) -> None:
        try:
            approved = approve_archive(actor=officer(username), request_id=request, reason=reason)
        except ArchiveRequest.DoesNotExist as exc:
            raise CommandError(f"No archive request #{request}.") from exc
        except PermissionDenied as exc:
            raise CommandError(printable(f"Refused: {exc}")) from exc
        except ValidationError as exc:
            raise CommandError(printable(f"Refused: {error_message(exc)}")) from exc
        self.stdout.write(
            f"Archive request #{approved.pk} approved by {approved.approved_by_label} (requested by "
            f"{approved.requested_by_label}); `manage.py audit_archive --request {approved.pk}` executes it."
        )
