import random
import sys
import uuid
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from tqdm import tqdm

from audit import context
from audit.actions import AuditAction
from audit.bootstrap import ensure_officer_group
from audit.sealing import seal_pending
from audit.services import Outcome, record

# Demo logins, printed by `make demo` and listed in the README. Never use these outside a demo.
DEMO_USERS = (
    ("admin", "admin-demo-password", "superuser"),
    ("officer", "officer-demo-password", "officer"),
    ("alice", "alice-demo-password", "member"),
    ("bob", "bob-demo-password", "member"),
)

USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "git/2.39.5 git-lfs/3.3.0",
    "python-requests/2.32.3",
)
ROLES = ("member", "lock administrator", "compliance officer", "administrator")
PATHS = ("design/model.psd", "art/hero.blend", "docs/spec.pdf", "audio/theme.wav", "video/intro.mov")


class Command(BaseCommand):
    help = "Create the demo users and a few hundred realistic audit entries through the recorder (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=300, help="How many request-like events to record.")
        parser.add_argument("--seed", type=int, default=2026, help="Random seed, for a repeatable demo.")

    def handle(self, *args: Any, events: int, seed: int, **options: Any) -> None:
        if User.objects.filter(username="admin").exists():
            self.stdout.write("Demo data already present; nothing to do.")
            return
        rng = random.Random(seed)
        users = self._create_users()
        with tqdm(total=events, unit="events", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            for _ in range(events):
                self._one_request(rng, users)
                bar.update()
        sealed = seal_pending()
        self.stdout.write(f"Created {len(users)} demo users and {events} events; sealed {sealed} entries.")
        for username, password, kind in DEMO_USERS:
            self.stdout.write(f"  {kind:10} {username} / {password}")

    @staticmethod
    def _create_users() -> dict[str, User]:
        officers = ensure_officer_group()
        users = {}
        for username, password, kind in DEMO_USERS:
            with transaction.atomic():
                if kind == "superuser":
                    user = User.objects.create_superuser(username, f"{username}@example.org", password)
                else:
                    user = User.objects.create_user(username, f"{username}@example.org", password)
                if kind == "officer":
                    user.is_staff = True
                    user.save(update_fields=["is_staff"])
                    user.groups.add(officers)
                record(
                    AuditAction.USER_CREATE,
                    entity="User",
                    entity_id=user.pk,
                    changes={"username": {"before": None, "after": username}, "kind": {"before": None, "after": kind}},
                    meta={"source": "demo data"},
                )
            users[username] = user
        return users

    @staticmethod
    def _one_request(rng: random.Random, users: dict[str, User]) -> None:
        actor = users[rng.choice(("admin", "officer", "alice", "bob", "alice", "bob"))]
        ctx = context.RequestContext(
            request_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            ip_address=f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            user_agent=rng.choice(USER_AGENTS),
        )
        kind = rng.random()
        with context.bound(ctx):
            if kind < 0.25:
                record(AuditAction.USER_LOGIN, entity="User", entity_id=actor.pk, actor=actor)
            elif kind < 0.35:
                record(
                    AuditAction.USER_LOGIN_FAILED,
                    entity="User",
                    outcome=Outcome.FAILURE,
                    meta={"username": rng.choice(("alice", "bob", "root", "administrator"))},
                )
            elif kind < 0.65:
                path = rng.choice(PATHS)
                action = rng.choice((AuditAction.LOCK_CREATE, AuditAction.LOCK_RELEASE))
                denied = rng.random() < 0.15
                record(
                    action,
                    entity="FileLock",
                    entity_id=rng.randint(1, 40),
                    outcome=Outcome.DENIED if denied else Outcome.SUCCESS,
                    meta={"repository": "game-assets", "path": path, **({"refused": "locked by alice"} if denied else {})},
                    actor=actor,
                )
            elif kind < 0.8:
                record(
                    AuditAction.AUDIT_VIEW,
                    entity="AuditLog",
                    meta={"filters": {"action": rng.choice(("ROLE.", "LOCK.", "USER.LOGIN_FAILED"))}},
                    actor=users["officer"],
                )
            else:
                target = users[rng.choice(("alice", "bob"))]
                before = sorted(rng.sample(ROLES[:2], 1))
                after = sorted(set(before) | {rng.choice(ROLES)})
                allowed = actor.is_superuser
                record(
                    AuditAction.USER_ROLES_SET,
                    entity="User",
                    entity_id=target.pk,
                    outcome=Outcome.SUCCESS if allowed else Outcome.DENIED,
                    changes={
                        "roles": {
                            "before": before,
                            "after": after if allowed else before,
                            "added": sorted(set(after) - set(before)) if allowed else [],
                            "removed": [],
                        }
                    },
                    meta={"reason": "Quarterly access review"},
                    actor=actor,
                )
