import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from audit.actions import AuditAction
from audit.models import ArchiveCheckpoint, Seal
from audit.services import Outcome, record
from audit.text import printable
from audit.verify import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit hash chain; exit 1 and list each finding if anything was changed or removed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-progress", action="store_true", help="Never show a progress bar.")

    def handle(self, *args: Any, no_progress: bool, **options: Any) -> None:
        show = not no_progress and sys.stderr.isatty()
        head = Seal.objects.order_by("-chain_index").values_list("chain_index", flat=True).first()
        # After an archive the walk starts past the latest checkpoint.
        start = ArchiveCheckpoint.objects.order_by("-chain_index").values_list("chain_index", flat=True).first()
        with tqdm(
            total=head - (start if start is not None else -1) if head is not None else 0,
            unit="entries",
            disable=not show,
            file=sys.stderr,
        ) as bar:
            report = verify_chain(progress=bar.update)
        record(
            AuditAction.AUDIT_VERIFY,
            entity="AuditLog",
            outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
            meta={"entries_checked": report.entries_checked, "findings": len(report.findings), "via": "command"},
        )
        for finding in report.findings:
            self.stdout.write(printable(finding.line()))
        self.stdout.write(report.summary())
        if not report.ok:
            sys.exit(1)
