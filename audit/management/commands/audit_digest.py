from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.digests import make_digest
from audit.signing import SigningKeyMissing


class Command(BaseCommand):
    help = "Sign the current head of the audit chain now (normally done every N entries or M minutes)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            digest = make_digest()
        except SigningKeyMissing as exc:
            raise CommandError(str(exc)) from exc
        if digest is None:
            self.stdout.write("Nothing new to sign: the last digest already covers the chain head.")
            return
        self.stdout.write(
            f"Signed chain #{digest.chain_index} head {digest.head_hash} with key {digest.key_fingerprint}."
        )
