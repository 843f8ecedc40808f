import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.export.verify_bundle import verify_bundle
from audit.signing import public_key_from_pem
from audit.text import printable


class Command(BaseCommand):
    help = "Check an export bundle offline with the publisher's public key; exit 1 naming each file or entry at fault."
    # Works without a database: a recipient has none.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", help="The bundle ZIP.")
        parser.add_argument("--public-key", required=True, help="The publisher's Ed25519 public key (PEM file).")

    def handle(self, *args: Any, bundle: str, public_key: str, **options: Any) -> None:
        try:
            key = public_key_from_pem(Path(public_key).read_bytes())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--public-key {public_key}: not a readable Ed25519 public key ({exc})") from exc
        report = verify_bundle(bundle, key)
        for problem in report.problems:
            self.stdout.write(printable(problem))
        if not report.ok:
            self.stdout.write(f"Bundle NOT verified: {len(report.problems)} problem(s).")
            sys.exit(1)
        self.stdout.write(
            f"Bundle verified: {report.released} released entries over {report.positions} chain positions, "
            "signed head reached."
        )
