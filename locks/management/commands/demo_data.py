import random
import sys
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from audit import context
from audit.actions import AuditAction
from audit.bootstrap import ensure_officer_group
from audit.foia import foia_request_create
from audit.foia_models import RedactionProfile
from audit.sealing import seal_pending
from audit.services import Outcome, record
from locks import services as locks
from locks.exceptions import LockConflict
from locks.models import FileLock, Repository
from rbac import services as rbac
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role

User = get_user_model()

# Demo logins, printed by `make demo` and listed in the README. Never use these outside a demo.
DEMO_USERS = (
    ("admin", "admin-demo-password", "superuser"),
    ("officer", "officer-demo-password", "compliance officer"),
    ("records", "records-demo-password", "records officer"),
    ("alice", "alice-demo-password", "member"),
    ("bob", "bob-demo-password", "member"),
)
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "git/2.39.5 git-lfs/3.3.0",
    "python-requests/2.32.3",
)
PATHS = ("design/model.psd", "art/hero.blend", "docs/spec.pdf", "audio/theme.wav", "video/intro.mov", "art/logo.ai")


class Command(BaseCommand):
    help = "Demo users, roles, repositories and a few hundred realistic events, all through the services (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=300, help="How many request-like events to simulate.")
        parser.add_argument("--seed", type=int, default=2026, help="Random seed, for a repeatable demo.")

    def handle(self, *args: Any, events: int, seed: int, **options: Any) -> None:
        if User.objects.filter(username="admin").exists():
            self.stdout.write("Demo data already present; nothing to do.")
            return
        rng = random.Random(seed)
        users = self._set_up()
        repositories = list(Repository.objects.all())
        with tqdm(total=events, unit="events", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            for _ in range(events):
                with context.bound(self._request_context(rng)):
                    self._one_event(rng, users, repositories)
                bar.update()
        Command._foia_request(users["admin"])
        # Entries are sealed as their transactions commit; this only catches up if a sealer run failed.
        seal_pending()
        self.stdout.write(f"Demo data ready: {len(users)} users and {events} simulated requests.")
        for username, password, kind in DEMO_USERS:
            self.stdout.write(f"  {kind:19} {username} / {password}")

    @staticmethod
    def _set_up() -> dict[str, Any]:
        with transaction.atomic():
            bootstrap_default_roles()
            officers = ensure_officer_group()
            users = {}
            for username, password, kind in DEMO_USERS:
                users[username] = rbac.user_create(
                    actor=None,
                    username=username,
                    email=f"{username}@example.org",
                    password=password,
                    is_staff=kind in ("superuser", "compliance officer", "records officer"),
                    is_superuser=kind == "superuser",
                    reason="demo installation",
                )
            admin = users["admin"]
            member = Role.objects.get(name="member")
            for username in ("alice", "bob"):
                rbac.user_roles_set(actor=admin, user_id=users[username].pk, role_ids=[member.pk])
            # Archiving needs a second officer to approve: the compliance officer holds this role too.
            records = Role.objects.get(name="records officer")
            for username in ("records", "officer"):
                rbac.user_roles_set(
                    actor=admin, user_id=users[username].pk, role_ids=[records.pk], reason="records management"
                )
            rbac.group_members_set(
                actor=admin, group_id=officers.pk, user_ids=[users["officer"].pk], reason="compliance team"
            )
            for slug, name in (("game-assets", "Game assets"), ("handbook", "Employee handbook")):
                Repository.objects.get_or_create(slug=slug, defaults={"name": name})
        return users

    @staticmethod
    def _foia_request(admin: Any) -> None:
        foia_request_create(
            actor=admin,
            requester="Jane Reporter",
            requester_email="jane.reporter@example.org",
            description="All records of files locked, unlocked or force-released in the game-assets repository.",
            received_on=timezone.localdate(),
            scope_action_prefix="LOCK.",
            redaction_profile=RedactionProfile.objects.order_by("pk").first(),
        )

    @staticmethod
    def _request_context(rng: random.Random) -> context.RequestContext:
        return context.RequestContext(
            request_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            ip_address=f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            user_agent=rng.choice(USER_AGENTS),
        )

    @staticmethod
    def _one_event(rng: random.Random, users: dict[str, Any], repositories: list[Repository]) -> None:
        actor = users[rng.choice(("alice", "bob", "alice", "bob", "officer", "admin"))]
        kind = rng.random()
        if kind < 0.2:
            record(AuditAction.USER_LOGIN, entity="User", entity_id=actor.pk, actor=actor)
        elif kind < 0.28:
            record(
                AuditAction.USER_LOGIN_FAILED,
                entity="User",
                outcome=Outcome.FAILURE,
                meta={"username": rng.choice(("alice", "bob", "root", "administrator"))},
            )
        elif kind < 0.8:
            Command._lock_traffic(rng, users, repositories)
        else:
            record(
                AuditAction.AUDIT_VIEW,
                entity="AuditLog",
                meta={"filters": {"action": rng.choice(("LOCK.", "USER.LOGIN_FAILED", "ROLE."))}, "via": "admin"},
                actor=users["officer"],
            )

    @staticmethod
    def _lock_traffic(rng: random.Random, users: dict[str, Any], repositories: list[Repository]) -> None:
        """Check-outs, conflicts, check-ins and the odd forced release, through the real lock services."""
        person = users[rng.choice(("alice", "bob"))]
        repository = rng.choice(repositories)
        path = rng.choice(PATHS)
        lock = FileLock.objects.filter(repository=repository, path=path).first()
        try:
            if lock is None:
                locks.checkout(actor=person, repository=repository, path=path, ref_name="refs/heads/main")
            elif lock.owner_id == person.pk or rng.random() < 0.3:
                locks.checkin(actor=person, lock_id=lock.pk)
            elif rng.random() < 0.15:
                locks.force_checkin(
                    actor=users["admin"], lock_id=lock.pk, reason="owner on leave; release for the build"
                )
            else:
                locks.checkout(actor=person, repository=repository, path=path)
        except (LockConflict, PermissionDenied):
            pass  # refused, and recorded as denied: part of the story the demo tells
