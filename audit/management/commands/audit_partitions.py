from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from audit import partitions
from audit.actions import AuditAction
from audit.services import record


class Command(BaseCommand):
    help = (
        "Create the monthly partitions of the audit table for this month and the next ones (PostgreSQL); "
        "running it again changes nothing. SQLite keeps one table: nothing to do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--months-ahead",
            type=int,
            default=partitions.DEFAULT_MONTHS_AHEAD,
            help=f"How many months after this one get a partition (default {partitions.DEFAULT_MONTHS_AHEAD}).",
        )

    def handle(self, *args: Any, months_ahead: int, **options: Any) -> None:
        if not partitions.supported(connection):
            self.stdout.write(f"{connection.display_name} keeps the audit trail in one table: no partitions to create.")
            return
        try:
            report = partitions.ensure_partitions(connection, months_ahead=months_ahead)
        except partitions.PartitionError as exc:
            raise CommandError(str(exc)) from exc
        if report.created:
            # New tables of the audit trail are system-level objects (PCI DSS 10.2.1.7); a run that finds them all
            # present records nothing, so a daily cron job adds no noise.
            record(
                AuditAction.AUDIT_PARTITIONS_CREATE,
                entity="AuditLog",
                meta={"created": report.created, "moved_from_default": report.moved_from_default, "via": "command"},
            )
            self.stdout.write(f"Created {len(report.created)} partition(s): {', '.join(report.created)}.")
        if report.moved_from_default:
            self.stdout.write(f"Moved {report.moved_from_default} entries from the default partition into their month.")
        self.stdout.write(f"Monthly partitions exist through {report.through:%Y-%m}.")
