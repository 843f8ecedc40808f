from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.anomalies import rescan, scan_new_entries
from audit.text import printable


class Command(BaseCommand):
    help = (
        "Run the anomaly rules over the entries sealed since the last scan (normally done after each seal); with "
        "--since-id, examine every entry above that id again. Anomalies already raised are not raised twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since-id",
            type=int,
            default=None,
            help="Examine the entries with an id above this one again (0: the whole table), e.g. after changing "
            "a threshold. Leaves the incremental scan's watermark alone.",
        )

    def handle(self, *args: Any, since_id: int | None, **options: Any) -> None:
        if since_id is not None and since_id < 0:
            raise CommandError("--since-id must be 0 or more")
        result = scan_new_entries() if since_id is None else rescan(since_id=since_id)
        for anomaly in result.raised:
            self.stdout.write(f"#{anomaly.pk} {anomaly.rule}: {printable(anomaly.summary)} (entry {anomaly.entry_id})")
        self.stdout.write(f"Examined {result.examined} entries, raised {len(result.raised)} anomalies.")
