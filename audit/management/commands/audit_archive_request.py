from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.archive import default_before, request_archive
from audit.retention_models import ArchiveRequest
from audit.text import iso_utc, printable

from ._officer import date_argument, error_message, officer


class Command(BaseCommand):
    help = (
        "Request the archive and removal of the entries before a date (the first of two officers; NIST AU-9(5)), "
        "or list the requests."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--before", help="YYYY-MM-DD, rounded down to a month start; default: today minus AUDIT_RETENTION_DAYS."
        )
        parser.add_argument("--reason", default="", help="Why (required).")
        parser.add_argument("--as", dest="username", help="The requesting officer's username.")
        parser.add_argument("--list", dest="show_list", action="store_true", help="List the requests instead.")

    def handle(
        self, *args: Any, before: str | None, reason: str, username: str | None, show_list: bool, **options: Any
    ) -> None:
        if show_list:
            for request in ArchiveRequest.objects.order_by("-id")[:50]:
                approved = f", approved by {request.approved_by_label}" if request.approved_by_label else ""
                self.stdout.write(
                    printable(
                        f"#{request.pk} {request.status}: before {request.before:%Y-%m-%d}, requested by "
                        f"{request.requested_by_label} at {iso_utc(request.requested_at)}{approved}; {request.reason}"
                    )
                )
            return
        if not username:
            raise CommandError("--as USERNAME: the requesting officer")
        cutoff = date_argument("--before", before) or default_before().date()
        try:
            request = request_archive(actor=officer(username), before=cutoff, reason=reason)
        except PermissionDenied as exc:
            raise CommandError(printable(f"Refused: {exc}")) from exc
        except ValidationError as exc:
            raise CommandError(printable(f"Refused: {error_message(exc)}")) from exc
        self.stdout.write(
            f"Archive request #{request.pk} for the entries before {request.before:%Y-%m-%d} is waiting for another "
            "officer's approval (`manage.py audit_archive_approve`)."
        )
