from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.holds import create_legal_hold, release_legal_hold
from audit.retention_models import LegalHold
from audit.text import iso_utc, printable

from ._officer import datetime_argument, error_message, officer


class Command(BaseCommand):
    help = "Place, release or list legal holds: entries they cover are not archived while they are active."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True)
        create = commands.add_parser("create", help="Place a hold (at least one of entity, actor, since, until).")
        create.add_argument("--entity", default="", help='e.g. "Role"')
        create.add_argument("--entity-id", default="", help="e.g. 42 (with --entity)")
        create.add_argument("--actor", default="", help="The actor's username as recorded in the entries.")
        create.add_argument("--since", help="Entries created at or after this (ISO 8601; UTC without offset).")
        create.add_argument("--until", help="Entries created before this.")
        create.add_argument("--reason", required=True, help="The matter the entries are kept for.")
        create.add_argument("--as", dest="username", help="The officer placing it (default: the system).")
        release = commands.add_parser("release", help="Release a hold, with a reason.")
        release.add_argument("hold", type=int)
        release.add_argument("--reason", required=True)
        release.add_argument("--as", dest="username", help="The officer releasing it (default: the system).")
        commands.add_parser("list", help="The active holds.")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        if subcommand == "list":
            for hold in LegalHold.objects.filter(released_at__isnull=True).order_by("id"):
                self.stdout.write(
                    printable(
                        f"#{hold.pk} since {iso_utc(hold.created_at)} by {hold.created_by_label or 'the system'}: "
                        f"{hold.describe()}; {hold.reason}"
                    )
                )
            return
        actor = officer(options["username"]) if options.get("username") else None
        try:
            if subcommand == "create":
                hold = create_legal_hold(
                    actor=actor,
                    reason=options["reason"],
                    entity=options["entity"],
                    entity_id=options["entity_id"],
                    actor_label=options["actor"],
                    since=datetime_argument("--since", options.get("since")),
                    until=datetime_argument("--until", options.get("until")),
                )
                self.stdout.write(printable(f"Legal hold #{hold.pk} placed: {hold.describe()}."))
            else:
                hold = release_legal_hold(actor=actor, hold_id=options["hold"], reason=options["reason"])
                self.stdout.write(f"Legal hold #{hold.pk} released.")
        except LegalHold.DoesNotExist as exc:
            raise CommandError(f"No legal hold #{options.get('hold')}.") from exc
        except PermissionDenied as exc:
            raise CommandError(printable(f"Refused: {exc}")) from exc
        except ValidationError as exc:
            raise CommandError(printable(f"Refused: {error_message(exc)}")) from exc
